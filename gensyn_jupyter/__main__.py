"""``python -m gensyn_jupyter`` is the ``gensyn`` command."""

import sys

from .cli import main

sys.exit(main())
