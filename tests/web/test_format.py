from __future__ import annotations

from tokentrail.web.format import axis_duration, duration, tokens, usd


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


def test_axis_labels_are_as_short_as_a_round_value_allows():
    ns, us, ms, sec, mins, hour = 1, 10**3, 10**6, 10**9, 60 * 10**9, 3600 * 10**9
    cases = {
        0: "0",
        200 * ns: "200 ns",
        5 * us: "5 µs",
        1500 * us: "1.5 ms",
        250 * ms: "250 ms",
        2 * sec: "2 s",
        2500 * ms: "2.5 s",
        30 * sec: "30 s",
        90 * sec: "1 m 30 s",
        15 * mins: "15 m",
        hour: "1 h",
        90 * mins: "1 h 30 m",
        24 * hour: "1 d",
        36 * hour: "1 d 12 h",
    }
    assert {value: axis_duration(value) for value in cases} == cases
