"""The web UI's pages, one module each: a function that builds the page's data from injected
dependencies (`tokentrail.web.deps`), and a router mounting the page, its `.json` twin (the same
data) and, where there is one, its `.csv` export."""

from __future__ import annotations

from fastapi import APIRouter

from tokentrail.web.pages import (
    conversations,
    costs,
    developers,
    findings,
    overview,
    signin,
    trace,
    traces,
    waste,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    waste.router,
    findings.router,
    overview.router,
    costs.router,
    developers.router,
    traces.router,
    conversations.router,
    trace.router,
    signin.router,
)
