"""Precision, recall and wasted dollars per detector: labelled calls against what the ledger found.

Both corpora (ours, `corpus.py`, and the third-party one, `thirdparty/`) are scored by this one
function, and `python -m bench.waste_corpus` prints its table.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from tokentrail.analysis.ledger import BUCKETS

__all__ = ["DOLLAR_DETECTORS", "Score", "misses", "score", "table"]

#: detectors whose wasted dollars are a call's whole cost, known by construction of each case
DOLLAR_DETECTORS = ("retry", "loop", "duplicate", "no_outcome")

# one charge: (call key, detector) -> wasted USD (None: unknown, or not worked out by the case)
Charges = Mapping[tuple[Hashable, str], float | None]


@dataclass
class Score:
    detector: str
    expected: int
    found: int
    true_positives: int
    expected_usd: float | None
    found_usd: float

    @property
    def precision(self) -> float:
        return self.true_positives / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.expected if self.expected else 1.0

    @property
    def dollars_match(self) -> bool:
        if self.expected_usd is None:
            return True
        return math.isclose(self.found_usd, self.expected_usd, rel_tol=0.01, abs_tol=1e-9)


def score(expected: Charges, found: Charges) -> list[Score]:
    scores = []
    for detector in BUCKETS[:-1]:
        want = {k for k in expected if k[1] == detector}
        got = {k for k in found if k[1] == detector}
        usd = [expected[k] for k in want]
        expected_usd = None if any(u is None for u in usd) else sum(u for u in usd if u is not None)
        found_usd = sum(found[k] or 0.0 for k in got)
        scores.append(Score(detector, len(want), len(got), len(want & got), expected_usd, found_usd))
    return scores


def misses(expected: Charges, found: Charges) -> dict[str, list[str]]:
    """Per detector, the charges it missed (-) and the ones it made wrongly (+), for messages."""
    out: dict[str, list[str]] = {}
    for key in sorted(set(expected) ^ set(found), key=str):
        out.setdefault(key[1], []).append(("-" if key in expected else "+") + str(key[0]))
    return out


def table(title: str, scores: list[Score]) -> str:
    lines = [
        title,
        f"{'detector':<16}{'expected':>9}{'found':>7}{'precision':>10}{'recall':>8}{'expected $':>13}{'found $':>13}",
    ]
    for s in scores:
        want = f"{s.expected_usd:13.6f}" if s.expected_usd is not None else f"{'-':>13}"
        lines.append(
            f"{s.detector:<16}{s.expected:>9}{s.found:>7}{s.precision:>10.2f}{s.recall:>8.2f}{want}{s.found_usd:13.6f}"
        )
    return "\n".join(lines)
