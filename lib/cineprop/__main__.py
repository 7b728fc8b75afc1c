"""``python -m cineprop`` runs the ``cineprop`` command."""

import sys

from cineprop.cli import main

sys.exit(main())
