"""``python -m wsclient``: see :mod:`wsclient.cli`."""

import sys

from wsclient.cli import main

sys.exit(main())
