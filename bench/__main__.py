"""``python -m bench``: see ``bench.main`` (kept import-light: client processes are spawned from here)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from bench.main import main

    sys.exit(main(sys.argv[1:]))
