"""`python -m maspo ...` is the `maspo` command."""

import sys

from maspo.cli import main

sys.exit(main())
