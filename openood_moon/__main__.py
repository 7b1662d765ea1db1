"""``python -m openood_moon``: the same command line as ``main.py`` and ``openood-moon``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
