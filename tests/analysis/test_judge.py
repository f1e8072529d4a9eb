"""Turning ledgers into rows: what `tokentrail.analysis.judge` writes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tokentrail.analysis.judge import _compact

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _VALUES, max_size=14))
def test_evidence_is_written_as_json_dumps_writes_it(evidence: dict[str, Any]) -> None:
    """The evidence column holds each finding's numbers as compact JSON, non-ASCII text as is:
    byte for byte what `json.dumps` makes of them, which the pages and exports read back."""
    assert _compact(evidence) == json.dumps(evidence, separators=(",", ":"), ensure_ascii=False)
