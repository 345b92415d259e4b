"""``python -m edgegrad``: the same as the ``edgegrad`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
