"""The outcome verdict's SQL, as the web UI imports it; its home is `tokentrail.store.outcomes`."""

from __future__ import annotations

from tokentrail.store.outcomes import traces_with_outcome

__all__ = ["traces_with_outcome"]
