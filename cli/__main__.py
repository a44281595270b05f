"""``python -m onnxembed.cli``."""

import sys

from .main import main

sys.exit(main())
