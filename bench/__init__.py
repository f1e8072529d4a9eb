"""Benchmarks: `python -m bench.<name>` prints figures."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["tree_pythonpath"]


def tree_pythonpath(root: Path) -> str:
    """The PYTHONPATH that runs the checkout at `root` (its packages and its `bench`), for
    benchmarks that time another tree's code beside this one's."""
    return os.pathsep.join(str(root / part) for part in ("instrumentation", "collector", "web", ""))
