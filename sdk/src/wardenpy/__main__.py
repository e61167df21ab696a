"""``python -m wardenpy`` is the ``wardenpy`` command."""

import sys

from .cli import main

sys.exit(main())
