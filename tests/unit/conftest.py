"""Make the shared package importable in unit tests, as `swarmfabric` and as
`ansible.module_utils.swarmfabric` (the name the modules in library/ use)."""

import importlib.util
import pathlib
import sys

import ansible.module_utils as amu

REPO = pathlib.Path(__file__).resolve().parents[2]
MODULE_UTILS = str(REPO / 'plugins' / 'module_utils')
if MODULE_UTILS not in sys.path:
    sys.path.insert(0, MODULE_UTILS)
if MODULE_UTILS not in amu.__path__:
    amu.__path__.append(MODULE_UTILS)


def load_module(name):
    """Import library/<name>.py as a plain Python module."""
    spec = importlib.util.spec_from_file_location(name, REPO / 'library' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
