"""Make the shared package importable as `swarmfabric` in unit tests."""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
MODULE_UTILS = str(REPO / 'plugins' / 'module_utils')
if MODULE_UTILS not in sys.path:
    sys.path.insert(0, MODULE_UTILS)
