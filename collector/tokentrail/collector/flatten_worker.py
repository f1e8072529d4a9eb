"""What runs in a flattening worker process (tokentrail.collector.writer.pool starts them).

Apart from the writer's package, so that a worker imports only what flattening needs: pyarrow,
protobuf, the normalizer, pricing and redaction, not the database client or the writer. Each
worker builds its own price book once, and its own redactor from the one it is given (its
settings); it hands each batch back as an Arrow file in the staging folder (when given), and
exits when the collector that started it is gone (a collector killed with -9 cannot stop it).

Two things keep a worker's memory down: pyarrow allocates from the C library's heap (its default
pool keeps what it freed for reuse: tens of MB more per worker), and pandas is not imported
(`tokentrail.server.no_pandas`).
"""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pyarrow as pa

from tokentrail.collector.flatten import Flattened, SpoolItem, flatten_records
from tokentrail.collector.redact import Redactor
from tokentrail.pricing import PriceBook
from tokentrail.server.no_pandas import leave_out_pandas

__all__ = ["flatten_in_worker", "init_worker"]

_pricer: PriceBook | None = None
_stage_dir: Path | None = None
_redactor: Redactor | None = None


def init_worker(parent: int, with_pricing: bool, stage_dir: str | None, redactor: Redactor | None) -> None:
    """Set up a worker process. (The parent is given, not looked up: a collector killed while
    this worker was starting would be taken for init, pid 1, and waited on forever.)"""
    global _pricer, _stage_dir, _redactor
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()
    leave_out_pandas()
    pa.set_memory_pool(pa.system_memory_pool())
    _stage_dir = Path(stage_dir) if stage_dir else None
    _redactor = redactor
    if with_pricing:
        _pricer = PriceBook()


def _exit_without(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def flatten_in_worker(records: list[SpoolItem]) -> Flattened:
    """Flatten one job's records."""
    # A batch builds many small containers and no reference cycles: collecting garbage while it
    # runs only walks them again and again.
    gc.disable()
    try:
        return flatten_records(records, _pricer, _stage_dir, _redactor)
    finally:
        gc.enable()
