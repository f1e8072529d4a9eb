"""Numbers formatted for people: the Jinja filters every page uses.

Each filter accepts None and shows "—" for it, so an unknown value (an unpriced model) never
reads as zero.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["FILTERS", "axis_duration", "duration", "timestamp", "tokens", "usd"]

_NONE = "—"


def tokens(value: int | None) -> str:
    """1234 → "1,234"; 123456 → "123.5k"; 12345678 → "12.3M"."""
    if value is None:
        return _NONE
    n = int(value)
    if abs(n) < 10_000:
        return f"{n:,}"
    if abs(n) < 1_000_000:
        return f"{n / 1000:.1f}k"
    if abs(n) < 1_000_000_000:
        return f"{n / 1_000_000:.1f}M"
    return f"{n / 1_000_000_000:.2f}B"


def usd(value: float | None) -> str:
    """Enough precision to tell small calls apart, no more: $0.00042, $0.0123, $1.23, $1,234."""
    if value is None:
        return _NONE
    v = float(value)
    if v == 0:
        return "$0"
    a = abs(v)
    if a < 0.001:
        text = f"{a:.5f}"
    elif a < 0.1:
        text = f"{a:.4f}"
    elif a < 1000:
        text = f"{a:.2f}"
    else:
        text = f"{a:,.0f}"
    return ("-$" if v < 0 else "$") + text


def duration(nanos: int | None) -> str:
    """850 µs, 12 ms, 1.25 s, 3 m 04 s, 2 h 05 m."""
    if nanos is None:
        return _NONE
    ns = int(nanos)
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.0f} ms"
    s = ns / 1_000_000_000
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} m {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} m"


#: (unit in ns, name), largest first: a time axis's labels use the largest that fits
_AXIS_UNITS = [
    (86_400_000_000_000, "d"),
    (3_600_000_000_000, "h"),
    (60_000_000_000, "m"),
    (1_000_000_000, "s"),
    (1_000_000, "ms"),
    (1_000, "µs"),
    (1, "ns"),
]


def axis_duration(nanos: int) -> str:
    """A time axis's label, as short as a round value allows: 0, 200 ns, 1.5 ms, 30 s, 2 h, 3 d,
    1 h 30 m (a label's remainder in the next unit down, if it has one)."""
    if nanos <= 0:
        return "0"
    i = next(i for i, (unit, _) in enumerate(_AXIS_UNITS) if nanos >= unit)  # 1 ns at the least
    unit, name = _AXIS_UNITS[i]
    whole, rest = divmod(nanos, unit)
    if not rest:
        return f"{whole} {name}"
    if name in ("d", "h", "m"):  # the remainder in the next unit down
        sub, sub_name = _AXIS_UNITS[i + 1]
        return f"{whole} {name} {round(rest / sub)} {sub_name}"
    return f"{nanos / unit:.3f}".rstrip("0").rstrip(".") + f" {name}"


def timestamp(value: datetime | int | None) -> str:
    """UTC, to the second: the UI says so in its header."""
    if value is None:
        return _NONE
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1e9, tz=UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def percent(value: float | None) -> str:
    if value is None:
        return _NONE
    return f"{value * 100:.0f}%" if value >= 0.1 else f"{value * 100:.1f}%"


FILTERS: dict[str, Any] = {
    "tokens": tokens,
    "usd": usd,
    "duration": duration,
    "axis_duration": axis_duration,
    "timestamp": timestamp,
    "percent": percent,
}
