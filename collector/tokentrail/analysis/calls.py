"""What every waste rule shares: the thresholds (settings, `tokentrail.server.settings.Thresholds`), and a
model call with the cost it has left."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from tokentrail.server.settings import Thresholds

__all__ = ["Call", "Thresholds", "asked_model", "per_mtok", "usd_formula"]


def asked_model(span: Mapping[str, Any]) -> str:
    """The model a call asked for, else the one it is attributed to (`spans.model`): what the
    rules compare, since a failed call has no served model to compare with its retry's, and a
    provider's prompt cache is keyed by the model asked for."""
    return str(span.get("request_model") or span["model"])


@dataclass(slots=True)
class Call:
    """A model call of the trace, and how much of its cost no rule has charged yet."""

    span: dict[str, Any]
    scope: str  # span id of the nearest agent ancestor ("" at top level)
    cost: float | None
    remaining: float
    failed: bool
    #: `asked_model` of its span, which the rules compare again and again
    model: str = field(init=False)

    def __post_init__(self) -> None:
        self.model = asked_model(self.span)

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


@cache  # a few prices, over and over: rounding is what costs
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
