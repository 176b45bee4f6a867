"""``python -m avnas_nni`` runs the ``avnas`` command line."""

import sys

from avnas_nni.cli import main

sys.exit(main())
