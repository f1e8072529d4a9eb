"""The flattening pool: spool records turned into insertable batches, a chunk a job.

Flattening (protobuf to rows, normalization, pricing) is CPU-bound Python, so with `workers > 0`
it runs in that many worker processes, spawned (never forked: the collector holds chDB), while
the writer inserts earlier chunks. The writer hands a worker where a record's payload lies in its
segment rather than the payload (the worker reads and checks it itself). What runs in a worker is
in tokentrail.collector.flatten_worker.

A job's result is a `Flattened`: in memory, or (`stage_dir`) an Arrow file the worker wrote under
spool/staging/, which the embedded database reads directly and the writer otherwise sends to the
database a record batch at a time, so that no batch crosses a pipe or is held whole in the
collector. A staged file is removed once inserted, or when its job is abandoned (the
writer stops or fails: the spool still holds the records, and they are replayed); the folder is
cleared at start, since what a previous run left there is replayed too.

With `workers=0`, or once a worker process died, jobs are flattened on the writer's thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tokentrail.collector.flatten import Flattened, SpoolItem, flatten_records
from tokentrail.collector.flatten_worker import flatten_in_worker, init_worker
from tokentrail.collector.redact import Redactor
from tokentrail.collector.spool import Record
from tokentrail.collector.writer.reader import approx_spans
from tokentrail.pricing import PriceBook

__all__ = ["FlattenPool", "Job", "abandon", "discard"]

logger = logging.getLogger("tokentrail.collector")


@dataclass
class Job:
    """Records being flattened, in spool order."""

    records: list[Record]
    rows: Future[Flattened]

    @property
    def spans(self) -> int:
        """About how many spans (see `approx_spans`)."""
        return sum(map(approx_spans, self.records))


def _item(record: Record) -> SpoolItem:
    """What flattening needs of a record: its payload, or (read without it) where it lies."""
    return (record.kind, record.project, record.payload or record.stored or b"")


class FlattenPool:
    def __init__(
        self,
        workers: int,
        stage_dir: Path | None,
        pricer: PriceBook | None,
        redactor: Redactor | None = None,
    ) -> None:
        """`stage_dir`: where workers stage their batches as files."""
        self.pricer = pricer
        self.redactor = redactor
        self.workers = workers
        self.stage_dir = stage_dir if workers > 0 else None
        if self.stage_dir is not None:
            # chunks staged by a run that ended mid-batch; the spool still holds their records
            shutil.rmtree(self.stage_dir, ignore_errors=True)
            self.stage_dir.mkdir(parents=True)
        self._executor: ProcessPoolExecutor | None = None
        if workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),  # never fork a process holding chDB
                initializer=init_worker,
                initargs=(
                    os.getpid(),
                    pricer is not None,
                    str(self.stage_dir) if self.stage_dir else None,
                    redactor,
                ),
            )

    @property
    def in_process(self) -> bool:
        """Jobs are flattened in this process, which needs the records' payloads."""
        return self._executor is None

    def start(self) -> None:
        """Start the workers (process spawn, imports, price catalog) now, not on the first jobs:
        the executor starts a process per job submitted while none is idle, so one job each."""
        if self._executor is not None:
            for _ in range(self.workers):
                self._executor.submit(flatten_in_worker, [])

    def submit(self, records: list[Record]) -> Job:
        items = [_item(r) for r in records]
        if self._executor is not None:
            try:
                return Job(records, self._executor.submit(flatten_in_worker, items))
            except BrokenProcessPool:
                logger.error(
                    "the flattening worker process died; flattening on the writer thread from now on"
                )
                self._executor = None
        done: Future[Flattened] = Future()
        try:
            done.set_result(flatten_records(items, self.pricer, redactor=self.redactor))
        except Exception as exc:
            done.set_exception(exc)
        return Job(records, done)

    def flatten_here(self, record: Record) -> Flattened:
        """One record, flattened in this process (raises what flattening raises)."""
        return flatten_records([_item(record)], self.pricer, redactor=self.redactor)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None


def discard(batches: Iterable[Flattened]) -> None:
    """Remove the batches' staged files (inserted, or not to be)."""
    for rows in batches:
        rows.discard()


def _discard_result(future: Future[Flattened]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().discard()


def abandon(jobs: Iterable[Job]) -> None:
    """Drop jobs that will not be inserted now; their staged files go when they finish."""
    for job in jobs:
        job.rows.cancel()
        job.rows.add_done_callback(_discard_result)
