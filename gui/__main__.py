"""`python -m lab4f.gui [CONFIG]`."""

import sys

from lab4f.gui.app import run

sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else None))
