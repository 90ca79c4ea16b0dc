"""Fixtures for the kernel lab: strict SSH to each lab host, the description.

testinfra's paramiko backend accepts unknown host keys with a warning; the
lab keeps host key checking on, so every host gets a paramiko client that
trusts only the known_hosts create.yml wrote (under the per-run HOME).
"""

import os
import pathlib

import paramiko
import pytest
import testinfra.utils.ansible_runner
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parent.parent
HOSTS = ("node1", "node2", "node3")


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
