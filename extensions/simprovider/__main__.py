"""``python -m extensions.simprovider``: run the simulated provider."""

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
