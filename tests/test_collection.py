"""The toolkit as the collection swarmfabric.swarm: built with `ansible-galaxy collection build`,
installed into a temporary path, and used from an inventory outside this checkout with no
ansible.cfg of ours (the way a user runs it from their own repository)."""

import hashlib
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from sf_far_hosts import far_inventory

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
FQCN = 'swarmfabric.swarm'

HOSTS = far_inventory(5)

# A playbook of the user's own: the collection's validate, then one of its modules by FQCN
# (check mode: fabric_capabilities only reads files), which needs the shared module_utils.
USER_PLAYBOOK = f"""\
- name: Validate the description
  ansible.builtin.import_playbook: {FQCN}.validate

- name: Ask the kernel about the fabric, read-only
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Check the kernel
      {FQCN}.fabric_capabilities:
        encrypted: []
      check_mode: true
      register: caps

    - name: Show the answer
      ansible.builtin.debug:
        msg: >-
          probed={{{{ caps.probed }}}} missing={{{{ caps.missing | length }}}}
          actions={{{{ caps.actions | length }}}}
"""


def clean_env(**extra):
    """The caller's environment without any ANSIBLE_* setting (ours point into the checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(('ANSIBLE_', 'MOLECULE_'))}
    env.update({'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_TIMEOUT': '3', 'PATH': f'{BIN}:{os.environ["PATH"]}'}, **extra)
    return env


@pytest.fixture(scope='module')
def collections(tmp_path_factory):
    """ANSIBLE_COLLECTIONS_PATH with swarmfabric.swarm built from this checkout and installed."""
    build = tmp_path_factory.mktemp('build')
    path = tmp_path_factory.mktemp('collections')
    env = clean_env()
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'build', str(REPO), '--output-path', str(build)],
                   cwd=build, env=env, check=True, capture_output=True, text=True, timeout=300)
    tarballs = list(build.glob('swarmfabric-swarm-*.tar.gz'))
    assert len(tarballs) == 1, tarballs
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'install', '--force', '-p', str(path), str(tarballs[0])],
                   cwd=build, env=env, check=True, capture_output=True, text=True, timeout=300)
    return path


@pytest.fixture
def inventory(tmp_path):
    """A user's inventory directory, far from the checkout: hosts.yml and group_vars/all/swarm.yml."""
    assert REPO not in tmp_path.parents
    (tmp_path / 'group_vars' / 'all').mkdir(parents=True)
    (tmp_path / 'hosts.yml').write_text(HOSTS)
    return tmp_path


def describe(inventory, swarm):
    (inventory / 'group_vars' / 'all' / 'swarm.yml').write_text(yaml.safe_dump({'swarm': swarm}))


def run(collections, inventory, playbook, *extra, **env):
    result = subprocess.run(
        [str(BIN / 'ansible-playbook'), '-i', str(inventory / 'hosts.yml'), playbook, *extra],
        cwd=inventory, env=clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections), **env),
        capture_output=True, text=True, timeout=180, check=False,
    )
    return result.returncode, result.stdout + result.stderr


def recap_hosts(output):
    recap = output.split('PLAY RECAP', 1)[1]
    return {line.split()[0] for line in recap.splitlines()[1:] if ' : ok=' in line}


LAB = yaml.safe_load((REPO / 'inventory' / 'lab' / 'group_vars' / 'all' / 'swarm.yml').read_text())['swarm']


def test_the_collection_keeps_the_layout_and_links_its_modules(collections):
    root = collections / 'ansible_collections' / 'swarmfabric' / 'swarm'
    for name in ('roles', 'playbooks', 'inventory', 'plugins', 'molecule', 'library', 'site.yml', 'docs', 'tests'):
        assert (root / name).exists(), name
    for playbook in ('site', 'validate', 'plan', 'status', 'swarm', 'fabric', 'services', 'mesh', 'rotate-keys',
                     'teardown', 'maintenance', 'add-node', 'replace-node'):
        assert (root / 'playbooks' / f'{playbook}.yml').is_file(), playbook
    assert (root / 'plugins' / 'modules' / 'swarm_node.py').is_file()
    assert os.readlink(root / 'plugins' / 'modules') == '../library'
    assert not list(root.glob('.venv')) and not list(root.glob('.git'))


def test_a_good_description_validates_by_fqcn_without_our_config(collections, inventory):
    describe(inventory, {**LAB, 'managers': ['node1', 'node2', 'node3'], 'workers': ['node4', 'node5']})
    rc, output = run(collections, inventory, f'{FQCN}.validate')
    assert rc == 0, output
    assert 'UNREACHABLE' not in output
    assert recap_hosts(output) == {'localhost'}
    assert 'item=node5' in output  # grouped as a worker


def test_a_bad_description_fails_with_the_path_and_the_rule(collections, inventory):
    describe(inventory, {'name': 'lab', 'managers': ['node1'],
                         'services': {'web': {'image': 'swarmfabric/task:1',
                                              'ports': [{'published': 8080, 'target': '80'}]}}})
    rc, output = run(collections, inventory, f'{FQCN}.validate')
    assert rc != 0, output
    assert 'swarm.services.web.ports[0].target: "80" is not an integer (write it unquoted)' in output, output
    assert 'Traceback' not in output
    assert recap_hosts(output) == {'localhost'}


def test_the_collections_vars_plugin_names_the_file_and_line_of_a_yaml_error(collections, inventory):
    source = inventory / 'group_vars' / 'all' / 'swarm.yml'
    source.write_text('swarm:\n  name: lab\n  managers: [node1\n  nodes: {}\n')
    rc, output = run(collections, inventory, f'{FQCN}.validate',
                     ANSIBLE_VARS_ENABLED=f'{FQCN}.swarmfabric_yaml,host_group_vars')
    assert rc != 0, output
    assert f'Cannot read {source}:4:' in output, output


def test_the_collections_modules_run_from_a_users_playbook(collections, inventory):
    describe(inventory, {'name': 'lab', 'managers': ['node1']})
    (inventory / 'play.yml').write_text(USER_PLAYBOOK)
    rc, output = run(collections, inventory, str(inventory / 'play.yml'))
    assert rc == 0, output
    assert 'probed=False missing=0 actions=0' in output, output


# docs/gitops.md: the pipeline's wrapper, run exactly as the page prints it.
GITOPS = (REPO / 'docs' / 'gitops.md').read_text()
SWARM_RUN = GITOPS.split('## `ci/swarm-run`', 1)[1].split('```bash\n', 1)[1].split('```', 1)[0]
WORKFLOW = GITOPS.split('## `.github/workflows/swarm.yml`', 1)[1].split('```yaml\n', 1)[1].split('```', 1)[0]

VAULT_PASSWORD = 'dummy-vault-password-5f0c1d'
FABRIC_SECRET = 'dummy-fabric-secret-0123456789abcdef-0123456789'
BECOME_PASSWORD = 'dummy-become-password-77aa'


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


# A user's playbook: the collection's validate, then proof that both secrets arrived (booleans only).
SECRETS_PLAYBOOK = f"""\
- name: Validate the description
  ansible.builtin.import_playbook: {FQCN}.validate

- name: Use the secrets without showing them
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Compare
      ansible.builtin.debug:
        msg: >-
          vault_ok={{{{ become_probe | hash('sha256') == '{sha256(BECOME_PASSWORD)}' }}}}
          fabric_ok={{{{ fabric_secret | hash('sha256') == '{sha256(FABRIC_SECRET)}' }}}}

    - name: List the agent's keys
      ansible.builtin.command: ssh-add -l
      register: agent_keys
      changed_when: false
      when: lookup('ansible.builtin.env', 'SSH_AUTH_SOCK') | length > 0

    - name: Show the agent
      ansible.builtin.debug:
        msg: "agent_pid={{{{ lookup('ansible.builtin.env', 'SSH_AGENT_PID') }}}} keys={{{{ agent_keys.stdout }}}}"
      when: agent_keys is not skipped

    - name: Change something (the drift check counts it)
      ansible.builtin.command: "true"
      changed_when: true
      when: report_change | default(false) | bool
"""


def swarm_run(collections, inventory, tmp_path, *args, **env):
    script = tmp_path / 'swarm-run'
    script.write_text(SWARM_RUN)
    script.chmod(0o755)
    runner_temp = tmp_path / 'runner-temp'
    runner_temp.mkdir(exist_ok=True)
    result = subprocess.run(
        [str(script), *args], cwd=inventory, capture_output=True, text=True, timeout=180, check=False,
        env=clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections), INVENTORY=str(inventory / 'hosts.yml'),
                      RUNNER_TEMP=str(runner_temp), ANSIBLE_VAULT_PASSWORD=VAULT_PASSWORD,
                      FABRIC_SECRET=FABRIC_SECRET, **env),
    )
    assert list(runner_temp.iterdir()) == []  # nothing left on disk
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def vaulted(inventory, tmp_path_factory):
    """The inventory with an inline !vault value, encrypted with the dummy vault password."""
    describe(inventory, {'name': 'lab', 'managers': ['node1']})
    password_file = tmp_path_factory.mktemp('vault') / 'password'
    password_file.write_text(VAULT_PASSWORD)
    encrypted = subprocess.run(
        [str(BIN / 'ansible-vault'), 'encrypt_string', '--vault-password-file', str(password_file),
         '--stdin-name', 'become_probe'],
        input=BECOME_PASSWORD, env=clean_env(), capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    password_file.unlink()
    (inventory / 'group_vars' / 'all' / 'vault.yml').write_text(encrypted)
    (inventory / 'play.yml').write_text(SECRETS_PLAYBOOK)
    return inventory


def test_the_workflow_is_yaml_with_every_job(tmp_path):
    workflow = yaml.safe_load(WORKFLOW)
    assert set(workflow['jobs']) == {'lint', 'plan', 'apply', 'drift'}
    assert workflow[True]['schedule'][0]['cron']  # PyYAML reads the key `on` as True
    assert "--check --diff" in workflow['jobs']['plan']['steps'][-1]['run']
    text = WORKFLOW
    for secret in ('SSH_PRIVATE_KEY', 'SSH_KNOWN_HOSTS', 'ANSIBLE_VAULT_PASSWORD', 'FABRIC_SECRET'):
        assert f'${{{{ secrets.{secret} }}}}' in text
    assert 'echo $' not in text and 'set -x' not in text and 'set -x' not in SWARM_RUN


def test_the_wrapper_hands_over_the_secrets_without_showing_them(collections, vaulted, tmp_path):
    rc, out, err = swarm_run(collections, vaulted, tmp_path, str(vaulted / 'play.yml'))
    assert rc == 0, out + err
    assert 'vault_ok=True fabric_ok=True' in out, out + err
    for secret in (VAULT_PASSWORD, FABRIC_SECRET, BECOME_PASSWORD):
        assert secret not in out + err


def test_the_wrapper_loads_the_ssh_key_into_an_agent_it_stops(collections, vaulted, tmp_path):
    key = tmp_path / 'id_ed25519'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'ci-test', '-f', str(key)], check=True)
    fingerprint = subprocess.run(['ssh-keygen', '-lf', str(key)], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    private = key.read_text()
    key.unlink()
    public = key.with_suffix('.pub').read_text().split()
    rc, out, err = swarm_run(collections, vaulted, tmp_path, str(vaulted / 'play.yml'), SSH_PRIVATE_KEY=private,
                             SSH_KNOWN_HOSTS=f'192.0.2.1 {public[0]} {public[1]}')
    assert rc == 0, out + err
    assert fingerprint in out, out + err
    body = ''.join(private.splitlines()[1:-1])
    assert body[:40] not in out + err
    pid = int(re.search(r'agent_pid=(\d+)', out).group(1))
    # The wrapper stopped its agent (gone, or a zombie where nothing reaps orphans).
    stat = pathlib.Path(f'/proc/{pid}/stat')
    assert not stat.exists() or stat.read_text().rsplit(')', 1)[1].split()[0] == 'Z', stat.read_text()


def test_the_drift_check_fails_naming_the_hosts_that_would_change(collections, vaulted, tmp_path):
    rc, out, err = swarm_run(collections, vaulted, tmp_path, str(vaulted / 'play.yml'), '-e', 'report_change=true',
                             SWARM_FAIL_ON_CHANGE='1')
    assert rc == 3, out + err
    assert 'Drift: the description and the swarm differ on localhost' in err, out + err
    rc, out, err = swarm_run(collections, vaulted, tmp_path, str(vaulted / 'play.yml'), SWARM_FAIL_ON_CHANGE='1')
    assert rc == 0, out + err
