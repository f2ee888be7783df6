"""What every scenario gets: the sizes of this run, the accounts' cookies, where logs go, progress output."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.accounts import Account
from bench.infra import ServerProcess


@dataclass(frozen=True, slots=True)
class Sizes:
    name: str
    connect: int  # connect + auth burst
    memory: int  # idle connections for RSS growth / N
    hold: int  # connections held (2 server processes)
    hold_seconds: float
    reqresp: int  # connections in the request/response closed loop
    reqresp_seconds: float
    fanout: int  # subscribers over 2 server processes
    accounts: int  # users (connections share their sessions round robin)
    client_processes: int
    connect_concurrency: int  # handshakes in flight over all client processes
    open_timeout: float
    fanout_timeout: float
    settle_timeout: float  # bound on waiting for the server to go quiet
    idle: int  # idle connections for the CPU of the server's tree (one user each)
    idle_seconds: float  # CPU measuring window
    storm: int  # distinct users subscribing to one topic at once
    storm_timeout: float  # bound on each wait of the storm (subscribed, quiet, deliveries)
    reconnect: int  # reconnect storm: clients (one user each) of the restarted server process
    reconnect_rate: float  # reconnect storm: messages published per second while the server is away
    reconnect_timeout: float  # reconnect storm: bound on the wait for every client to be back


FULL = Sizes(
    "full",
    5_000,
    10_000,
    20_000,
    60.0,
    1_000,
    10.0,
    10_000,
    50,
    2,
    200,
    60.0,
    60.0,
    30.0,
    10_000,
    60.0,
    2_000,
    300.0,
    10_000,
    5.0,
    300.0,
)
QUICK = Sizes(
    "quick",
    300,
    500,
    1_000,
    5.0,
    200,
    3.0,
    1_000,
    10,
    2,
    100,
    30.0,
    20.0,
    10.0,
    1_000,
    10.0,
    200,
    60.0,
    1_000,
    5.0,
    120.0,
)
SMOKE = Sizes("smoke", 40, 40, 60, 1.0, 20, 1.0, 60, 4, 1, 40, 20.0, 10.0, 3.0, 30, 1.0, 20, 20.0, 20, 5.0, 60.0)
SIZES = {sizes.name: sizes for sizes in (FULL, QUICK, SMOKE)}


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(slots=True)
class RunContext:
    sizes: Sizes
    env: dict[str, str]
    log_dir: Path
    accounts: list[Account]
    distinct: list[Account] = field(default_factory=list)  # one user per connection (idle, storm, reconnect)
    web: ServerProcess | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cookies(self) -> list[str]:
        return [f"sessionid={account.session_key}" for account in self.accounts]

    def distinct_cookies(self, count: int) -> list[str]:
        """``count`` session cookies of ``count`` different users (connection i gets cookie i)."""
        if count > len(self.distinct):
            raise RuntimeError(f"{count} distinct users wanted, {len(self.distinct)} created")
        return [f"sessionid={account.session_key}" for account in self.distinct[:count]]
