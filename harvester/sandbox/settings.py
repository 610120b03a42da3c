"""Settings of the sandbox API: auth, limits, fault rates and response quirks."""

from dataclasses import dataclass, field
from typing import Literal

DayLabel = Literal["utc", "local"]
UnknownIdMode = Literal["reject", "entry", "omit"]

DAY_LABELS: tuple[DayLabel, ...] = ("utc", "local")
UNKNOWN_ID_MODES: tuple[UnknownIdMode, ...] = ("reject", "entry", "omit")


@dataclass(frozen=True)
class SandboxSettings:
    """Knobs of the sandbox API. The defaults behave like a well-mannered service.

    Auth is required when `token` or `client_id` is set. Fault rates are
    probabilities per request, drawn in the order p500, p502, p503, p429,
    p_slow, p_truncate, p_empty, so when they add up to more than 1 the earlier
    kinds win.
    """

    # Response quirks
    sparse: bool = False
    extra_bucket: bool = False
    day_label: DayLabel = "utc"
    last_as_string: bool = False
    single_object: bool = False
    shuffle: bool = False
    unknown_id: UnknownIdMode = "reject"

    # Auth. Secrets are kept out of the repr.
    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_ttl_s: int = 21_600

    # Limits
    rate: float = 0.0
    retry_after_s: int | None = None
    max_ids: int = 50
    max_last: int = 720
    # NOTE: max_range_days is a limit of the sandbox, so that one range-total
    # request cannot keep the server busy for minutes. The real API's limit,
    # if it has one, is not known here.
    max_range_days: int = 3_660

    # Faults
    p500: float = 0.0
    p502: float = 0.0
    p503: float = 0.0
    p429: float = 0.0
    p_slow: float = 0.0
    slow_s: float = 2.0
    p_truncate: float = 0.0
    p_empty: float = 0.0
    fault_seed: int = 0

    def __post_init__(self) -> None:
        _validate_choices(self)
        _validate_limits(self)
        _validate_auth(self)
        for name in FAULT_RATE_FIELDS:
            _validate_probability(name, getattr(self, name))

    @property
    def auth_required(self) -> bool:
        return self.token is not None or self.client_id is not None


FAULT_RATE_FIELDS = ("p500", "p502", "p503", "p429", "p_slow", "p_truncate", "p_empty")


def _validate_choices(settings: SandboxSettings) -> None:
    if settings.day_label not in DAY_LABELS:
        raise ValueError(f"day_label must be one of {DAY_LABELS}: {settings.day_label}")
    if settings.unknown_id not in UNKNOWN_ID_MODES:
        raise ValueError(
            f"unknown_id must be one of {UNKNOWN_ID_MODES}: {settings.unknown_id}"
        )


def _validate_limits(settings: SandboxSettings) -> None:
    positive = {
        "token_ttl_s": settings.token_ttl_s,
        "max_ids": settings.max_ids,
        "max_last": settings.max_last,
        "max_range_days": settings.max_range_days,
    }
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if settings.rate < 0:
        raise ValueError(f"rate must be non-negative, got {settings.rate}")
    if settings.retry_after_s is not None and settings.retry_after_s < 0:
        raise ValueError(
            f"retry_after_s must be non-negative, got {settings.retry_after_s}"
        )
    if settings.slow_s < 0:
        raise ValueError(f"slow_s must be non-negative, got {settings.slow_s}")


def _validate_auth(settings: SandboxSettings) -> None:
    client_fields = (settings.client_id, settings.client_secret, settings.refresh_token)
    configured = [value is not None for value in client_fields]
    if any(configured) and not all(configured):
        raise ValueError(
            "client_id, client_secret and refresh_token must be set together"
        )


def _validate_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
