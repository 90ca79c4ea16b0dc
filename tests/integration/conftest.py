"""The network-namespace tests share host-wide names (namespaces, veths,
nft tables): under pytest-xdist they all run on one worker, one at a time,
while the unit tests run on the others (`pytest -n 2 --dist loadgroup`)."""

import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in pathlib.Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.xdist_group("netns"))
