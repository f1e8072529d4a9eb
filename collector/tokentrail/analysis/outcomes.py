"""How a trace ended: the SQL lives with the storage layer (`tokentrail.store.outcomes`), shared by
the waste analysis and the UI."""

from __future__ import annotations

from tokentrail.store.outcomes import traces_with_outcome

__all__ = ["traces_with_outcome"]
