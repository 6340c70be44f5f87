"""``python -m xmodal``: same as the ``xmodal`` command."""

import sys

from xmodal.cli.main import main

sys.exit(main())
