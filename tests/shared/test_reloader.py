"""The development reloader (shared/reloader.py) as a real process: restart on a change, stop on SIGTERM.

The watched command is a small script that writes its own pid and a value
from the watched directory to a report file, then sleeps until terminated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.reloader import changed_paths, snapshot

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 10.0

SCRIPT = """
import os, pathlib, signal, sys, time
here = pathlib.Path(sys.argv[1])
value = (here / "value.txt").read_text().strip()
exec((here / "code.py").read_text())
(here / "report").write_text(f"{os.getpid()} {value}")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.1)
"""


def read_report(directory: Path) -> tuple[int, str] | None:
    try:
        pid, value = (directory / "report").read_text().split(" ", 1)
    except (FileNotFoundError, ValueError):
        return None
    return int(pid), value


def wait_for_value(directory: Path, value: str) -> int:
    """The pid of the process that reported ``value``; fails after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        report = read_report(directory)
        if report and report[1] == value:
            return report[0]
        time.sleep(0.05)
    raise AssertionError(f"no process reported {value!r} within {WAIT_SECONDS:g}s: {read_report(directory)}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ", 1)[1].startswith("Z"))


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """The reloader watching ``tmp_path/app``, running the script; terminated at the end."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "value.txt").write_text("one")
    (app / "code.py").write_text("pass\n")
    (tmp_path / "run.py").write_text(SCRIPT)
    command = [sys.executable, "-m", "shared.reloader", "--watch", str(app), "--stop-timeout", "3"]
    command += ["--", sys.executable, str(tmp_path / "run.py"), str(app)]
    reloader = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        yield app, reloader
    finally:
        # SIGTERM, as compose stops it: the reloader stops its command first (a SIGKILL would
        # leave the command running on its own, forever).
        if reloader.poll() is None:
            reloader.send_signal(signal.SIGTERM)
            try:
                reloader.wait(WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                reloader.kill()
                reloader.wait(WAIT_SECONDS)
        assert reloader.stderr is not None
        reloader.stderr.close()
        report = read_report(app)
        if report is not None and alive(report[0]):
            os.kill(report[0], signal.SIGKILL)
            raise AssertionError(f"the command {report[0]} outlived its reloader")


def test_a_change_restarts_the_command(watched: tuple[Path, subprocess.Popen[bytes]]) -> None:
    app, _ = watched
    first = wait_for_value(app, "one")
    (app / "value.txt").write_text("two")
    started = time.monotonic()
    second = wait_for_value(app, "two")
    assert time.monotonic() - started < 3.0
    assert second != first
    assert not alive(first)


def test_a_command_that_fails_is_started_again_at_the_next_change(
    watched: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    app, reloader = watched
    first = wait_for_value(app, "one")
    (app / "code.py").write_text("this is not python\n")
    deadline = time.monotonic() + WAIT_SECONDS
    while alive(first):
        assert time.monotonic() < deadline, "the old process was not stopped"
        time.sleep(0.05)
    time.sleep(1.5)  # the broken version exited; nothing restarts it without a change
    assert reloader.poll() is None
    (app / "code.py").write_text("pass\n")
    (app / "value.txt").write_text("fixed")
    assert wait_for_value(app, "fixed") != first


def test_sigterm_stops_the_command_and_the_reloader(watched: tuple[Path, subprocess.Popen[bytes]]) -> None:
    app, reloader = watched
    child = wait_for_value(app, "one")
    reloader.send_signal(signal.SIGTERM)
    assert reloader.wait(10) == 0  # the script's own exit status on SIGTERM
    assert not alive(child)


def test_snapshots_skip_bytecode_and_caches(tmp_path: Path) -> None:
    (tmp_path / "module.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "module.cpython-313.pyc").write_bytes(b"\0")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.html").write_text("<p>")
    before = snapshot([tmp_path])
    assert sorted(Path(path).name for path in before) == ["module.py", "page.html"]
    (tmp_path / "__pycache__" / "other.pyc").write_bytes(b"\0")
    assert snapshot([tmp_path]) == before
    (tmp_path / "templates" / "page.html").write_text("<p>changed")
    assert changed_paths(before, snapshot([tmp_path])) == [str(tmp_path / "templates" / "page.html")]
    assert len(snapshot([tmp_path], limit=1)) == 1
