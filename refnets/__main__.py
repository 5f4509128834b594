"""``python -m refnets`` is the ``refnets`` command line."""
import sys

from .cli import main

sys.exit(main())
