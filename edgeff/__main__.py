"""`python -m edgeff`: the `edgeff` command."""
import sys

from edgeff.app.cli import main

sys.exit(main())
