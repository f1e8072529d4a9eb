"""Cost of a model call from the maintained `genai-prices` catalog (never a hand-typed table).

Providers are looked up by their catalog id (`tokentrail.providers`). Token semantics are
OpenTelemetry's, which the catalog shares: input tokens include cache reads
and writes, output tokens include reasoning. The catalog's own `calc_price` is exact but costs
tens of microseconds, too slow to call per span at ingest rates; for models whose price is linear
in the token counts, the per-token rates are read once through `calc_price` itself and applied
as floats. Tiered prices (e.g. long-context surcharges) are detected and always go through
`calc_price`. An unknown model has unknown cost (None), never zero.
"""

from __future__ import annotations

import logging
import time
import warnings
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.types import TieredPrices

from tokentrail.providers import catalog_id

__all__ = ["PriceBook", "Priced", "call_cost", "price_call"]

logger = logging.getLogger("tokentrail.collector")

_MTOK = 1_000_000
_RATES_TTL = 600.0  # catalog prices can change with time (promotions, off-peak): re-read rates


def _price(usage: Usage, model: str, provider_id: str | None, at: datetime) -> Decimal:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=at).total_price


def _tier_starts(model: str, provider_id: str | None, now: datetime) -> tuple[list[int], int | None]:
    """Input sizes at which a tiered price changes ("cliff" tiers: past a start, all tokens pay
    more), and the model's context window when the catalog knows it."""
    _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    prices = info.get_prices(now)
    starts = {
        tier.start
        for value in vars(prices).values()
        if isinstance(value, TieredPrices)
        for tier in value.tiers
    }
    return sorted(starts), info.context_window


class _Band:
    """USD per token within one input-size band of a model's price."""

    __slots__ = ("cache_read", "cache_write", "fresh_input", "output")

    def __init__(self, model: str, provider_id: str | None, now: datetime, size: int) -> None:
        # Each rate is read from calc_price itself at an input size inside the band.
        n = Decimal(size)
        base = _price(Usage(input_tokens=size), model, provider_id, now)
        self.fresh_input = float(base / n)
        self.cache_read = float(
            _price(Usage(input_tokens=size, cache_read_tokens=size), model, provider_id, now) / n
        )
        self.cache_write = float(
            _price(Usage(input_tokens=size, cache_write_tokens=size), model, provider_id, now) / n
        )
        with_output = _price(Usage(input_tokens=size, output_tokens=_MTOK), model, provider_id, now)
        self.output = float((with_output - base) / Decimal(_MTOK))


class _Rates:
    """Linear rates per input-size band for one (provider, model)."""

    __slots__ = ("bands", "expires", "provider_id", "starts", "window")

    def __init__(self, model: str, provider_id: str | None, now: datetime) -> None:
        self.provider_id = provider_id
        self.expires = time.monotonic() + _RATES_TTL
        self.starts, self.window = _tier_starts(model, provider_id, now)
        sizes = [min(_MTOK, self.starts[0]) if self.starts else _MTOK] + [s + 1 for s in self.starts]
        self.bands = [_Band(model, provider_id, now, size) for size in sizes]

    def band(self, input_tokens: int) -> _Band:
        return self.bands[bisect_left(self.starts, input_tokens)]


class PriceBook:
    def __init__(self) -> None:
        self.version = f"genai-prices {genai_prices.__version__}"
        self._rates: dict[tuple[str, str], _Rates | None] = {}

    def _lookup(self, provider: str, model: str) -> _Rates | None:
        key = (provider, model)
        if key in self._rates:
            cached = self._rates[key]
            if cached is None or cached.expires > time.monotonic():
                return cached
        now = datetime.now(tz=UTC)
        found: _Rates | None = None
        catalog = catalog_id(provider)
        candidates = [catalog, None] if catalog else [None]
        names = [model]
        if "/" in model:  # "openai/gpt-4o", "anthropic/claude-…" style prefixes
            names.append(model.split("/", 1)[1])
        for name in names:
            for provider_id in candidates:
                try:
                    found = _Rates(name, provider_id, now)
                    break
                except LookupError:
                    continue
                except Exception:
                    logger.debug("pricing %s/%s failed", provider, name, exc_info=True)
                    continue
            if found is not None:
                break
        self._rates[key] = found
        return found

    def unit_prices(self, provider: str, model: str, input_tokens: int) -> tuple[float, float, float] | None:
        """USD per token (fresh input, cache read, output) for a call of this input size, or None."""
        rates = self._lookup(provider, model) if model else None
        if rates is None:
            return None
        band = rates.band(input_tokens)
        return band.fresh_input, band.cache_read, band.output

    def context_window(self, provider: str, model: str) -> int | None:
        """The model's context window in tokens, when the catalog knows it."""
        rates = self._lookup(provider, model) if model else None
        return rates.window if rates is not None else None

    def cost(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        at: datetime | None = None,
    ) -> float | None:
        """USD for one call, or None when the catalog does not know the model."""
        if not model:
            return None
        rates = self._lookup(provider, model)
        if rates is None:
            return None
        if at is not None:  # a past date: the catalog picks the prices in force then
            usage = Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
            )
            try:
                return float(_price(usage, model, rates.provider_id, at or datetime.now(tz=UTC)))
            except Exception:
                return None
        band = rates.band(input_tokens)
        fresh = max(0, input_tokens - cache_read_tokens - cache_write_tokens)
        return (
            fresh * band.fresh_input
            + cache_read_tokens * band.cache_read
            + cache_write_tokens * band.cache_write
            + output_tokens * band.output
        )


@dataclass(frozen=True, slots=True)
class Priced:
    """What a model call costs, and where the figure comes from."""

    cost: float | None  # the cost that counts (None: unknown, never 0 for "unknown")
    source: str  # "computed" (catalog), "reported" (the emitter's figure) or "unknown"; "" when not billed
    version: str  # catalog version of `catalog`, when it was consulted
    catalog: float | None  # the catalog's price of the same tokens


def price_call(
    pricer: PriceBook | None,
    provider: str,
    models: Sequence[str],
    *,
    billable: bool,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    reported: float | None = None,
) -> Priced:
    """The one rule for a call's cost, at ingest and when repricing.

    `models`: the served model first, then the requested one (a snapshot the catalog does not list
    yet is priced as the model that was asked for). A cost the emitter reported is evidence, not
    gospel: it counts, unless it is $0 for a call with tokens, which emitters report when they could
    not price it (OpenLIT without its price list); then the catalog's price counts. The catalog's
    figure is kept beside a reported one, so a difference can be shown."""
    tokens = (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    return Priced(*call_cost(pricer, provider, models, billable, tokens, reported))


def call_cost(
    pricer: PriceBook | None,
    provider: str,
    models: Sequence[str],
    billable: bool,
    tokens: tuple[int, int, int, int],
    reported: float | None,
) -> tuple[float | None, str, str, float | None]:
    """`price_call` as a tuple (cost, source, version, catalog), `tokens` as (input, output, cache
    read, cache write): what flattening calls for every span (building a `Priced` costs more than
    the arithmetic)."""
    catalog: float | None = None
    version = ""
    if billable and pricer is not None:
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens = tokens
        for model in dict.fromkeys(models):
            if model:
                catalog = pricer.cost(
                    provider,
                    model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cache_read_tokens=cache_read_tokens,
                    cache_write_tokens=cache_write_tokens,
                )
                if catalog is not None:
                    break
        version = pricer.version
    if reported is not None and not (reported == 0 and (tokens[0] > 0 or tokens[1] > 0)):
        return reported, "reported", version, catalog
    if not billable:
        return _UNBILLED
    return catalog, "computed" if catalog is not None else "unknown", version, catalog


#: what a call that is not billed costs: nothing known, from nowhere
_UNBILLED: tuple[float | None, str, str, float | None] = (None, "", "", None)
