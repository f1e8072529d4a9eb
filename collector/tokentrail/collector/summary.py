"""The writer's name for the reconciler (`tokentrail.store.reconcile`), which keeps trace
summaries, billable flags and filed outcomes right as spans arrive."""

from __future__ import annotations

from tokentrail.store.reconcile import reconcile as refresh

__all__ = ["refresh"]
