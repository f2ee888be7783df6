"""Several server processes on one listening socket: ``python -m bench.servers.multi --workers 2 --port P -- CMD``.

``CMD`` contains ``{fd}``, replaced by the inherited socket's descriptor. The
reference servers use this for the 20,000-connection hold (one process may
open at most 20,000 files); the product has its own (``WS_WORKERS``).
SIGTERM/SIGINT are passed on; the wrapper exits when every worker has.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import time
from types import FrameType


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args()
    command = [part for part in arguments.command if part != "--"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", arguments.port))
    sock.listen(4096)
    sock.set_inheritable(True)
    fd = sock.fileno()
    argv = [part.format(fd=fd) for part in command]
    workers = [subprocess.Popen(argv, pass_fds=(fd,)) for _ in range(arguments.workers)]  # noqa: S603 - our own command

    def forward(signum: int, frame: FrameType | None) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while any(worker.poll() is None for worker in workers):
        if any(worker.poll() not in (None, 0) for worker in workers):
            forward(signal.SIGTERM, None)  # one crashed: stop the rest, the harness sees the exit
        time.sleep(0.2)
    return max(worker.returncode or 0 for worker in workers)


if __name__ == "__main__":
    raise SystemExit(main())
