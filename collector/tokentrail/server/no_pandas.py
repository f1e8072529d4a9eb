"""Keeping pandas out of Tokentrail's own processes: the server, the command line's server
commands, and the flattening and judging workers.

chDB depends on pandas, so it is installed beside the engine. pyarrow (building an array from
Python lists) and clickhouse-connect (inserting rows) import it the first time they are called,
only to check whether what they were given is a pandas object, which in these processes it never
is. The import costs ~38 MiB resident in every process that makes it, and ~0.25 s of CPU.
`leave_out_pandas` makes that import fail as if pandas were not installed; both libraries then do
without it.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

__all__ = ["leave_out_pandas"]


class _NoPandas(importlib.abc.MetaPathFinder):
    """Makes `import pandas` fail as if it were not installed."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(
                f"No module named {name!r} (left out of Tokentrail's processes)", name=name
            )
        return None


def leave_out_pandas() -> None:
    """From now on, in this process, `import pandas` fails (once is enough; a pandas imported
    already stays)."""
    if not any(isinstance(finder, _NoPandas) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
