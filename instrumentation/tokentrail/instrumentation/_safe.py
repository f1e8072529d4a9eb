"""Never break the host: our own failures are logged, the user's exceptions pass untouched."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["logger", "safely"]

logger = logging.getLogger("tokentrail")

F = TypeVar("F", bound=Callable[..., Any])


def safely(fn: F) -> F:
    """Run instrumentation code that must not raise into the application; returns None on failure."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:
            logger.debug("tokentrail: %s failed", fn.__qualname__, exc_info=True)
            return None

    return wrapper  # type: ignore[return-value]
