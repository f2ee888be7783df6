"""Development only: run a command, and run it again when a file under the watched directories changes.

``python -m shared.reloader --watch shared --watch web_service -- python -m web_service``

compose.dev.yaml runs web and ws this way over the bind-mounted code, so an
edit on the host is live within about a second plus the service's start-up,
without a rebuild (docs/compose.md). The directories are polled (mtime and
size of every file, ``POLL_SECONDS`` apart): that works on bind mounts of
every Docker setup, where file events may not cross into the container. A
change restarts the command: SIGTERM (the ws launcher drains, closing its
sockets with 1012 so clients reconnect), SIGKILL after ``--stop-timeout``.
A command that exits by itself (a syntax error, say) is started again at
the next change. SIGTERM or SIGINT to the reloader stop the command the same
way and end the reloader with its exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

POLL_SECONDS = 0.5
# After a change is seen: time for an editor (or git checkout) to finish writing.
SETTLE_SECONDS = 0.2
# The most files watched; beyond it the rest are ignored, with a warning.
MAX_FILES = 20_000
IGNORED_DIRECTORIES = frozenset({"__pycache__", ".git", ".mypy_cache", ".ruff_cache", "node_modules"})
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", "~")

logger = logging.getLogger("shared.reloader")

Snapshot = dict[str, tuple[int, int]]


def snapshot(directories: Sequence[Path], limit: int = MAX_FILES) -> Snapshot:
    """``path -> (mtime_ns, size)`` of the watched files under ``directories``, at most ``limit`` of them."""
    files: Snapshot = {}
    for directory in directories:
        for root, subdirectories, names in os.walk(directory):
            subdirectories[:] = sorted(name for name in subdirectories if name not in IGNORED_DIRECTORIES)
            for name in sorted(names):
                if name.endswith(IGNORED_SUFFIXES):
                    continue
                if len(files) >= limit:
                    logger.warning("more than %d files under %s: the rest are not watched", limit, directories)
                    return files
                path = os.path.join(root, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue  # removed between listing and stat: the next poll sees it gone
                files[path] = (stat.st_mtime_ns, stat.st_size)
    return files


def changed_paths(before: Snapshot, after: Snapshot) -> list[str]:
    """Files added, removed or modified between two snapshots."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


class Reloader:
    """The command as a child process, restarted on every change under ``directories``."""

    def __init__(self, command: Sequence[str], directories: Sequence[Path], stop_timeout: float) -> None:
        self.command = list(command)
        self.directories = list(directories)
        self.stop_timeout = stop_timeout
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def start(self) -> None:
        logger.info("starting: %s", " ".join(self.command))
        self.child = subprocess.Popen(self.command)  # noqa: S603 - the command line this reloader was given

    def stop(self) -> int:
        """SIGTERM the child, SIGKILL it after ``stop_timeout``; its exit status."""
        child = self.child
        if child is None:
            return 0
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("no exit within %gs of SIGTERM: killing it", self.stop_timeout)
                child.kill()
                child.wait()
        return child.returncode

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        files = snapshot(self.directories)
        self.start()
        reported_exit = False
        while not self.stopping:
            time.sleep(POLL_SECONDS)
            if self.child is not None and self.child.poll() is not None and not reported_exit:
                logger.warning("exited with %s: started again at the next change", self.child.returncode)
                reported_exit = True
            current = snapshot(self.directories)
            if current == files or self.stopping:
                continue
            time.sleep(SETTLE_SECONDS)
            current = snapshot(self.directories)
            changed = changed_paths(files, current)
            files = current
            logger.info("changed: %s%s; restarting", ", ".join(changed[:3]), " ..." if len(changed) > 3 else "")
            self.stop()
            self.start()
            reported_exit = False
        return self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.reloader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--watch", action="append", required=True, type=Path, help="a directory to watch (repeat)")
    parser.add_argument("--stop-timeout", type=float, default=10.0, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command line to run")
    arguments = parser.parse_args(argv)
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("give the command after --")
    for directory in arguments.watch:
        if not directory.is_dir():
            parser.error(f"--watch {directory}: not a directory")
    logging.basicConfig(level=logging.INFO, format="reloader: %(message)s", stream=sys.stderr)
    return Reloader(command, arguments.watch, arguments.stop_timeout).run()


if __name__ == "__main__":
    sys.exit(main())
