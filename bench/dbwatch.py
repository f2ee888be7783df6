"""The peak number of PostgreSQL connections to the app's database while a scenario runs.

A thread samples ``pg_stat_activity`` every few milliseconds over its own
connection (not counted), after closing the harness's own Django connections,
so the figure is what the servers under test (and the web service, when
running) hold.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

INTERVAL_SECONDS = 0.005
MAX_SAMPLES = 200_000  # a bound on the sampling loop (about 17 minutes at the interval)
COUNT = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


class Peak:
    def __init__(self) -> None:
        self.value = 0


@contextmanager
def peak_connections(database_url: str) -> Iterator[Peak]:
    """Yields a :class:`Peak` whose ``value`` is the highest count seen once the block ends."""
    from django.db import connections

    connections.close_all()
    peak = Peak()
    stop = threading.Event()
    sampler = psycopg.connect(database_url, autocommit=True)

    def sample() -> None:
        for _ in range(MAX_SAMPLES):
            row = sampler.execute(COUNT).fetchone()
            peak.value = max(peak.value, int(row[0]) if row else 0)
            if stop.wait(INTERVAL_SECONDS):
                return

    thread = threading.Thread(target=sample, name="bench-db-peak", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join(5)
        sampler.close()
