"""Command line: ``python -m bench [--quick|--smoke] [--reps N] [--only CONFIG...] [--scenarios ...] [--json PATH]``
and ``python -m bench profile --server daphne|uvicorn``.

Starts PostgreSQL and Redis, migrates, creates users with sessions, starts
the web service (for the product's HTTP publish), then measures every
configuration; progress on stderr, the Markdown table on stdout, JSON to
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench.configs import BY_NAME, CONFIGS
from bench.context import SIZES, RunContext, Sizes, progress
from bench.runner import SCENARIOS

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WEB_COMMAND = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "web_service.asgi:application"]
CLIENT_NOTE = (
    "clients: websockets asyncio client, compression=None, no client pings, uvloop, "
    "several processes, source addresses 127.0.0.2-17 → 127.0.0.1; everything on one 2-core machine"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="sizes", const="quick", help="small N (development)")
    size.add_argument("--smoke", action="store_const", dest="sizes", const="smoke", help="tiny N (the smoke test)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (default 3)")
    parser.add_argument("--only", nargs="+", choices=[c.name for c in CONFIGS], help="configurations to measure")
    parser.add_argument(
        "--hold-reps", type=int, help="repetitions of the hold (default: --reps; each takes N connects + 60 s)"
    )
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "latest.json", help="where the JSON goes")
    parser.add_argument("--clients", type=int, help="client processes (default 2; more are added past 9,000 sockets)")
    parser.add_argument("--idle-connections", type=int, help="idle CPU: connections, one user each (full 10,000)")
    parser.add_argument("--idle-seconds", type=float, help="idle CPU: measuring window in seconds (full 60)")
    parser.add_argument("--storm-users", type=int, help="subscribe storm: distinct users (full 2,000)")
    parser.add_argument("--reconnect-clients", type=int, help="reconnect storm: clients, one user each (full 10,000)")
    parser.add_argument(
        "--reconnect-rate", type=float, help="reconnect storm: messages/s published while the server is away (5)"
    )
    parser.set_defaults(sizes="full")
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _sizes(arguments: argparse.Namespace) -> Sizes:
    """The named sizes with the command line's overrides."""
    overrides = {
        "client_processes": arguments.clients,
        "idle": arguments.idle_connections,
        "idle_seconds": arguments.idle_seconds,
        "storm": arguments.storm_users,
        "reconnect": arguments.reconnect_clients,
        "reconnect_rate": arguments.reconnect_rate,
    }
    return replace(SIZES[arguments.sizes], **{key: value for key, value in overrides.items() if value})


def _distinct_users(sizes: Sizes, scenarios: list[str]) -> int:
    """Users the idle, storm and reconnect scenarios need (one per connection)."""
    needed = {"idle": sizes.idle, "storm": sizes.storm, "reconnect": sizes.reconnect}
    return max((count for name, count in needed.items() if name in scenarios), default=0)


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    from bench import report
    from bench.accounts import create_accounts, create_distinct_accounts, setup_django
    from bench.infra import Backing, ServerProcess, bench_env, precompile, start_all
    from bench.runner import ConfigRun

    sizes = _sizes(arguments)
    configs = [BY_NAME[name] for name in arguments.only] if arguments.only else list(CONFIGS)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    started = time.time()
    with ExitStack() as stack:
        progress(f"sizes {sizes.name}, {arguments.reps} reps, configs {[c.name for c in configs]}, logs in {log_dir}")
        if not precompile():
            progress("some modules could not be compiled to bytecode (their processes compile them at each start)")
        backing = Backing()
        stack.callback(backing.stop)
        backing.start()
        env = dict(os.environ) | bench_env(backing.postgres.url, backing.redis.url)
        shown = {k: v for k, v in env.items() if k.startswith(("WS_", "DJANGO_", "DATABASE", "REDIS", "METRICS"))}
        progress("server environment: " + " ".join(f"{k}={v}" for k, v in sorted(shown.items()) if "SECRET" not in k))
        setup_django(env)
        accounts = create_accounts("bench", sizes.accounts)
        ctx = RunContext(sizes=sizes, env=env, log_dir=log_dir, accounts=accounts)
        if distinct := _distinct_users(sizes, arguments.scenarios):
            progress(f"creating {distinct} users with one session each (idle CPU, subscribe storm, reconnect storm)")
            ctx.distinct = create_distinct_accounts("distinct", distinct)
        if any(c.kind == "product" for c in configs) and "fanout" in arguments.scenarios:
            ctx.web = ServerProcess("web", WEB_COMMAND, env, log_dir)
            stack.callback(ctx.web.stop)
            start_all([ctx.web])
        results: dict[str, Any] = {}
        for config in configs:
            config_run = ConfigRun(ctx, config, arguments.scenarios, arguments.reps, arguments.hold_reps)
            reps = config_run.run()
            results[config.name] = {
                "label": config.label,
                "reps": reps,
                "summary": report.summarise(reps),
                "errors": config_run.errors,
            }
    table = report.ratios(results)
    document = {
        "meta": {
            "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
            "seconds": round(time.time() - started, 1),
            "sizes": asdict(sizes),
            "reps": arguments.reps,
            "hold_reps": arguments.hold_reps or arguments.reps,
            "scenarios": arguments.scenarios,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "server_env": {k: v for k, v in shown.items() if "SECRET" not in k},
            "notes": [
                CLIENT_NOTE,
                "hold: 2 server processes on one listening socket (product: WS_WORKERS=2; others: bench.servers.multi)",
                "reconnect storm: wsclient.WsClient (default backoff, no client pings), one user each, restarted "
                "server on the same port; raw: nothing to replay (it stores nothing)",
                "RSS: VmRSS summed over the server's process tree",
                *sorted(set(ctx.notes))[:20],
            ],
        },
        "configs": results,
        "ratios": table,
        "targets": report.targets(results, table),
    }
    report.write_json(document, arguments.json)
    progress(f"JSON written to {arguments.json}")
    return document


def main(argv: list[str]) -> int:
    if argv and argv[0] == "profile":
        from bench.profile import main as profile_main

        return profile_main(argv[1:])
    if argv and argv[0] == "memprofile":
        from bench.memprofile import main as memprofile_main

        return memprofile_main(argv[1:])
    arguments = _parser().parse_args(argv)
    if arguments.reps < 1 or (arguments.hold_reps is not None and not 1 <= arguments.hold_reps <= arguments.reps):
        _parser().error("--reps must be at least 1, --hold-reps between 1 and --reps")
    sizes = (
        arguments.idle_connections,
        arguments.idle_seconds,
        arguments.storm_users,
        arguments.reconnect_clients,
        arguments.reconnect_rate,
    )
    if any(value is not None and value <= 0 for value in sizes):
        _parser().error(
            "--idle-connections, --idle-seconds, --storm-users, --reconnect-clients and --reconnect-rate "
            "must be positive"
        )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        document = run(arguments)
    except KeyboardInterrupt:
        progress("interrupted; everything started was stopped")
        return 130
    from bench.report import markdown

    print(markdown(document))
    return 0
