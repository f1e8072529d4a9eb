"""Turning ledgers into rows: what `tokentrail.analysis.judge` writes."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from tokentrail.analysis.judge import _by_trace, _compact

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _as_read(value: Any) -> Any:
    """A value as JSON holds it: NaN and infinities are null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_as_read(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_read(v) for k, v in value.items()}
    return value


@given(st.dictionaries(st.text(), _VALUES, max_size=14))
def test_evidence_is_written_as_compact_json_that_reads_back_the_same(evidence: dict[str, Any]) -> None:
    """The evidence column holds each finding's numbers as compact JSON, which the pages and
    exports read back: every value reads back as it was (an integer of any size included; NaN and
    infinities, which JSON does not have, as null), non-ASCII text is written as is (only control
    characters are escaped), and no space is written outside a string."""
    written = _compact(evidence)
    text = written.decode() if isinstance(written, bytes) else written
    assert json.loads(text) == _as_read(evidence)
    assert all(int(code, 16) < 0x20 for code in re.findall(r"\\u([0-9a-fA-F]{4})", text))
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    assert " " not in outside and "\n" not in outside


def _span_rows(order: list[str]) -> list[dict[str, Any]]:
    """A span row a trace id of `order`, in that order: its kind and model repeat across rows
    (as a chunk's do), its span id does not."""
    return [
        {
            "trace_id": trace_id,
            "span_id": f"s{i}",
            "step_kind": ("llm", "tool")[i % 2],
            "model": ("gpt-4o", "", "claude-sonnet-4-5")[i % 3],
            "input_tokens": 100 * i,
            "ingested_at": 1000 + i,
        }
        for i, trace_id in enumerate(order)
    ]


def test_a_chunks_spans_are_grouped_by_trace_in_their_order_whatever_order_the_rows_come_in() -> None:
    """Each trace gets its own spans, in the order they were read, with what the rules read of
    them; a trace whose rows are not all together still gets all of them."""
    order = ["b", "b", "a", "a", "a", "c", "b", "c", "c", "a"]
    rows = _span_rows(order)
    grouped = _by_trace(pa.Table.from_pylist(rows))
    assert list(grouped) == list(dict.fromkeys(order))
    for trace_id, spans in grouped.items():
        mine = [r for r in rows if r["trace_id"] == trace_id]
        assert [s["span_id"] for s in spans] == [r["span_id"] for r in mine]
        for span, row in zip(spans, mine, strict=True):
            assert {k: span[k] for k in ("step_kind", "model", "input_tokens")} == {
                k: row[k] for k in ("step_kind", "model", "input_tokens")
            }


def test_a_span_read_twice_counts_once_as_its_newest_copy() -> None:
    """A span rewritten (a summary, a reprice) has two rows until the table merges them: the one
    written last stands, in the place the span was first read."""
    rows = _span_rows(["a", "a", "b"])
    again = {**rows[0], "input_tokens": 999, "ingested_at": rows[0]["ingested_at"] + 5}
    grouped = _by_trace(pa.Table.from_pylist([*rows, again]))
    assert [s["span_id"] for s in grouped["a"]] == ["s0", "s1"]
    assert grouped["a"][0]["input_tokens"] == 999
    assert [s["span_id"] for s in grouped["b"]] == ["s2"]


def test_a_missing_text_value_stays_missing_among_repeated_ones() -> None:
    """A text column of few values with a gap (a nullable column) still reads None there."""
    rows = _span_rows(["a", "a", "a", "b"])
    rows[1]["model"] = None
    grouped = _by_trace(pa.Table.from_pylist(rows))
    assert [s["model"] for s in grouped["a"]] == [r["model"] for r in rows[:3]]


def test_a_judging_worker_builds_arrays_without_loading_pandas() -> None:
    """pyarrow imports pandas (chDB installs it) the first time it builds an array from Python
    lists, as a judgement does: 38 MiB and 0.25 s of CPU a worker that nothing there uses."""
    from tokentrail.analysis.run import _judges
    from tokentrail.pricing import PriceBook

    with _judges(PriceBook(), 1) as pool:
        built, loaded = pool.submit(
            eval, "(len(__import__('pyarrow').array(['a', 'b'])), sorted(__import__('sys').modules))"
        ).result()
    assert built == 2
    assert "pyarrow" in loaded and "pandas" not in loaded
