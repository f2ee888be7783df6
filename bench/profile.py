"""``python -m bench profile --server daphne|uvicorn``: py-spy over the product during connect and request/response.

Starts PostgreSQL, Redis and one product process (``python -m ws_service``,
``WS_WORKERS=1``), attaches ``py-spy record`` to it (ptrace: root or
CAP_SYS_PTRACE), runs the connect+auth and request/response scenarios at the
chosen size, then stops py-spy with SIGINT so it writes the profile under
``bench/results/``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from bench.configs import BY_NAME
from bench.context import SIZES, RunContext, progress

RESULTS_DIR = Path(__file__).resolve().parent / "results"
EXTENSIONS = {"speedscope": "speedscope.json", "flamegraph": "svg", "raw": "txt"}


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
    return parser


def main(argv: list[str]) -> int:
    arguments = _parser().parse_args(argv)

    from bench.accounts import create_accounts, setup_django
    from bench.infra import Backing, ServerProcess, bench_env, start_all
    from bench.scenarios import connect, reqresp

    config = BY_NAME[f"product-{arguments.server}"]
    sizes = replace(SIZES[arguments.sizes], client_processes=2)
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
        command, extra = config.command(1)
        server = ServerProcess(config.name, command, env | extra, log_dir)
        stack.callback(server.stop)
        start_all([server])
        spy_command = [_py_spy(), "record", "--pid", str(server.pid), "--subprocesses", "--rate", str(arguments.rate)]
        spy_command += ["--format", arguments.format, "--output", str(output)]
        spy = subprocess.Popen(spy_command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        try:
            progress(f"py-spy attached to {config.name} (pid {server.pid}); running connect and request/response")
            for name, scenario in (("connect", connect.run), ("reqresp", reqresp.run)):
                figures = scenario(ctx, server)
                progress(f"  {name}: " + ", ".join(f"{key}={value:.1f}" for key, value in figures.items()))
        finally:
            spy.send_signal(signal.SIGINT)
            _, errors = spy.communicate(timeout=120)
        if spy.returncode not in (0, -signal.SIGINT) or not output.exists():
            progress(f"py-spy failed ({spy.returncode}): {errors.decode(errors='replace')[-1000:]}")
            return 1
    progress(f"profile written to {output}")
    return 0
