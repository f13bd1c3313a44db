"""`python -m cascade_explorer.commands` is `cascade-explorer`."""

import sys

from .cli import main

sys.exit(main())
