"""Instructions a trace to judge the waste analysis's chunks, counted by valgrind's callgrind:
`python -m bench.judge [--chunks 2] [--tree DIR …]`.

These machines' speed swings by 2× from hour to hour (one chunk's judgement took 0.35 to 0.8 CPU-s
on one day), so small changes to the rules cannot be told apart by their time. The number of
instructions a program runs hardly depends on what else the machine is doing: two counts of the
same code and input differed by 0.55% (probably the libraries' threads, scheduled otherwise from
run to run), enough to tell a change of a few percent. So this takes the first `--chunks` chunks of
1,000 traces of the 1M-span dataset (`bench.dataset`), with their summaries, previous traces and
the stored evidence as `analyze_range` reads them, and saves them. It then judges them as a worker
does (`tokentrail.analysis.judge.judge_in_worker`) in a child process under callgrind, twice: once
with no chunk (the start: imports, the price catalog) and once with all of them. The difference
over the traces judged is the instructions a trace.

`--tree DIR` judges the same input with another checkout's code as well (a git worktree of the
code before a change, say), in turns with this one. The input is pickled: both trees must read the
same shapes (`TraceInfo`, `Previous`). Prints one line a tree and round; each takes a minute or
two.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import tree_pythonpath

#: what callgrind prints last: the instructions the program ran
_COLLECTED = re.compile(r"Collected : (\d+)")
_ROOT = Path(__file__).resolve().parent.parent


def save_chunks(client: Any, project: str, ids: list[str], path: Path, size: int | None = None) -> int:
    """These traces' chunks as a run of `analyze_traces` reads them (spans, summaries, previous
    traces; `size` traces a chunk, by default a run's), and the project's stored evidence, pickled
    to `path`; returns how many chunks."""
    from tokentrail.analysis import run

    size = run._CHUNK if size is None else size
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    earlier = run._Earlier.of(client, project, ids)
    fetched = run._fetch(client, project, chunks, earlier)
    known = run._stored_evidence(client, project)
    saved = {
        "project": project,
        "chunks": [(c.spans, c.info, c.previous) for c in fetched],
        "known": known,
    }
    path.write_bytes(pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL))
    return len(fetched)


def judge_saved(path: Path, count: int) -> tuple[int, float]:
    """Judge the first `count` saved chunks as a worker process does; returns the traces judged
    and the CPU seconds."""
    from tokentrail.analysis.judge import init_worker, judge_in_worker
    from tokentrail.analysis.ledger import Thresholds
    from tokentrail.pricing import PriceBook

    init_worker(PriceBook())
    saved = pickle.loads(path.read_bytes())
    thresholds = Thresholds()
    traces = 0
    started = time.process_time()
    for spans, info, previous in saved["chunks"][:count]:
        traces += judge_in_worker(spans, info, previous, saved["known"], saved["project"], thresholds).traces
    return traces, time.process_time() - started


def collected(stderr: str) -> int:
    """The instruction count in callgrind's report."""
    found = _COLLECTED.findall(stderr)
    if not found:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{stderr[-2000:]}")
    return int(found[-1])


def count(tree: Path, path: Path, chunks: int) -> tuple[int, int]:
    """Instructions to start and judge `chunks` saved chunks with `tree`'s code, and the traces
    judged."""
    # a fixed hash seed: sets of strings in the same order from run to run
    env = dict(os.environ, PYTHONPATH=tree_pythonpath(tree), PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "bench.judge", "--judge", str(path), "--count", str(chunks)]
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return collected(done.stderr), int(done.stdout.split()[0])


def per_trace(tree: Path, path: Path, chunks: int) -> tuple[float, int]:
    """Instructions a trace to judge the saved chunks with `tree`'s code, and the traces judged."""
    start, _ = count(tree, path, 0)
    total, traces = count(tree, path, chunks)
    return (total - start) / traces, traces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument(
        "--tree", type=Path, action="append", default=[], help="another checkout to count too"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--judge", type=Path, help=argparse.SUPPRESS)  # the child's own work
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.judge is not None:
        traces, seconds = judge_saved(args.judge, args.count)
        print(traces, f"{seconds:.3f}")
        return

    if shutil.which("valgrind") is None:
        parser.exit(
            2,
            "bench.judge counts instructions with valgrind: install it (Debian: apt-get install valgrind)\n",
        )
    from bench.dataset import open_dataset
    from tokentrail.analysis.run import _CHUNK
    from tokentrail.store import ledger

    with tempfile.TemporaryDirectory(prefix="tokentrail-judge-") as scratch:
        path = Path(scratch) / "chunks.pickle"
        data = open_dataset(1_000_000)
        try:
            ids = ledger.trace_ids_started(data.store.client, "default", 0, 2**62)[: args.chunks * _CHUNK]
            save_chunks(data.store.client, "default", ids, path)
        finally:
            data.close()
        trees = [_ROOT, *(tree.resolve() for tree in args.tree)]
        for n in range(args.rounds):
            for tree in trees:
                instructions, traces = per_trace(tree, path, args.chunks)
                print(
                    f"round {n + 1}, {tree}: {instructions:,.0f} instructions a trace ({traces:,} traces)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
