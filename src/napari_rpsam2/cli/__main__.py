"""``python -m napari_rpsam2.cli`` (what ``torchrun -m napari_rpsam2.cli train …`` starts)."""

import sys

from .main import main

sys.exit(main())
