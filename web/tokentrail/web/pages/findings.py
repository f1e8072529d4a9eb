"""Every finding of the waste ledger (`/findings`, `.json`, `.csv`), costliest first, with the rule
that made it and the numbers its dollars rest on; of one detector or all. The trace filters
narrow it to the traces they select (and a model filter to that model's calls). The page lists
the costliest `FINDINGS_SHOWN`; the JSON and CSV take up to `MAX_EXPORT`.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tokentrail.store import Client
from tokentrail.store.filters import TraceFilter
from tokentrail.web import render, waste
from tokentrail.web.deps import Inputs, get_client
from tokentrail.web.filters import FILTER_PARAMS, BadRequest

__all__ = ["FINDING_FIELDS", "findings_csv", "findings_json", "findings_view", "router"]

FINDINGS_SHOWN = 200
MAX_EXPORT = 10_000
#: a finding as the JSON and the CSV show it: what, where, how much, by which rule, on which numbers
FINDING_FIELDS = (
    "trace_id",
    "span_id",
    "start_ns",
    "detector",
    "rule",
    "wasted_usd",
    "wasted_tokens",
    "time_lost_ns",
    "model",
    "agent",
    "reason",
    "related",
    "evidence",
)

router = APIRouter(include_in_schema=False)
_inputs = Inputs(*FILTER_PARAMS, "detector")


def findings(client: Client, f: TraceFilter, detector: str, limit: int) -> dict[str, Any]:
    """The filter's findings of `detector` (all when empty), at most `limit`."""
    detectors = list(waste.BUCKETS[:-1])
    if detector and detector not in detectors:
        raise BadRequest(f"detector must be one of {', '.join(detectors)}; got {detector[:40]!r}")
    found = waste.reader(client).findings(f, detector, limit)
    return {
        "filter": f,
        "project": f.project,
        "detector": detector,
        "detectors": detectors,
        "labels": waste.LABELS,
        "findings": waste.findings(client, f.project, found),
        "limit": limit,
    }


def findings_view(limit: int) -> Any:
    def view(
        f: TraceFilter = Depends(_inputs.filter),
        params: dict[str, str] = Depends(_inputs.params),
        client: Client = Depends(get_client),
    ) -> dict[str, Any]:
        return findings(client, f, params.get("detector", "").strip(), limit)

    return view


def findings_json(data: dict[str, Any]) -> dict[str, Any]:
    return {"detector": data["detector"], "limit": data["limit"], "findings": data["findings"]}


def findings_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*FINDING_FIELDS[:-2], "stale_item", "related", "formula", "evidence"])
    for x in data["findings"]:
        writer.writerow(
            [
                *(waste.cell(x[k]) for k in FINDING_FIELDS[:5]),
                "" if x["wasted_usd"] is None else f"{x['wasted_usd']:.8f}",
                x["wasted_tokens"],
                x["time_lost_ns"],
                waste.cell(x["model"]),
                waste.cell(x["agent"]),
                waste.cell(x["reason"]),
                waste.cell(x["stale_item"] or ""),
                " ".join(x["related"]),
                waste.cell(str(x["evidence"].get("formula", ""))),
                waste.cell(json.dumps(x["evidence"], sort_keys=True)),
            ]
        )
    return out.getvalue()


@router.get("/findings.csv")
def findings_export(data: dict[str, Any] = Depends(findings_view(MAX_EXPORT))) -> Response:
    return render.csv(findings_csv(data), "tokentrail-findings.csv")


@router.get("/findings.json")
def findings_twin(data: dict[str, Any] = Depends(findings_view(MAX_EXPORT))) -> Response:
    return render.json(findings_json(data))


@router.get("/findings", response_class=HTMLResponse)
def findings_page(
    request: Request, data: dict[str, Any] = Depends(findings_view(FINDINGS_SHOWN))
) -> Response:
    return render.html(request, "findings.html", data)
