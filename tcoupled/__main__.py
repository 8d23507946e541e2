"""Entry point for ``python -m tcoupled``."""

import sys

from tcoupled.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
