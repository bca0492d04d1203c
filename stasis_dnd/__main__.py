"""`python -m stasis_dnd` is the `stasis-dnd` command."""

import sys

from stasis_dnd.cli import main

sys.exit(main())
