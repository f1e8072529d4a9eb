from __future__ import annotations

from tokentrail.web.format import duration, tokens, usd


def test_tokens():
    assert [tokens(v) for v in (None, 0, 999, 9_999, 10_000, 123_456, 12_345_678, 2_500_000_000)] == [
        "—",
        "0",
        "999",
        "9,999",
        "10.0k",
        "123.5k",
        "12.3M",
        "2.50B",
    ]


def test_usd_keeps_small_calls_apart_and_unknown_visible():
    assert [usd(v) for v in (None, 0, 0.000042, 0.00042, 0.0123, 0.5, 12.345, 1234.5)] == [
        "—",
        "$0",
        "$0.00004",
        "$0.00042",
        "$0.0123",
        "$0.50",
        "$12.35",
        "$1,234",
    ]


def test_duration():
    assert [
        duration(v)
        for v in (
            None,
            850_000,
            12_000_000,
            1_250_000_000,
            42_000_000_000,
            184_000_000_000,
            7_500_000_000_000,
        )
    ] == ["—", "850 µs", "12 ms", "1.25 s", "42.0 s", "3 m 04 s", "2 h 05 m"]
