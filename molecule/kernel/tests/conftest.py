"""Fixtures for the kernel lab: strict SSH to each lab host, the description.

testinfra's paramiko backend accepts unknown host keys with a warning; the
lab keeps host key checking on, so every host gets a paramiko client that
trusts only the known_hosts create.yml wrote (under the per-run HOME).
"""

import json
import os
import pathlib
import time

import paramiko
import pytest
import testinfra.utils.ansible_runner
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parent.parent
HOSTS = ("node1", "node2", "node3")


def pytest_collection_modifyitems(items):
    """The teardown check runs last: it leaves the lab without a fabric."""
    items.sort(key=lambda item: pathlib.Path(item.path).name == "test_teardown.py")


def strict_client(hostvars):
    client = paramiko.SSHClient()
    client.load_host_keys(os.path.expanduser("~/.ssh/known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        hostvars["ansible_host"], port=int(hostvars["ansible_port"]), username=hostvars["ansible_user"],
        key_filename=hostvars["ansible_private_key_file"], look_for_keys=False, allow_agent=False,
        timeout=60, banner_timeout=60,
    )
    return client


@pytest.fixture(scope="session")
def lab():
    """name -> testinfra host, connected with host key checking on."""
    runner = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    hosts = {}
    for name in HOSTS:
        host = runner.get_host(name)
        # testinfra caches its paramiko client in a cached_property; ours wins.
        host.backend.__dict__["client"] = strict_client(runner.get_variables(name))
        hosts[name] = host
    return hosts


@pytest.fixture(scope="session")
def underlay():
    """name -> underlay address, from the scenario's host_vars."""
    return {
        name: yaml.safe_load((SCENARIO / "host_vars" / f"{name}.yml").read_text())["swarm_advertise_addr"]
        for name in HOSTS
    }


@pytest.fixture(scope="session")
def description():
    return yaml.safe_load((SCENARIO / "group_vars" / "all" / "swarm.yml").read_text())["swarm"]


@pytest.fixture(scope="session")
def rotations():
    """The key rotations this session has run (test_key_rotation_loses_no_packet's). A later
    test that needs the lab as a rotation left it runs one itself only when none ran."""
    return []


@pytest.fixture(scope="session")
def results():
    """Figures measured here, for bench/ section 4 (bench/run reads the file
    unless --kernel-lab-results names another): written when the session ends."""
    figures = {}
    yield figures
    if figures:
        path = pathlib.Path(os.environ.get("SF_KL_RESULTS", "/var/cache/swarmfabric/kernel-lab/results.json"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**figures, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                                   indent=1) + "\n")
