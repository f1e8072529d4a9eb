"""What every waste rule shares: the thresholds, and a model call with the cost it has left."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Call", "Thresholds", "per_mtok", "usd_formula"]


@dataclass(frozen=True)
class Thresholds:
    """The rules' settings (`TOKENTRAIL_WASTE_*`; the README documents each)."""

    #: a cycle repeating this often in a row is a loop; one that occurs twice is a duplicate tool call
    loop_min_repeats: int = 3
    loop_max_cycle: int = 4
    #: context bloat: stale context up to the first call's input (at least this much) is allowed…
    bloat_min_tokens: int = 1_000
    #: …and never more than this, nor more than this share of the model's context window
    bloat_carry_tokens: int = 16_000
    bloat_window_share: float = 0.1
    cache_min_tokens: int = 1024
    cache_ttl_seconds: float = 300.0
    oversized_max_output_tokens: int = 16
    oversized_min_saving: float = 0.5
    #: a run that ended in an error without a successful outcome counts as no outcome
    no_outcome_on_error: bool = True


@dataclass
class Call:
    """A model call of the trace, and how much of its cost no rule has charged yet."""

    span: dict[str, Any]
    scope: str  # span id of the nearest agent ancestor ("" at top level)
    cost: float | None
    remaining: float
    failed: bool

    @property
    def model(self) -> str:
        """The model asked for (a failed call has no served model to compare with its retry's)."""
        return str(self.span.get("request_model") or self.span["model"])

    @property
    def tokens(self) -> int:
        return int(self.span["input_tokens"]) + int(self.span["output_tokens"])

    def take(self, amount: float) -> float:
        amount = max(0.0, min(amount, self.remaining))
        self.remaining -= amount
        return amount

    def whole(self) -> float | None:
        """What is left of the call's cost (None: its price is unknown)."""
        return self.remaining if self.cost is not None else None


def per_mtok(usd_per_token: float) -> float:
    return round(usd_per_token * 1e6, 6)


def usd_formula(call: Call) -> dict[str, Any]:
    """Evidence for a rule that takes a call's whole cost: its tokens and what they cost."""
    span = call.span
    inp, cached, out = int(span["input_tokens"]), int(span["cache_read_tokens"]), int(span["output_tokens"])
    if call.cost:
        formula = (
            f"the call's whole cost: {inp:,} input ({cached:,} of them cached) and {out:,} output tokens "
            f"on {span['model']} = ${call.cost:.6f}"
        )
    elif call.cost == 0:
        formula = "not billed (it failed before producing output): $0"
    else:
        formula = "the model's price is unknown"
    return {
        "input_tokens": inp,
        "cached_tokens": cached,
        "output_tokens": out,
        "cost_usd": call.cost,
        "formula": formula,
    }
