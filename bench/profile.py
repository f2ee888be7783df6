"""``python -m bench profile --server daphne|uvicorn``: py-spy over the product while scenarios run.

Starts PostgreSQL, Redis and one product process (``python -m ws_service``,
``WS_WORKERS=1``), attaches ``py-spy record`` to it (ptrace: root or
CAP_SYS_PTRACE), runs the chosen scenarios (``--scenarios``; default connect+auth
and request/response; ``idle`` and ``storm`` too, sized by ``--idle-connections``,
``--idle-seconds`` and ``--storm-users``) at the chosen size, then stops py-spy
with SIGINT so it writes the profile under ``bench/results/``. With ``--idle-only``
nothing but the idle window is sampled (py-spy attaches after the connections
are open): where a server's idle CPU goes.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from bench.configs import BY_NAME
from bench.context import SIZES, RunContext, progress
from bench.publishers import Publisher

RESULTS_DIR = Path(__file__).resolve().parent / "results"
EXTENSIONS = {"speedscope": "speedscope.json", "flamegraph": "svg", "raw": "txt"}


PROFILED = ("connect", "reqresp", "idle", "storm")


@contextmanager
def _closing(publisher: Publisher) -> Iterator[Publisher]:
    try:
        yield publisher
    finally:
        publisher.close()


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found (it is a dev dependency: uv sync)")
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__)
    parser.add_argument("--server", choices=("daphne", "uvicorn"), required=True)
    parser.add_argument("--quick", action="store_const", dest="sizes", const="quick", default="full")
    parser.add_argument("--format", choices=sorted(EXTENSIONS), default="speedscope")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--output", type=Path, help="profile file (default bench/results/profile-SERVER.EXT)")
    parser.add_argument("--scenarios", nargs="+", choices=PROFILED, default=["connect", "reqresp"])
    parser.add_argument("--idle-connections", type=int, help="idle: connections, one user each")
    parser.add_argument("--idle-seconds", type=float, help="idle: window in seconds")
    parser.add_argument("--storm-users", type=int, help="storm: distinct users")
    parser.add_argument("--idle-only", action="store_true", help="sample only the idle window (implies idle)")
    return parser


def main(argv: list[str]) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.idle_only:
        arguments.scenarios = ["idle"]

    from bench.accounts import create_accounts, create_distinct_accounts, setup_django
    from bench.infra import Backing, ServerProcess, bench_env, start_all
    from bench.publishers import WsPublisher
    from bench.scenarios import connect, idle, reqresp, storm

    config = BY_NAME[f"product-{arguments.server}"]
    overrides = {"idle": arguments.idle_connections, "idle_seconds": arguments.idle_seconds}
    overrides["storm"] = arguments.storm_users
    sizes = replace(
        SIZES[arguments.sizes], client_processes=2, **{key: value for key, value in overrides.items() if value}
    )
    output: Path = arguments.output or RESULTS_DIR / f"profile-{arguments.server}.{EXTENSIONS[arguments.format]}"
    output.parent.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    with ExitStack() as stack:
        backing = Backing()
        stack.callback(backing.stop)
        backing.start()
        env = bench_env(backing.postgres.url, backing.redis.url)
        setup_django(env)
        ctx = RunContext(sizes=sizes, env=env, log_dir=log_dir, accounts=create_accounts("prof", sizes.accounts))
        distinct = max(
            sizes.idle if "idle" in arguments.scenarios else 0, sizes.storm if "storm" in arguments.scenarios else 0
        )
        if distinct:
            ctx.distinct = create_distinct_accounts("prof-distinct", distinct)
        command, extra = config.command(1)
        server = ServerProcess(config.name, command, env | extra, log_dir)
        stack.callback(server.stop)
        start_all([server])
        spy_command = [_py_spy(), "record", "--pid", str(server.pid), "--subprocesses", "--rate", str(arguments.rate)]
        spy_command += ["--format", arguments.format, "--output", str(output)]
        spy: subprocess.Popen[bytes] | None = None

        errors = b""

        def attach() -> None:
            nonlocal spy
            spy = subprocess.Popen(spy_command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
            progress(f"py-spy attached to {config.name} (pid {server.pid})")

        def detach() -> None:
            nonlocal errors
            if spy is not None and spy.returncode is None:
                spy.send_signal(signal.SIGINT)
                _, errors = spy.communicate(timeout=120)

        scenarios: dict[str, Callable[[], dict[str, float]]] = {
            "connect": lambda: connect.run(ctx, server),
            "reqresp": lambda: reqresp.run(ctx, server),
            "idle": lambda: idle.run(
                ctx,
                server,
                before_window=attach if arguments.idle_only else None,
                after_window=detach if arguments.idle_only else None,
            ),
            "storm": lambda: storm.run(
                ctx, server, stack.enter_context(_closing(WsPublisher([server.ws_url], ctx.cookies[0]))), 1, config.name
            )[0],
        }
        try:
            if not arguments.idle_only:
                attach()
            for name in arguments.scenarios:
                figures = scenarios[name]()
                progress(f"  {name}: " + ", ".join(f"{key}={value:.1f}" for key, value in figures.items()))
        finally:
            detach()
        if spy is None:
            return 1
        if spy.returncode not in (0, -signal.SIGINT) or not output.exists():
            progress(f"py-spy failed ({spy.returncode}): {errors.decode(errors='replace')[-1000:]}")
            return 1
    progress(f"profile written to {output}")
    return 0
