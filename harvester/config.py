"""Settings: the TOML config file, environment overrides and their validation."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from harvester.buckets import METRICS, Unit
from harvester.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("harvester.toml")
USER_PASSWORD = re.compile(r"(//[^:/@]*:)[^@]*@")
PASSWORD_PARAMETER = re.compile(r"((?:ssl)?password\s*=\s*)[^\s&]+", re.I)
ITEM_ID_PATTERN = re.compile(r"[A-Z]{3}[0-9]{1,15}")
FIXED_OFFSET_PATTERN = re.compile(r"UTC([+-])([01][0-9]|2[0-3]):([0-5][0-9])")
MULTI_ID_FORMS = ("guide", "plain", "prefixed")
OAUTH_KEYS = ("client_id", "client_secret", "refresh_token")
# Bounds that keep date arithmetic far from the calendar's end.
MAX_INT = 1_000_000
MAX_LOOKBACK_DAYS = 3660
MAX_WINDOW_HOURS = 24 * MAX_LOOKBACK_DAYS
ENV_OVERRIDES = {
    "HARVESTER_API_URL": ("api", "base_url"),
    "HARVESTER_ACCESS_TOKEN": ("api", "access_token"),
    "HARVESTER_CLIENT_SECRET": ("api", "client_secret"),
    "HARVESTER_REFRESH_TOKEN": ("api", "refresh_token"),
    "HARVESTER_DATABASE_URL": ("database", "url"),
}


def mask_url(url: str) -> str:
    """Return a database URL with its passwords replaced by `***`.

    Both places libpq and asyncpg take a password from are masked: the user
    info (`user:secret@host`) and the `password` query parameter.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme:
        # A malformed URL or a key=value connection string: mask by pattern.
        masked = USER_PASSWORD.sub(r"\1***@", url)
        return PASSWORD_PARAMETER.sub(r"\1***", masked)
    netloc = parts.netloc
    if "@" in netloc:
        user_info, host = netloc.rsplit("@", 1)
        if ":" in user_info:
            netloc = f"{user_info.split(':', 1)[0]}:***@{host}"
    query = "&".join(mask_parameter(p) for p in parts.query.split("&"))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def mask_parameter(parameter: str) -> str:
    name, has_value, _ = parameter.partition("=")
    if has_value and name.lower() in ("password", "sslpassword"):
        return f"{name}=***"
    return parameter


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = "http://127.0.0.1:8080"
    access_token: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    token_url: str = ""
    rate_per_s: float = 5.0
    concurrency: int = 8
    batch_size: int = 50
    max_last: int = 720
    timeout_s: float = 30.0
    attempts: int = 6
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    multi_id_form: str = "guide"

    @property
    def uses_oauth(self) -> bool:
        return bool(self.client_id)

    @property
    def token_endpoint(self) -> str:
        return self.token_url or f"{self.base_url}/oauth/token"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(default="", repr=False)
    embedded_dir: Path = Path(".harvester/pgdata")
    pool_size: int = 4

    def __repr__(self) -> str:
        return (
            f"DatabaseSettings(url={mask_url(self.url)!r}, "
            f"embedded_dir={str(self.embedded_dir)!r}, pool_size={self.pool_size})"
        )


@dataclass(frozen=True)
class HarvestSettings:
    metrics: tuple[str, ...] = METRICS
    units: tuple[Unit, ...] = (Unit.HOUR, Unit.DAY)
    lookback_days: int = 3
    reread_hours: int = 48
    settle_hours: int = 48
    time_zone: str = "UTC"

    @property
    def zone(self) -> tzinfo:
        return parse_time_zone(self.time_zone)

    @property
    def settle_delay(self) -> timedelta:
        return timedelta(hours=self.settle_hours)


@dataclass(frozen=True)
class Settings:
    api: ApiSettings = ApiSettings()
    database: DatabaseSettings = DatabaseSettings()
    item_ids: tuple[str, ...] = ()
    harvest: HarvestSettings = HarvestSettings()


def parse_time_zone(name: str) -> tzinfo:
    """Parse an IANA zone name (`America/Caracas`) or a fixed offset (`UTC-04:00`)."""
    if name == "UTC":
        return UTC
    fixed = FIXED_OFFSET_PATTERN.fullmatch(name)
    if fixed:
        sign = -1 if fixed.group(1) == "-" else 1
        offset = timedelta(hours=int(fixed.group(2)), minutes=int(fixed.group(3)))
        return timezone(sign * offset)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r} in [harvest] time_zone: use an IANA name "
            "such as 'America/Argentina/Buenos_Aires' or an offset such as 'UTC-03:00'"
        ) from None


def load_settings(
    path: Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read the config file, apply environment overrides and validate everything."""
    env = dict(os.environ if environ is None else environ)
    config_path = path or Path(env.get("HARVESTER_CONFIG", DEFAULT_CONFIG_PATH))
    document = read_toml(config_path)
    apply_env_overrides(document, env)
    return build_settings(document, config_path.parent)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {str(path)!r} not found: pass --config PATH or copy "
            "config.example.toml to harvester.toml"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {str(path)!r}: {error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"config file {str(path)!r} is not valid TOML: {error}"
        ) from None


def apply_env_overrides(document: dict[str, Any], env: dict[str, str]) -> None:
    for variable, (name, key) in ENV_OVERRIDES.items():
        if variable in env:
            section(document, name)
            document.setdefault(name, {})[key] = env[variable]


def build_settings(document: dict[str, Any], base_dir: Path) -> Settings:
    reject_unknown(document, "", {"api", "database", "items", "harvest"})
    return Settings(
        api=build_api(section(document, "api")),
        database=build_database(section(document, "database"), base_dir),
        item_ids=build_item_ids(section(document, "items"), base_dir),
        harvest=build_harvest(section(document, "harvest")),
    )


def section(document: dict[str, Any], name: str) -> dict[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table of keys, not {value!r}")
    return value


def reject_unknown(table: dict[str, Any], name: str, known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        where = f"[{name}]" if name else "the top level"
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where} of the config: "
            f"expected one of {', '.join(sorted(known))}"
        )


def build_api(table: dict[str, Any]) -> ApiSettings:
    defaults = ApiSettings()
    reject_unknown(table, "api", set(defaults.__dataclass_fields__))
    base_url = str(table.get("base_url", defaults.base_url)).rstrip("/")
    check_http_url(base_url, "base_url")
    form = str(table.get("multi_id_form", defaults.multi_id_form))
    if form not in MULTI_ID_FORMS:
        raise ConfigError(
            f"[api] multi_id_form {form!r} is invalid: use "
            f"{', '.join(repr(name) for name in MULTI_ID_FORMS)}"
        )
    oauth = build_oauth(table)
    settings = ApiSettings(
        base_url=base_url,
        access_token=str(table.get("access_token", "")),
        client_id=oauth[0],
        client_secret=oauth[1],
        refresh_token=oauth[2],
        token_url=check_http_url(str(table.get("token_url", "")), "token_url"),
        rate_per_s=positive(table, "api", "rate_per_s", defaults.rate_per_s),
        concurrency=positive_int(table, "api", "concurrency", defaults.concurrency),
        batch_size=positive_int(table, "api", "batch_size", defaults.batch_size),
        max_last=positive_int(
            table, "api", "max_last", defaults.max_last, MAX_WINDOW_HOURS
        ),
        timeout_s=positive(table, "api", "timeout_s", defaults.timeout_s),
        attempts=positive_int(table, "api", "attempts", defaults.attempts),
        backoff_initial_s=positive(
            table, "api", "backoff_initial_s", defaults.backoff_initial_s
        ),
        backoff_max_s=positive(table, "api", "backoff_max_s", defaults.backoff_max_s),
        multi_id_form=form,
    )
    if settings.backoff_initial_s > settings.backoff_max_s:
        raise ConfigError(
            f"[api] backoff_initial_s {settings.backoff_initial_s} is larger than "
            f"backoff_max_s {settings.backoff_max_s}: "
            "lower the first or raise the second"
        )
    return settings


def check_http_url(url: str, key: str) -> str:
    if not url:
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it validates the port)
    except ValueError:
        parts = urlsplit("invalid:")
    scheme_ok = parts.scheme in ("http", "https")
    if not scheme_ok or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"[api] {key} {url!r} is not a usable http(s) URL: set it to the "
            "API's address without a query, for example http://127.0.0.1:8080"
        )
    return url


def build_oauth(table: dict[str, Any]) -> tuple[str, str, str]:
    """Return client id, client secret and refresh token: all three, or none."""
    values = tuple(str(table.get(key, "")) for key in OAUTH_KEYS)
    given = [key for key, value in zip(OAUTH_KEYS, values, strict=True) if value]
    if given and len(given) < len(OAUTH_KEYS):
        missing = [key for key in OAUTH_KEYS if key not in given]
        raise ConfigError(
            f"[api] {', '.join(given)} set without {', '.join(missing)}: "
            "automatic token refresh needs client_id, client_secret and refresh_token"
        )
    return values[0], values[1], values[2]


def build_database(table: dict[str, Any], base_dir: Path) -> DatabaseSettings:
    defaults = DatabaseSettings()
    reject_unknown(table, "database", set(defaults.__dataclass_fields__))
    embedded_dir = Path(str(table.get("embedded_dir", defaults.embedded_dir)))
    if not embedded_dir.is_absolute():
        embedded_dir = base_dir / embedded_dir
    url = str(table.get("url", ""))
    if url:
        check_database_url(url)
    return DatabaseSettings(
        url=url,
        embedded_dir=embedded_dir,
        pool_size=positive_int(table, "database", "pool_size", defaults.pool_size),
    )


def check_database_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = urlsplit("invalid:")
    problem = ""
    if parts.scheme not in ("postgresql", "postgres"):
        problem = "is not a PostgreSQL URL"
    else:
        try:
            port = parts.port
        except ValueError:
            problem = "has an invalid port"
        else:
            if port == 0:
                problem = "has an invalid port"
    if problem:
        raise ConfigError(
            f"[database] url {mask_url(url)!r} {problem}: use "
            "postgresql://user@host:port/dbname, or leave it empty for the "
            "embedded server"
        )


def build_item_ids(table: dict[str, Any], base_dir: Path) -> tuple[str, ...]:
    reject_unknown(table, "items", {"ids", "file"})
    inline = table.get("ids", [])
    if not isinstance(inline, list):
        raise ConfigError("[items] ids must be a list of item ids, e.g. ['MLA1234']")
    entries = [
        (str(value), f"[items] ids entry {n}") for n, value in enumerate(inline, 1)
    ]
    if table.get("file"):
        entries += read_ids_file(resolve(base_dir, str(table["file"])))
    return validate_item_ids(entries)


def resolve(base_dir: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base_dir / path


def read_ids_file(path: Path) -> list[tuple[str, str]]:
    """Read one item id per line; blank lines and `#` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read the item ids file {str(path)!r} set in [items] file: {error}"
        ) from None
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            entries.append((text, f"{path}:{number}"))
    return entries


def validate_item_ids(entries: list[tuple[str, str]]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for item_id, where in entries:
        if not ITEM_ID_PATTERN.fullmatch(item_id):
            raise ConfigError(
                f"invalid item id {item_id!r} at {where}: an item id is a "
                "three-letter site code and digits, e.g. MLA510272257"
            )
        if item_id in seen:
            raise ConfigError(
                f"duplicate item id {item_id!r} at {where}, first at {seen[item_id]}: "
                "remove one of them"
            )
        seen[item_id] = where
    return tuple(seen)


def build_harvest(table: dict[str, Any]) -> HarvestSettings:
    defaults = HarvestSettings()
    reject_unknown(table, "harvest", set(defaults.__dataclass_fields__))
    settings = HarvestSettings(
        metrics=parse_metrics(table.get("metrics", list(defaults.metrics))),
        units=parse_units(table.get("units", [str(u) for u in defaults.units])),
        lookback_days=positive_int(
            table, "harvest", "lookback_days", 3, MAX_LOOKBACK_DAYS
        ),
        reread_hours=non_negative_int(
            table, "harvest", "reread_hours", 48, MAX_WINDOW_HOURS
        ),
        settle_hours=non_negative_int(
            table, "harvest", "settle_hours", 48, MAX_WINDOW_HOURS
        ),
        time_zone=str(table.get("time_zone", defaults.time_zone)),
    )
    parse_time_zone(settings.time_zone)
    return settings


def parse_metrics(values: object) -> tuple[str, ...]:
    names = string_list(values, "[harvest] metrics")
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"unknown metric {name!r}: use {' or '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def parse_units(values: object) -> tuple[Unit, ...]:
    names = string_list(values, "[harvest] units")
    units = []
    for name in names:
        try:
            units.append(Unit(name))
        except ValueError:
            raise ConfigError(f"unknown unit {name!r}: use hour or day") from None
    return tuple(dict.fromkeys(units))


def string_list(values: object, where: str) -> list[str]:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where} must be a non-empty list, not {values!r}")
    return [str(value) for value in values]


def positive(table: dict[str, Any], name: str, key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, str):
        value = number_from_text(value, name, key)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 < value <= MAX_INT:
        raise ConfigError(
            f"[{name}] {key} must be a number above 0 and at most {MAX_INT}, "
            f"not {value!r}"
        )
    return float(value)


def positive_int(
    table: dict[str, Any], name: str, key: str, default: int, maximum: int = MAX_INT
) -> int:
    return bounded_int(table, name, key, default, 1, maximum)


def non_negative_int(
    table: dict[str, Any], name: str, key: str, default: int, maximum: int = MAX_INT
) -> int:
    return bounded_int(table, name, key, default, 0, maximum)


def bounded_int(
    table: dict[str, Any],
    name: str,
    key: str,
    default: int,
    minimum: int,
    maximum: int,
) -> int:
    value = table.get(key, default)
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or not minimum <= value <= maximum:
        raise ConfigError(
            f"[{name}] {key} must be a whole number from {minimum} to {maximum}, "
            f"not {value!r}"
        )
    return int(value)


def number_from_text(text: str, name: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"[{name}] {key} must be a number, not {text!r}") from None
