"""The plan summary callback (plugins/callback/plan_summary.py): its lines from recorded module results,
no_log results kept hidden, secrets masked, and the JSON it writes at the end of a run."""

import importlib.util
import json
from types import SimpleNamespace

import pytest
from ansible import context
from conftest import REPO

_spec = importlib.util.spec_from_file_location('sf_plan_summary', REPO / 'plugins/callback/plan_summary.py')
ps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ps)



def changes(**fields):
    return {k: {'before': b, 'after': a} for k, (b, a) in fields.items()}


def lines(module, result, host='sf-cp-node1', **kw):
    entries = [{'object': o, 'change': c, 'host': host, 'host_scoped': o == host}
               for o, c in ps.entries_for(module, host, result, **kw)]
    return ps.summarize(entries)


def test_a_new_service_is_one_create_line_with_its_scale_ports_and_image():
    result = {'changed': True, 'changes': {
        'image': {'before': None, 'after': 'nginx:1'}, 'deploy.mode': {'before': None, 'after': 'replicated'},
        'deploy.replicas': {'before': None, 'after': 2}, 'networks': {'before': None, 'after': ['appnet']},
        'ports[0]': {'before': None, 'after': '8081:80/tcp ingress'},
        'deploy.update_config.delay': {'before': None, 'after': '5s'}}}
    assert lines('swarm_service', result, args={'name': 'api', 'state': 'present', 'networks': ['appnet']}) == [
        'service api: create (2 replicas, port 8081, image nginx:1)']


def test_a_global_service_with_host_mode_and_udp_ports():
    result = {'changed': True, 'changes': {
        'deploy.mode': {'before': None, 'after': 'global'}, 'image': {'before': None, 'after': 'dns:2'},
        'ports[0]': {'before': None, 'after': '53:53/udp ingress'},
        'ports[1]': {'before': None, 'after': '8081:81/tcp host'}}}
    assert lines('swarm_service', result, args={'name': 'dns'}) == [
        'service dns: create (global, ports 53/udp, 8081 host-mode, image dns:2)']


def test_an_update_names_each_field_before_and_after_and_networks_by_name():
    result = {'changed': True, 'changes': {
        'deploy.replicas': {'before': 3, 'after': 4}, 'image': {'before': 'task:1', 'after': 'task:2'},
        'deploy.update_config.delay': {'before': '5s', 'after': '1m30s'},
        'networks': {'before': ['appnet'], 'after': ['appnet', 'backnet']},
        'ports[0]': {'before': '8080:80/tcp ingress', 'after': None}}}
    assert lines('swarm_service', result, args={'name': 'web'}) == [
        'service web: replicas 3 → 4; deploy.update_config.delay 5s → 1m30s; image task:1 → task:2; '
        'networks [appnet] → [appnet, backnet]; ports[0] 8080:80/tcp ingress → none']


def test_a_stack_service_is_named_as_docker_stack_deploy_names_it():
    result = {'changed': True, 'changes': {'deploy.replicas': {'before': 1, 'after': 2}}}
    assert lines('swarm_service', result, args={'name': 'app', 'stack': 'shop'}) == [
        'service shop_app: replicas 1 → 2']


def test_service_removals():
    assert lines('swarm_service', {'changed': True, 'removed': ['old', 'older']}, args={'state': 'pruned'}) == [
        'service old: remove (not in the description)', 'service older: remove (not in the description)']
    assert lines('swarm_service', {'changed': True}, args={'name': 'gone', 'state': 'absent'}) == [
        'service gone: remove']


def test_cluster_changes_from_the_diff_name_the_state_before():
    node = {'role': 'worker', 'availability': 'active', 'labels': {'zone': 'a', 'io.swarmfabric.host': 'n4'}}
    result = {
        'changed': True,
        'actions': ['promoted n4', 'set availability of n3 to active', 'set labels of n5 to {zone: c}',
                    'removed n6 from the swarm'],
        'diff': {'before': {'n3': {'role': 'manager', 'availability': 'drain', 'labels': {}},
                            'n4': node,
                            'n5': {'role': 'worker', 'availability': 'active', 'labels': {'zone': 'b', 'disk': 'ssd'}},
                            'n6': node},
                 'after': {'n3': {'role': 'manager', 'availability': 'active', 'labels': {}},
                           'n4': dict(node, role='manager'),
                           'n5': {'role': 'worker', 'availability': 'active', 'labels': {'zone': 'c'}}}},
    }
    assert lines('swarm_cluster', result) == [
        'node n3: drain → active', 'node n4: worker → manager', 'node n5: label disk removed; label zone b → c',
        'node n6: remove from the swarm']


def test_cluster_changes_without_a_diff_come_from_the_actions():
    result = {'changed': True, 'actions': ['promoted n4', 'demoted n3', 'set availability of n2 to drain',
                                           'drained n9 (not in the description)', 'something new'],
              'deferred': {'n7': ['demote n7']}}
    assert lines('swarm_cluster', result) == [
        'node n4: worker → manager', 'node n3: manager → worker', 'node n2: availability → drain',
        'node n9: drain (not in the description)', 'swarm: something new', 'node n7: deferred: demote n7']


def test_identical_host_changes_share_a_line():
    entries = []
    for host in ('n2', 'n1'):
        result = {'changed': True, 'actions': ['add fdb peer 10.0.0.9']}
        for obj, change in ps.entries_for('vxlan_overlay', host, result):
            entries.append({'object': obj, 'change': change, 'host': host, 'host_scoped': obj == host})
    assert ps.summarize(entries) == ['n1, n2: add fdb peer 10.0.0.9']


def test_a_change_without_actions_is_named_by_its_task():
    assert lines('copy', {'changed': True}, host='n1', task='Write the unit') == ['n1: Write the unit: changed']


def test_no_log_results_stay_hidden():
    secret = 'S3cr3t-fabric-key'
    censored = {'censored': "the output has been hidden due to the fact that 'no_log: true' was specified",
                'changed': True}
    out = lines('xfrm_tunnel', censored, host='n1', task='Install the SAs')
    assert out == ['n1: Install the SAs: changed (details hidden: no_log)']
    leaked = {'changed': True, 'actions': [f'add SA key {secret}']}
    out = lines('xfrm_tunnel', leaked, host='n1', task='Install the SAs', no_log=True)
    assert secret not in ' '.join(out)


def test_join_tokens_and_unlock_keys_are_masked():
    token = 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx'
    key = 'SWMKEY-1-7c37Cc8654o6p38HnroywCi19pllOnGtbdZEgtKxZu8'
    result = {'changed': True, 'actions': [f'joined swarm with {token}', f'unlocked with {key}']}
    out = ' '.join(lines('swarm_node', result, host='n1'))
    assert token not in out and key not in out
    assert 'SWMTKN-********' in out and 'SWMKEY-********' in out


def test_fmt_values():
    assert ps.fmt({'b': [1, None], 'a': True}) == '{a: true, b: [1, none]}'
    assert ps.fmt_ports(['8080:80/tcp ingress', '53:53/udp host', '80/tcp ingress']) == \
        'ports 8080, 53/udp host-mode, 80'
    assert ps.fmt_ports(['odd']) == 'port odd'


def _result(host, action, res, name='task', no_log=False):
    task = SimpleNamespace(action=action, resolved_action=f'ansible.legacy.{action}', no_log=no_log,
                           get_name=lambda: name)
    return SimpleNamespace(_task=task, _host=SimpleNamespace(get_name=lambda: host), _result=res)


class _Display:
    def __init__(self):
        self.lines = []

    def banner(self, text):
        self.lines.append(f'== {text}')

    def display(self, text):
        self.lines.append(text)

    def warning(self, text):
        self.lines.append(f'WARNING {text}')


@pytest.fixture
def callback(monkeypatch):
    cb = ps.CallbackModule()
    cb._display = _Display()
    return cb


def test_the_callback_prints_and_writes_the_plan(callback, monkeypatch, tmp_path):
    monkeypatch.setattr(context, 'CLIARGS', {'check': True})
    path = tmp_path / 'sub' / 'plan.json'
    callback.extra_path = str(path)
    svc = {'changed': True, 'changes': changes(replicas=(3, 4)),
           'invocation': {'module_args': {'name': 'web', 'state': 'present'}}}
    callback.v2_runner_on_ok(_result('n1', 'swarm_service', svc))
    callback.v2_runner_on_ok(_result('n1', 'swarm_lock', {'changed': True, 'actions': ['took the converge lock']}))
    loop = {'changed': True, 'results': [{'changed': True, 'actions': ['add fdb peer 10.0.0.2']},
                                         {'changed': False, 'actions': []}]}
    callback.v2_runner_on_ok(_result('n2', 'vxlan_overlay', loop))
    callback.v2_runner_on_ok(_result('n2', 'xfrm_tunnel', {'censored': 'hidden', 'changed': True},
                                     name='SAs', no_log=True))
    callback.v2_runner_on_unreachable(_result('n3', 'swarm_node', {}))
    # A loop delegated to other hosts: each item, then the task's results without the delegation.
    leave = _result('n1', 'swarm_node', {'changed': True, 'actions': ['left swarm abc'],
                                         '_ansible_delegated_vars': {'ansible_delegated_host': 'n5'}})
    callback.v2_runner_item_on_ok(leave)
    leave._result = {'changed': True, 'results': [{'changed': True, 'actions': ['left swarm abc']}]}
    callback.v2_runner_on_ok(leave)
    callback.v2_playbook_on_stats(None)
    assert callback._display.lines[:7] == [
        '== SWARMFABRIC SUMMARY',
        'Plan (check mode, nothing was changed): 4 changes',
        '  service web: replicas 3 → 4',
        '  n2: add fdb peer 10.0.0.2',
        '  n2: SAs: changed (details hidden: no_log)',
        '  node n5: left swarm abc',
        '  not reached: n3',
    ]
    report = json.loads(path.read_text())
    assert report['check_mode'] is True
    assert report['lines'] == [line.strip() for line in callback._display.lines[2:6]]
    assert report['unreachable'] == ['n3']
    assert [c['module'] for c in report['changes']] == ['swarm_service', 'vxlan_overlay', 'xfrm_tunnel', 'swarm_node']
    assert report['changes'][-1]['host'] == 'n5'
    assert 'censored' not in path.read_text()


def test_a_run_without_the_toolkit_s_converging_modules_says_nothing(callback, monkeypatch, tmp_path):
    monkeypatch.setattr(context, 'CLIARGS', {'check': False})
    callback.extra_path = str(tmp_path / 'plan.json')
    query = {'changed': False, 'invocation': {'module_args': {'state': 'query'}}}
    callback.v2_runner_on_ok(_result('n1', 'xfrm_tunnel', query))
    callback.v2_runner_on_ok(_result('n1', 'command', {'changed': True}))
    callback.v2_playbook_on_stats(None)
    assert callback._display.lines == []
    assert not (tmp_path / 'plan.json').exists()


def test_a_converged_run_reports_no_change(callback, monkeypatch, tmp_path):
    monkeypatch.setattr(context, 'CLIARGS', {'check': False})
    callback.extra_path = str(tmp_path / 'plan.json')
    callback.v2_runner_on_ok(_result('n1', 'swarm_cluster', {'changed': False, 'invocation': {'module_args': {}}}))
    callback.v2_playbook_on_stats(None)
    assert callback._display.lines[1] == 'Changes made: 0'
    assert json.loads((tmp_path / 'plan.json').read_text())['lines'] == []


def test_a_run_that_skipped_its_layers_says_so_and_one_that_did_not_says_why(callback, monkeypatch, tmp_path):
    monkeypatch.setattr(context, 'CLIARGS', {'check': True})
    callback.extra_path = str(tmp_path / 'plan.json')
    verdict = {'converged': True, 'reasons': [], 'stampable': False}
    callback.v2_runner_on_ok(_result('n1', 'set_fact', {'ansible_facts': {'swarmfabric_converged': verdict}}))
    callback.v2_playbook_on_stats(None)
    assert callback._display.lines[1:3] == [
        'Plan (check mode, nothing was changed): 0 changes',
        '  converged: every host is as its last complete converge left it; the layers were skipped']
    assert json.loads((tmp_path / 'plan.json').read_text())['converged'] == {'converged': True, 'reasons': []}
    other = ps.CallbackModule()
    other._display, other.extra_path = _Display(), str(tmp_path / 'ran.json')
    verdict = {'converged': False, 'reasons': ['n2: live links moved since its last complete converge']}
    other.v2_runner_on_ok(_result('n1', 'set_fact', {'ansible_facts': {'swarmfabric_converged': verdict}}))
    other.v2_playbook_on_stats(None)
    assert not any('converged' in line for line in other._display.lines)
    assert json.loads((tmp_path / 'ran.json').read_text())['converged']['reasons'] == verdict['reasons']


def test_a_json_stdout_stays_json(callback, monkeypatch, tmp_path):
    monkeypatch.setattr(context, 'CLIARGS', {'check': False})
    monkeypatch.setattr(ps.C, 'DEFAULT_STDOUT_CALLBACK', 'ansible.posix.json', raising=False)
    callback.extra_path = str(tmp_path / 'plan.json')
    callback.v2_runner_on_ok(_result('n1', 'vxlan_overlay', {'changed': True, 'actions': ['add fdb peer 10.0.0.2']}))
    callback.v2_playbook_on_stats(None)
    assert callback._display.lines == []
    assert json.loads((tmp_path / 'plan.json').read_text())['lines'] == ['n1: add fdb peer 10.0.0.2']
    names = ('json', 'ansible.posix.jsonl', 'default', 'ansible.builtin.minimal', None)
    assert [ps.machine_stdout(n) for n in names] == [True, True, False, False, False]


def test_a_new_secret_version_is_named_by_its_docker_name_only():
    result = {'changed': True, 'actions': ['created secret kv_password-3f0c1d2e4a5b'],
              'invocation': {'module_args': {'data': 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'}}}
    assert lines('swarm_object', result, host='sf-cp-node1') == [
        'sf-cp-node1: created secret kv_password-3f0c1d2e4a5b']
