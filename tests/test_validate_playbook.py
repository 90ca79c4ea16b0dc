"""playbooks/validate.yml: bad descriptions stop the run on localhost, before any host is contacted."""

import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from sf_far_hosts import far_inventory

REPO = pathlib.Path(__file__).resolve().parents[1]
DESCRIPTIONS = REPO / 'tests' / 'descriptions'
BIN = pathlib.Path(sys.executable).parent

INVENTORY = far_inventory(9)


@pytest.fixture(scope='module')
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp('inventory') / 'hosts.yml'
    path.write_text(INVENTORY)
    return path


def run(inventory, *extra, env=None):
    env = {**os.environ, 'ANSIBLE_CONFIG': str(REPO / 'ansible.cfg'), 'ANSIBLE_NOCOLOR': '1',
           'ANSIBLE_TIMEOUT': '3', 'PATH': f'{BIN}:{os.environ["PATH"]}', **(env or {})}
    result = subprocess.run(
        [str(BIN / 'ansible-playbook'), '-i', str(inventory), 'playbooks/validate.yml', *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    return result.returncode, result.stdout + result.stderr


def recap_hosts(output):
    recap = output.split('PLAY RECAP', 1)[1]
    return {line.split()[0] for line in recap.splitlines()[1:] if ' : ok=' in line}


@pytest.mark.parametrize('name', ['many-problems', 'host-not-in-inventory', 'overlay-typo-encrypt',
                                  'publish-string-port', 'no-swarm', 'slot-collision', 'duplicate-key',
                                  'alias-recursive', 'key-boolean', 'key-non-ascii', 'label-date',
                                  'delay-sexagesimal', 'float-published', 'name-trailing-newline',
                                  'v1-service-keys', 'secret-undeclared', 'port-unpublished-on-fabric'])
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


def make_inventory(tmp_path, description, host_vars=None):
    """An inventory directory as users write one: hosts.yml, group_vars/all/swarm.yml, host_vars/."""
    (tmp_path / 'group_vars' / 'all').mkdir(parents=True)
    (tmp_path / 'hosts.yml').write_text(INVENTORY)
    (tmp_path / 'group_vars' / 'all' / 'swarm.yml').write_text(description)
    for host, text in (host_vars or {}).items():
        (tmp_path / 'host_vars').mkdir(exist_ok=True)
        (tmp_path / 'host_vars' / f'{host}.yml').write_text(text)
    return tmp_path


def assert_refused(rc, output, *lines):
    assert rc != 0, output
    for line in lines:
        assert line in output, output
    for internal in ('Traceback', '_AnsibleTagged', '_AnsibleLazy', 'MarkerError', 'RecursionError', '<class'):
        assert internal not in output, output
    assert 'UNREACHABLE' not in output


@pytest.mark.parametrize('setting', ['warn', 'ignore'])
def test_duplicate_keys_are_refused_whatever_ansible_does_with_them(tmp_path, setting):
    inventory = make_inventory(tmp_path, 'swarm:\n  name: lab\n  managers: [node1]\n  overlays:\n'
                                         '    appnet: {vni: 300, subnet: 10.20.0.0/16}\n'
                                         '    appnet: {vni: 301, subnet: 10.21.0.0/16}\n')
    rc, output = run(inventory, env={'ANSIBLE_DUPLICATE_YAML_DICT_KEY': setting})
    source = tmp_path / 'group_vars' / 'all' / 'swarm.yml'
    assert_refused(rc, output, f'swarm.overlays.appnet: is given twice, on line 5 and line 6 of {source}')
    assert recap_hosts(output) == {'localhost'}


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    inventory = make_inventory(tmp_path, 'swarm:\n  name: lab\n  managers: [node1\n  nodes: {}\n')
    rc, output = run(inventory)
    source = tmp_path / 'group_vars' / 'all' / 'swarm.yml'
    assert_refused(rc, output, f'Cannot read {source}:4:', 'that starts at line 3')


def test_yaml_syntax_error_in_host_vars_names_file_and_line(tmp_path):
    inventory = make_inventory(tmp_path, 'swarm: {name: lab, managers: [node1]}\n',
                               {'node1': 'swarm_advertise_addr: "172.30.0.11\n'})
    rc, output = run(inventory)
    assert_refused(rc, output, f'Cannot read {tmp_path / "host_vars" / "node1.yml"}:')


def test_recursive_alias_names_its_field(tmp_path):
    inventory = make_inventory(tmp_path, 'swarm: &s\n  name: lab\n  managers: [node1]\n  nodes: *s\n')
    rc, output = run(inventory)
    assert_refused(rc, output, 'swarm.nodes: refers to itself (a YAML alias used inside its own anchor)')


def test_ansible_tagged_values_read_as_the_user_wrote_them(tmp_path):
    description = """\
swarm:
  name: lab
  managers: [node1]
  nodes:
    node1:
      labels: {since: 2024-01-01, on: a, t: "{{ nope }}", "z\u0430": b}
  services:
    web: {image: "swarmfabric/task:1", deploy: {update_config: {delay: 1:30}, replicas: 3.0}, command: [a, 1]}
"""
    rc, output = run(make_inventory(tmp_path, description))
    assert_refused(
        rc, output,
        'swarm.nodes.node1.labels.since: 2024-01-01 (a date) is not a string; quote it',
        'swarm.nodes.node1.labels.on: key on is not a string',
        "swarm.nodes.node1.labels.t: cannot be templated: 'nope' is undefined",
        'swarm.nodes.node1.labels.z\\u0430: "z\\u0430" is not a valid name',
        'swarm.services.web.deploy.update_config.delay: 90 is not a duration string; give its unit, like 90s',
        'swarm.services.web.deploy.replicas: 3.0 is not an integer',
        'swarm.services.web.command[1]: 1 is not a string; quote it',
    )


def test_advertise_addr_host_variable_is_checked(tmp_path):
    inventory = make_inventory(tmp_path, 'swarm: {name: lab, managers: [node1, node2, node3]}\n', {
        'node1': 'swarm_advertise_addr: eth0\n',
        'node2': 'swarm_advertise_addr: "{{ nope }}"\n',
        'node3': 'swarm_advertise_addr: 172.30.0.13\n',
    })
    rc, output = run(inventory)
    assert_refused(rc, output, 'hostvars.node1.swarm_advertise_addr: "eth0" is not an IPv4 address',
                   "hostvars.node2.swarm_advertise_addr: cannot be templated: 'nope' is undefined")
    assert 'node3.swarm_advertise_addr' not in output


def test_a_swarm_whose_template_fails_is_not_reported_missing(tmp_path):
    rc, output = run(make_inventory(tmp_path, 'swarm: "{{ nope }}"\n'))
    assert_refused(rc, output, "swarm: cannot be templated: 'nope' is undefined")
    assert 'swarm: is required' not in output
