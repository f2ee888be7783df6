"""``python -m bench memprofile --server daphne|uvicorn [--bare] [--connections N]``: what one idle connection holds.

Starts PostgreSQL, Redis and one product process (with ``--bare``: the same
server with the bare ASGI app, to tell the server's own share from the
product's) under tracemalloc (``bench.servers.traced``), opens a few connections and closes them (start-up
costs), snapshots, opens N idle authenticated connections, waits until the
server is quiet, snapshots again, and prints the difference divided by N:
KiB per connection by file, by line (with the allocating call chain's
innermost project frame), and the objects the garbage collector tracks per
connection, in total and by type (a full collection's cost is proportional
to them). The
RSS growth over the same N is printed beside it (tracemalloc sees Python
allocations only; RSS also counts the allocator's slack and C libraries).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from bench.configs import BY_NAME
from bench.context import SIZES, RunContext, progress

WARM_UP = 20
SNAPSHOT_TIMEOUT = 120.0


def _snapshot(pid: int, directory: Path, number: int) -> tuple[tracemalloc.Snapshot, Counter[str]]:
    os.kill(pid, signal.SIGUSR1)
    done = directory / f"done-{number}"
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT
    while not done.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot {number} from pid {pid} within {SNAPSHOT_TIMEOUT}s")
        time.sleep(0.2)
    snapshot = tracemalloc.Snapshot.load(str(directory / f"snapshot-{number}.pickle"))
    types = Counter(json.loads((directory / f"types-{number}.json").read_text()))
    return snapshot, types


def _where(traceback: tracemalloc.Traceback) -> str:
    """The allocating line, plus the innermost frame in the product or the servers it runs on."""
    frames = list(reversed(traceback))  # a Traceback lists the oldest call first: most recent first here
    innermost = f"{frames[0].filename.split('site-packages/')[-1]}:{frames[0].lineno}"
    for frame in frames[1:]:
        name = frame.filename.split("site-packages/")[-1]
        if any(part in name for part in ("ws_service/", "shared/")):
            return f"{innermost} ← {name}:{frame.lineno}"
    return innermost


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, types: Counter[str], n: int, rss: float) -> str:
    filters = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    before, after = before.filter_traces(filters), after.filter_traces(filters)
    lines = [f"N = {n} idle connections; RSS growth {rss:.1f} KiB per connection", ""]
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    lines.append(f"tracemalloc: {total / 1024 / n:.2f} KiB per connection (Python allocations)")
    lines += ["", "| KiB/conn | blocks/conn | file |", "|---:|---:|---|"]
    for stat in after.compare_to(before, "filename")[:15]:
        name = stat.traceback[0].filename.split("site-packages/")[-1]
        lines.append(f"| {stat.size_diff / 1024 / n:.2f} | {stat.count_diff / n:.1f} | {name} |")
    lines += ["", "| KiB/conn | blocks/conn | allocated at |", "|---:|---:|---|"]
    for stat in after.compare_to(before, "traceback")[:30]:
        lines.append(f"| {stat.size_diff / 1024 / n:.2f} | {stat.count_diff / n:.1f} | {_where(stat.traceback)} |")
    lines += ["", f"GC-tracked objects: {types.total() / n:.2f} per connection", ""]
    lines += ["| objects/conn | type |", "|---:|---|"]
    for name, count in types.most_common(25):
        lines.append(f"| {count / n:.2f} | {name} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench memprofile", description=__doc__)
    parser.add_argument("--server", choices=("daphne", "uvicorn"), required=True)
    parser.add_argument("--bare", action="store_true", help="the server with the bare ASGI app, not the product")
    parser.add_argument("--connections", type=int, default=2000, help="idle connections (default 2,000)")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.connections < 1:
        parser.error("--connections must be positive")

    from bench.accounts import create_accounts, setup_django
    from bench.infra import PYTHON, Backing, ServerProcess, bench_env, start_all
    from bench.scenarios.common import close_all, open_all, pool, settle

    config = BY_NAME[f"{arguments.server}-bare" if arguments.bare else f"product-{arguments.server}"]
    n = arguments.connections
    sizes = replace(SIZES["quick"], memory=n)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-memprofile-"))
    trace_dir = Path(tempfile.mkdtemp(prefix="bench-trace-"))
    with ExitStack() as stack:
        backing = Backing()
        stack.callback(backing.stop)
        backing.start()
        env = bench_env(backing.postgres.url, backing.redis.url)
        setup_django(env)
        ctx = RunContext(sizes=sizes, env=env, log_dir=log_dir, accounts=create_accounts("mem", sizes.accounts))
        server_command, extra = config.command(1)
        command = [PYTHON, "-m", "bench.servers.traced", *([] if config.kind == "product" else server_command[1:])]
        server = ServerProcess(config.name, command, env | extra | {"BENCH_TRACE_DIR": str(trace_dir)}, log_dir)
        stack.callback(server.stop)
        start_all([server])
        with pool(ctx, [server.ws_url], WARM_UP) as clients:
            open_all(ctx, clients, WARM_UP)
            close_all(ctx, clients, [server])
        before, types_before = _snapshot(server.pid, trace_dir, 1)
        rss_before = server.rss_kib()
        progress(f"opening {n} idle connections to {config.name} (under tracemalloc)")
        with pool(ctx, [server.ws_url], n) as clients:
            opened = open_all(ctx, clients, n)
            settle(ctx, [server])
            connected = len(opened["times"])
            rss = (server.rss_kib() - rss_before) / max(connected, 1)
            after, types_after = _snapshot(server.pid, trace_dir, 2)
            close_all(ctx, clients, [server])
        types_after.subtract(types_before)
        growth = Counter({name: count for name, count in types_after.items() if count != 0})
    print(f"# {config.label}\n")
    print(report(before, after, growth, connected, rss))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
