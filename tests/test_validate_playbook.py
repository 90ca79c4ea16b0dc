"""playbooks/validate.yml: bad descriptions stop the run on localhost, before any host is contacted."""

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
DESCRIPTIONS = REPO / 'tests' / 'descriptions'
BIN = pathlib.Path(sys.executable).parent

# Every swarm host points at TEST-NET-1 over ssh: contacting one would hang or fail as UNREACHABLE.
INVENTORY = """\
all:
  hosts:
    localhost: {ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"}
  children:
    far:
      hosts:
""" + ''.join(f'        node{i}: {{ansible_host: 192.0.2.{i}, ansible_connection: ssh}}\n' for i in range(1, 10))


@pytest.fixture(scope='module')
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp('inventory') / 'hosts.yml'
    path.write_text(INVENTORY)
    return path


def run(inventory, *extra):
    env = {**os.environ, 'ANSIBLE_CONFIG': str(REPO / 'ansible.cfg'), 'ANSIBLE_NOCOLOR': '1',
           'ANSIBLE_TIMEOUT': '3', 'PATH': f'{BIN}:{os.environ["PATH"]}'}
    result = subprocess.run(
        [str(BIN / 'ansible-playbook'), '-i', str(inventory), 'playbooks/validate.yml', *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    return result.returncode, result.stdout + result.stderr


def recap_hosts(output):
    recap = output.split('PLAY RECAP', 1)[1]
    return {line.split()[0] for line in recap.splitlines()[1:] if ' : ok=' in line}


@pytest.mark.parametrize('name', ['many-problems', 'host-not-in-inventory', 'overlay-typo-encrypt',
                                  'publish-string-port', 'no-swarm', 'slot-collision'])
def test_bad_description_stops_the_run_on_localhost(inventory, name):
    path = DESCRIPTIONS / 'bad' / f'{name}.yml'
    rc, output = run(inventory, '-e', f'@{path}')
    assert rc != 0, output
    for line in yaml.safe_load(path.read_text())['expect']:
        assert line in output, output
    assert 'Traceback' not in output
    assert 'UNREACHABLE' not in output
    assert recap_hosts(output) == {'localhost'}


def test_lab_description_passes_without_contacting_hosts(inventory):
    rc, output = run(inventory, '-e', f'@{REPO / "inventory/lab/group_vars/all/swarm.yml"}')
    assert rc == 0, output
    assert 'UNREACHABLE' not in output
    assert recap_hosts(output) == {'localhost'}
    assert 'item=node5' in output  # grouped as a worker
