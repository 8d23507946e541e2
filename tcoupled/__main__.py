"""Entry point for ``python -m tcoupled``."""

import sys

from tcoupled.cli import main

if __name__ == "__main__":
    sys.exit(main())
