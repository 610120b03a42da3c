"""Loading settings from TOML files, environment overrides and their errors."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import pytest

from harvester.buckets import Unit
from harvester.config import (
    ApiSettings,
    DatabaseSettings,
    HarvestSettings,
    Settings,
    load_settings,
    mask_url,
    parse_time_zone,
)
from harvester.errors import ConfigError

NO_ENV: dict[str, str] = {}
FULL_CONFIG = """
[api]
base_url = "https://api.example.test/"
access_token = "APP_USR-file-token"
client_id = "4521"
client_secret = "file-client-secret"
refresh_token = "TG-file-refresh"
token_url = "https://auth.example.test/oauth/token"
rate_per_s = 2.5
concurrency = 3
batch_size = 20
max_last = 168
timeout_s = 12
attempts = 4
backoff_initial_s = 0.25
backoff_max_s = 8.0
multi_id_form = "prefixed"

[database]
url = "postgresql://harvester:s3cret-pw@127.0.0.1:5433/metrics"
embedded_dir = "data/pg"
pool_size = 6

[items]
ids = ["MLA100", "MLB200"]
file = "ids.txt"

[harvest]
metrics = ["phone_views"]
units = ["day"]
lookback_days = 7
reread_hours = 24
settle_hours = 72
time_zone = "America/Argentina/Buenos_Aires"
"""


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "harvester.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> Settings:
    return load_settings(write_config(tmp_path, text), environ=NO_ENV)


def config_error(tmp_path: Path, text: str) -> str:
    """Load `text` and return the message of the ConfigError it raises."""
    with pytest.raises(ConfigError) as raised:
        load_text(tmp_path, text)
    return str(raised.value)


# Values that load.


def test_empty_file_defaults(tmp_path: Path) -> None:
    settings = load_text(tmp_path, "")

    assert settings.api == ApiSettings()
    assert settings.database.url == ""
    assert settings.database.embedded_dir == tmp_path / ".harvester" / "pgdata"
    assert settings.database.pool_size == DatabaseSettings().pool_size
    assert settings.item_ids == ()
    assert settings.harvest == HarvestSettings()
    assert settings.harvest.metrics == ("questions", "phone_views")
    assert settings.harvest.units == (Unit.HOUR, Unit.DAY)
    assert settings.harvest.zone is UTC


def test_every_key_parsed(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("MLC300\n", encoding="utf-8")

    settings = load_text(tmp_path, FULL_CONFIG)

    api = settings.api
    assert api.base_url == "https://api.example.test"
    assert api.access_token == "APP_USR-file-token"
    assert api.client_id == "4521"
    assert api.client_secret == "file-client-secret"
    assert api.refresh_token == "TG-file-refresh"
    assert api.token_url == "https://auth.example.test/oauth/token"
    assert api.token_endpoint == "https://auth.example.test/oauth/token"
    assert api.uses_oauth
    assert api.rate_per_s == 2.5
    assert api.concurrency == 3
    assert api.batch_size == 20
    assert api.max_last == 168
    assert api.timeout_s == 12.0
    assert isinstance(api.timeout_s, float)
    assert api.attempts == 4
    assert api.backoff_initial_s == 0.25
    assert api.backoff_max_s == 8.0
    assert api.multi_id_form == "prefixed"
    database = settings.database
    assert database.url == "postgresql://harvester:s3cret-pw@127.0.0.1:5433/metrics"
    assert database.embedded_dir == tmp_path / "data" / "pg"
    assert database.pool_size == 6
    assert settings.item_ids == ("MLA100", "MLB200", "MLC300")
    harvest = settings.harvest
    assert harvest.metrics == ("phone_views",)
    assert harvest.units == (Unit.DAY,)
    assert harvest.lookback_days == 7
    assert harvest.reread_hours == 24
    assert harvest.settle_hours == 72
    assert harvest.settle_delay == timedelta(hours=72)
    assert harvest.time_zone == "America/Argentina/Buenos_Aires"


def test_absolute_embedded_dir_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"

    settings = load_text(tmp_path, f'[database]\nembedded_dir = "{target}"\n')

    assert settings.database.embedded_dir == target


def test_repeated_metrics_and_units_once(tmp_path: Path) -> None:
    text = (
        '[harvest]\nmetrics = ["questions", "questions"]\n'
        'units = ["day", "hour", "day"]\n'
    )

    settings = load_text(tmp_path, text)

    assert settings.harvest.metrics == ("questions",)
    assert settings.harvest.units == (Unit.DAY, Unit.HOUR)


def test_env_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("MLC300\n", encoding="utf-8")
    environ = {
        "HARVESTER_DATABASE_URL": "postgresql://other@127.0.0.1:5434/other",
        "HARVESTER_ACCESS_TOKEN": "APP_USR-env-token",
        "HARVESTER_API_URL": "http://127.0.0.1:9000/",
        "HARVESTER_CLIENT_SECRET": "env-client-secret",
        "HARVESTER_REFRESH_TOKEN": "TG-env-refresh",
    }

    settings = load_settings(write_config(tmp_path, FULL_CONFIG), environ=environ)

    assert settings.database.url == "postgresql://other@127.0.0.1:5434/other"
    assert settings.api.access_token == "APP_USR-env-token"
    assert settings.api.base_url == "http://127.0.0.1:9000"
    assert settings.api.client_secret == "env-client-secret"
    assert settings.api.refresh_token == "TG-env-refresh"
    assert settings.api.rate_per_s == 2.5


def test_env_overrides_without_sections(tmp_path: Path) -> None:
    environ = {
        "HARVESTER_DATABASE_URL": "postgres://u@127.0.0.1/db",
        "HARVESTER_ACCESS_TOKEN": "tok",
        "HARVESTER_API_URL": "http://127.0.0.1:9001",
    }

    settings = load_settings(write_config(tmp_path, ""), environ=environ)

    assert settings.database.url == "postgres://u@127.0.0.1/db"
    assert settings.api.access_token == "tok"
    assert settings.api.base_url == "http://127.0.0.1:9001"


def test_env_overrides_validated(tmp_path: Path) -> None:
    environ = {"HARVESTER_API_URL": "ftp://127.0.0.1/"}

    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(tmp_path, ""), environ=environ)

    assert "'ftp://127.0.0.1'" in str(raised.value)


def test_config_path_from_env(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[api]\nbatch_size = 9\n")

    settings = load_settings(environ={"HARVESTER_CONFIG": str(path)})

    assert settings.api.batch_size == 9


def test_ids_file_comments_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "ids.txt").write_text(
        "# items of the first seller\n"
        "MLA111\n"
        "\n"
        "   MLA222   # trailing comment\n"
        "\t\n"
        "#MLA999\n"
        "MLB333\n",
        encoding="utf-8",
    )

    settings = load_text(tmp_path, '[items]\nfile = "lists/ids.txt"\n')

    assert settings.item_ids == ("MLA111", "MLA222", "MLB333")


# Errors: each names the value and the fix.


def test_missing_file_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ=NO_ENV)

    message = str(raised.value)
    assert str(path) in message
    assert "not found" in message
    assert "--config" in message


def test_invalid_toml_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[api\nrate_per_s = 1\n")

    assert str(tmp_path / "harvester.toml") in message
    assert "not valid TOML" in message
    assert "line 1" in message


@pytest.mark.parametrize(
    ("text", "key", "where"),
    [
        ("[apis]\n", "apis", "the top level"),
        ("[api]\nrate = 1\n", "rate", "[api]"),
        ("[database]\npassword = 'x'\n", "password", "[database]"),
        ("[items]\nid = []\n", "id", "[items]"),
        ("[harvest]\nzone = 'UTC'\n", "zone", "[harvest]"),
    ],
)
def test_unknown_key_error(tmp_path: Path, text: str, key: str, where: str) -> None:
    message = config_error(tmp_path, text)

    assert f"unknown key {key!r}" in message
    assert where in message
    assert "expected one of" in message


def test_unknown_api_key_lists_known(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[api]\nrate = 1\n")

    assert "rate_per_s" in message
    assert "batch_size" in message


@pytest.mark.parametrize("bad_id", ["mla123", "MLA", "ML123", "MLA12x", "MLA 12"])
def test_malformed_file_id_error(tmp_path: Path, bad_id: str) -> None:
    ids_path = tmp_path / "ids.txt"
    ids_path.write_text(f"MLA1\n# comment\n\n{bad_id}\n", encoding="utf-8")

    message = config_error(tmp_path, '[items]\nfile = "ids.txt"\n')

    assert f"invalid item id {bad_id!r}" in message
    assert f"{ids_path}:4" in message
    assert "MLA510272257" in message


def test_malformed_inline_id_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[items]\nids = ["MLA1", "MLA-2"]\n')

    assert "invalid item id 'MLA-2'" in message
    assert "[items] ids entry 2" in message


@pytest.mark.parametrize(
    "bad_id", ["MLA123\\n", "MLA\\u0661\\u0662"], ids=["newline", "arabic digits"]
)
def test_inline_id_strict_pattern(tmp_path: Path, bad_id: str) -> None:
    with pytest.raises(ConfigError, match="invalid item id"):
        load_text(tmp_path, f'[items]\nids = ["{bad_id}"]\n')


def test_duplicate_file_id_error(tmp_path: Path) -> None:
    ids_path = tmp_path / "ids.txt"
    ids_path.write_text("MLA1\nMLA2\n\nMLA1\n", encoding="utf-8")

    message = config_error(tmp_path, '[items]\nfile = "ids.txt"\n')

    assert "duplicate item id 'MLA1'" in message
    assert f"{ids_path}:4" in message
    assert f"first at {ids_path}:1" in message
    assert "remove one of them" in message


def test_duplicate_inline_and_file_id(tmp_path: Path) -> None:
    ids_path = tmp_path / "ids.txt"
    ids_path.write_text("MLB7\nMLA5\n", encoding="utf-8")

    message = config_error(tmp_path, '[items]\nids = ["MLA5"]\nfile = "ids.txt"\n')

    assert "duplicate item id 'MLA5'" in message
    assert f"{ids_path}:2" in message
    assert "first at [items] ids entry 1" in message


def test_missing_ids_file_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[items]\nfile = "nowhere.txt"\n')

    assert str(tmp_path / "nowhere.txt") in message
    assert "[items] file" in message


def test_unknown_metric_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[harvest]\nmetrics = ["visits"]\n')

    assert "unknown metric 'visits'" in message
    assert "questions or phone_views" in message


def test_unknown_unit_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[harvest]\nunits = ["hour", "week"]\n')

    assert "unknown unit 'week'" in message
    assert "hour or day" in message


def test_empty_units_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[harvest]\nunits = []\n")

    assert "[harvest] units" in message
    assert "non-empty list" in message


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "UTC+3", "utc-03:00", ""])
def test_bad_time_zone_error(tmp_path: Path, zone: str) -> None:
    message = config_error(tmp_path, f'[harvest]\ntime_zone = "{zone}"\n')

    assert f"unknown time zone {zone!r}" in message
    assert "[harvest] time_zone" in message
    assert "UTC-03:00" in message


def test_fixed_offset_zone_parsed() -> None:
    zone = parse_time_zone("UTC-03:30")

    assert zone.utcoffset(None) == -timedelta(hours=3, minutes=30)


def test_day_long_offset_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[harvest]\ntime_zone = "UTC+25:00"\n')

    assert "'UTC+25:00'" in message


def test_offset_minutes_over_59_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[harvest]\ntime_zone = "UTC-05:99"\n')

    assert "'UTC-05:99'" in message


@pytest.mark.parametrize("value", ["0", "-2.5", "false", '"fast"'])
def test_non_positive_rate_error(tmp_path: Path, value: str) -> None:
    message = config_error(tmp_path, f"[api]\nrate_per_s = {value}\n")

    assert "[api] rate_per_s" in message
    assert "must be a" in message
    assert "number" in message


def test_zero_rate_message_names_value(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[api]\nrate_per_s = 0\n")

    assert message == (
        "[api] rate_per_s must be a number above 0 and at most 1000000, not 0"
    )


def test_nan_rate_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rate_per_s"):
        load_text(tmp_path, "[api]\nrate_per_s = nan\n")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[api]\nbatch_size = 0\n", "[api] batch_size"),
        ("[api]\nattempts = 1.5\n", "[api] attempts"),
        ("[database]\npool_size = -1\n", "[database] pool_size"),
        ("[harvest]\nlookback_days = 0\n", "[harvest] lookback_days"),
        ("[harvest]\nsettle_hours = -1\n", "[harvest] settle_hours"),
    ],
)
def test_bad_whole_number_error(tmp_path: Path, text: str, key: str) -> None:
    message = config_error(tmp_path, text)

    assert key in message
    assert "whole number" in message


def test_zero_settle_hours_allowed(tmp_path: Path) -> None:
    settings = load_text(tmp_path, "[harvest]\nsettle_hours = 0\nreread_hours = 0\n")

    assert settings.harvest.settle_hours == 0
    assert settings.harvest.reread_hours == 0


def test_bad_api_url_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[api]\nbase_url = "127.0.0.1:8080"\n')

    assert "'127.0.0.1:8080'" in message
    assert "http://127.0.0.1:8080" in message


def test_default_token_endpoint(tmp_path: Path) -> None:
    settings = load_text(tmp_path, '[api]\nbase_url = "http://127.0.0.1:8080/"\n')

    assert settings.api.token_endpoint == "http://127.0.0.1:8080/oauth/token"
    assert not settings.api.uses_oauth


def test_partial_oauth_error(tmp_path: Path) -> None:
    text = '[api]\nclient_id = "4521"\nrefresh_token = "TG-x"\n'

    message = config_error(tmp_path, text)

    assert "[api] client_id, refresh_token set without client_secret" in message
    assert "TG-x" not in message


def test_bad_token_url_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[api]\ntoken_url = "auth.example.test"\n')

    assert "[api] token_url 'auth.example.test'" in message
    assert "http(s) URL" in message


def test_bad_multi_id_form_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[api]\nmulti_id_form = "path"\n')

    assert "multi_id_form 'path'" in message
    assert "'plain'" in message


def test_bad_database_scheme_error(tmp_path: Path) -> None:
    url = "mysql://harvester:s3cret-pw@127.0.0.1:3306/metrics"

    message = config_error(tmp_path, f'[database]\nurl = "{url}"\n')

    assert "mysql://harvester:***@127.0.0.1:3306/metrics" in message
    assert "s3cret-pw" not in message
    assert "postgresql://" in message


def test_section_not_table_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'api = "http://127.0.0.1"\n')

    assert "[api] must be a table" in message


# Secrets stay out of repr and messages.


def test_repr_hides_secrets(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("MLC300\n", encoding="utf-8")

    settings = load_text(tmp_path, FULL_CONFIG)
    text = repr(settings)

    assert "APP_USR-file-token" not in text
    assert "file-client-secret" not in text
    assert "TG-file-refresh" not in text
    assert "s3cret-pw" not in text
    assert "harvester:***@127.0.0.1:5433/metrics" in text
    assert "rate_per_s=2.5" in text


def test_repr_hides_env_token(tmp_path: Path) -> None:
    environ = {
        "HARVESTER_ACCESS_TOKEN": "APP_USR-env-token",
        "HARVESTER_DATABASE_URL": "postgresql://u:env-pw@127.0.0.1/db",
    }

    settings = load_settings(write_config(tmp_path, ""), environ=environ)

    assert "APP_USR-env-token" not in repr(settings)
    assert "env-pw" not in repr(settings)
    assert "APP_USR-env-token" not in repr(settings.api)
    assert "env-pw" not in repr(settings.database)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql://harvester:s3cret@127.0.0.1:5432/metrics",
            "postgresql://harvester:***@127.0.0.1:5432/metrics",
        ),
        (
            "postgresql://harvester:s3cret@db.internal/metrics?sslmode=require",
            "postgresql://harvester:***@db.internal/metrics?sslmode=require",
        ),
        (
            "postgresql://harvester:p%40ss@127.0.0.1/metrics",
            "postgresql://harvester:***@127.0.0.1/metrics",
        ),
        (
            "postgresql://harvester@127.0.0.1/metrics",
            "postgresql://harvester@127.0.0.1/metrics",
        ),
        ("", ""),
    ],
    ids=["port", "query", "escaped", "no password", "empty"],
)
def test_mask_url_values(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_repr_hides_query_password() -> None:
    settings = DatabaseSettings(url="postgresql://u@127.0.0.1/db?password=s3cret")

    assert "s3cret" not in repr(settings)


def test_ids_file_with_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "items.txt").write_bytes(b"\xef\xbb\xbfMLA1\r\nMLA2\r\n")
    config = tmp_path / "harvester.toml"
    config.write_text('[items]\nfile = "items.txt"\n')

    settings = load_settings(config, environ={})

    assert settings.item_ids == ("MLA1", "MLA2")


@pytest.mark.parametrize(
    "url",
    [
        "host=127.0.0.1 port=5439 password=s3cret",
        "postgresql://postgres:s3cret@[::1:5439/x",
    ],
)
def test_mask_url_malformed_forms(url: str) -> None:
    masked = mask_url(url)

    assert "s3cret" not in masked
    assert "***" in masked


@pytest.mark.parametrize(
    "base_url", ["http://[::1", "http://", "http://127.0.0.1:8080?x=1"]
)
def test_unusable_base_url_rejected(tmp_path: Path, base_url: str) -> None:
    config = tmp_path / "harvester.toml"
    config.write_text(f'[api]\nbase_url = "{base_url}"\n')

    with pytest.raises(ConfigError, match="not a usable http"):
        load_settings(config, environ={})


def test_database_url_bad_ipv6_rejected(tmp_path: Path) -> None:
    config = tmp_path / "harvester.toml"
    config.write_text('[database]\nurl = "postgresql://u:s3cret@[::1:5439/x"\n')

    with pytest.raises(ConfigError, match="not a PostgreSQL URL") as raised:
        load_settings(config, environ={})

    assert "s3cret" not in str(raised.value)
