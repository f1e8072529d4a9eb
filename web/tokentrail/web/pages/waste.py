"""The waste report (`/waste`, `.json`, `.csv`): where the money of the analysed traces went, by
bucket, per day, broken down by agent, service, user, day or model, with the findings per
detector and the costliest ones. The trace filters narrow it to the traces they select; with a
model filter, the breakdown by model and the findings count that model's calls only.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tokentrail.store import Client
from tokentrail.store.filters import TraceFilter
from tokentrail.store.waste import DIMENSIONS
from tokentrail.web import render, waste
from tokentrail.web.deps import Inputs, get_client
from tokentrail.web.filters import FILTER_PARAMS, BadRequest

__all__ = ["report", "report_csv", "report_json", "router"]

router = APIRouter(include_in_schema=False)
_inputs = Inputs(*FILTER_PARAMS, "by")
#: top findings the report lists
TOP = 10


def report(client: Client, f: TraceFilter, by: str) -> dict[str, Any]:
    """The report's data, broken down by `by`."""
    if by not in DIMENSIONS:
        raise BadRequest(f"by must be one of {', '.join(DIMENSIONS)}; got {by[:40]!r}")
    reader = waste.reader(client)

    def rows(dimension: str) -> list[dict[str, Any]]:
        if dimension == "model":
            return waste.by_model(reader, f)
        return [waste.report_row(r) for r in reader.by(f, dimension)]

    trend = rows("day")
    return {
        "filter": f,
        "project": f.project,
        "by": by,
        "dimensions": list(DIMENSIONS),
        "buckets": list(waste.BUCKETS),
        "labels": waste.LABELS,
        "totals": waste.report_row(reader.totals(f), key="total"),
        "rows": rows(by) if by != "day" else trend,
        "trend": trend,
        "detectors": reader.by_detector(f),
        "top": waste.findings(client, f.project, reader.findings(f, "", TOP)),
        "not_analyzed": reader.not_analyzed(f),
    }


def report_view(
    f: TraceFilter = Depends(_inputs.filter),
    params: dict[str, str] = Depends(_inputs.params),
    client: Client = Depends(get_client),
) -> dict[str, Any]:
    return report(client, f, params.get("by", "").strip() or "agent")


def report_json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: data[k] for k in ("by", "buckets", "totals", "rows", "trend", "detectors", "top", "not_analyzed")
    }


def report_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    buckets = data["buckets"]
    writer.writerow(
        [
            data["by"],
            "traces",
            "total_usd",
            "wasted_usd",
            "waste_share",
            *(f"{b}_usd" for b in buckets),
            "wasted_tokens",
            "findings",
        ]
    )
    for r in data["rows"]:
        writer.writerow(
            [
                waste.cell(r["key"]),
                r["traces"],
                f"{r['total_usd']:.8f}",
                f"{r['wasted_usd']:.8f}",
                "" if r["waste_share"] is None else f"{r['waste_share']:.4f}",
                *(f"{r['buckets'][b]:.8f}" for b in buckets),
                r["wasted_tokens"],
                r["findings"],
            ]
        )
    return out.getvalue()


@router.get("/waste.csv")
def waste_csv(data: dict[str, Any] = Depends(report_view)) -> Response:
    return render.csv(report_csv(data), f"tokentrail-waste-by-{data['by']}.csv")


@router.get("/waste.json")
def waste_twin(data: dict[str, Any] = Depends(report_view)) -> Response:
    return render.json(report_json(data))


@router.get("/waste", response_class=HTMLResponse)
def waste_page(request: Request, data: dict[str, Any] = Depends(report_view)) -> Response:
    return render.html(request, "waste.html", data)
