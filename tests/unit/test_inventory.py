"""The node lists, the live manager and the next network generation, moved from Jinja in the roles
and playbooks into swarmfabric/inventory.py: each filter gives what the Jinja it replaced rendered,
on the same inputs (the old expressions are rendered here by Ansible's own templar)."""

import itertools

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from conftest import REPO, load_file
from hypothesis import given, settings
from hypothesis import strategies as st
from swarmfabric import inventory

FILTERS = load_file('sf_filter_inventory', REPO / 'plugins' / 'filter' / 'swarmfabric.py').FilterModule().filters()


def render(expression, **variables):
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


# ---- roles/swarm/tasks/live_manager.yml, "Pick a live manager of our swarm"
OLD_LIVE = """
      {%- set ns = namespace(live='') -%}
      {%- for host in swarmfabric_plan.managers + ansible_play_hosts -%}
      {%- set member = hostvars[host].__swarm_member | default({}) -%}
      {%- if not ns.live and host in ansible_play_hosts and member.is_manager | default(false)
            and member.swarm_name | default('') == swarmfabric_plan.name -%}
      {%- set ns.live = host -%}
      {%- endif -%}
      {%- endfor -%}
      {{ ns.live }}"""

HOSTS = ['m1', 'm2', 'm3', 'w1', 'w2']
MEMBERS = [
    None,  # no read (the host is not in the play, or did not get that far)
    {},
    {'is_manager': True, 'swarm_name': 'lab'},
    {'is_manager': True, 'swarm_name': 'other'},
    {'is_manager': True, 'swarm_name': ''},
    {'is_manager': False, 'swarm_name': 'lab'},
    {'is_manager': True},  # a read without the name
    {'node_state': 'locked', 'is_manager': False, 'swarm_name': ''},
]


def hostvars_of(per_host, name):
    return {host: ({} if value is None else {name: value}) for host, value in per_host.items()}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(HOSTS), st.sampled_from(MEMBERS)),
       st.lists(st.sampled_from(HOSTS), unique=True), st.sampled_from([['m1'], ['m2', 'm1'], ['m1', 'm2', 'm3']]))
def test_live_manager_is_what_the_jinja_picked(members, play, managers):
    hostvars = hostvars_of({host: members.get(host) for host in HOSTS}, '__swarm_member')
    plan = {'name': 'lab', 'managers': managers, 'workers': [h for h in HOSTS if h not in managers]}
    old = render(OLD_LIVE, swarmfabric_plan=plan, ansible_play_hosts=play, hostvars=hostvars)
    assert FILTERS['swarm_live_manager'](plan, play, hostvars) == old


def test_live_manager_prefers_a_described_manager():
    plan = {'name': 'lab', 'managers': ['m2'], 'workers': ['m1']}
    hostvars = {host: {'__swarm_member': {'is_manager': True, 'swarm_name': 'lab'}} for host in ('m1', 'm2')}
    assert FILTERS['swarm_live_manager'](plan, ['m1', 'm2'], hostvars) == 'm2'
    assert FILTERS['swarm_live_manager'](plan, ['m1'], hostvars) == 'm1'  # a promoted host, in play order
    assert FILTERS['swarm_live_manager'](plan, [], hostvars) == ''


# ---- roles/swarm/tasks/main.yml, "Describe the nodes for the manager"
OLD_NODES = """
      {%- set out = [] -%}
      {%- for host in swarmfabric_plan.managers + swarmfabric_plan.workers -%}
      {%- set node = swarmfabric_plan.nodes[host] -%}
      {%- set reached = host in ansible_play_hosts -%}
      {%- set item = {'name': host, 'role': node.role, 'labels': node.labels, 'availability': node.availability,
                      'reachable': reached} -%}
      {%- set node_id = hostvars[host].__swarm_joined.node_id
                        | default(hostvars[host].__swarm_member.node_id | default('')) -%}
      {%- if reached and node_id -%}{%- set item = item | combine({'node_id': node_id}) -%}{%- endif -%}
      {%- set _ = out.append(item) -%}
      {%- endfor -%}
      {{ out }}"""

JOINED = [None, {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'},
          {'node_id': 'j1', 'changed': True}, {'node_id': ''}]
MEMBER_IDS = [None, {'node_state': 'inactive', 'node_id': ''}, {'node_state': 'active', 'node_id': 'r1'}]


def _plan():
    roles = {'m1': 'manager', 'm2': 'manager', 'w1': 'worker', 'w2': 'worker'}
    return {'name': 'lab', 'managers': ['m1', 'm2'], 'workers': ['w1', 'w2'],
            'nodes': {host: {'role': role, 'labels': {'zone': host[-1]} if role == 'worker' else {},
                             'availability': 'drain' if host == 'w2' else 'active', 'slot': i + 1}
                      for i, (host, role) in enumerate(roles.items())}}


@pytest.mark.parametrize(('joined', 'member'), itertools.product(JOINED, MEMBER_IDS))
@pytest.mark.parametrize('play', [['m1', 'm2', 'w1', 'w2'], ['m1', 'w2'], []])
def test_cluster_nodes_are_what_the_jinja_listed(joined, member, play):
    plan = _plan()
    hostvars = {}
    for i, host in enumerate(['m1', 'm2', 'w1', 'w2']):
        hostvars[host] = {}
        if joined is not None and i % 2 == 0:
            hostvars[host]['__swarm_joined'] = joined
        if member is not None:
            hostvars[host]['__swarm_member'] = dict(member, node_id=member['node_id'] and f'{member["node_id"]}{host}')
    old = render(OLD_NODES, swarmfabric_plan=plan, ansible_play_hosts=play, hostvars=hostvars)
    assert FILTERS['swarm_cluster_nodes'](plan, play, hostvars) == old


# ---- the node lists: "(managers + workers) | difference(ansible_play_hosts)" (roles/swarm, playbooks/mesh.yml,
# playbooks/rotate-keys.yml), and mesh.yml's "managers | select('in', ansible_play_hosts) | first | default('')"
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(HOSTS), min_size=1, unique=True), st.lists(st.sampled_from(HOSTS), unique=True),
       st.lists(st.sampled_from([*HOSTS, 'localhost'])), st.booleans())
def test_node_lists_are_what_the_jinja_listed(managers, workers, play, described):
    swarm = {'name': 'lab', 'managers': managers, 'workers': workers}
    if described and not workers:
        del swarm['workers']  # a description may leave workers out; the plan always has them
    members = render("{{ swarm.managers + (swarm.workers | default([])) }}", swarm=swarm)
    assert FILTERS['swarm_members'](swarm) == members
    old = render("{{ __members | difference(ansible_play_hosts) }}", __members=members, ansible_play_hosts=play)
    new = FILTERS['swarm_unreached'](swarm, play)
    # The same hosts; Ansible's difference is a set (its order varies with the hash seed), ours keeps
    # the described order.
    assert sorted(new) == sorted(old) and new == [h for h in dict.fromkeys(members) if h not in play]
    first = render("{{ swarmfabric_plan.managers | select('in', ansible_play_hosts) | first | default('') }}",
                   swarmfabric_plan=swarm, ansible_play_hosts=play)
    assert FILTERS['swarm_first_reached'](managers, play) == first


# ---- roles/fabric/tasks/main.yml, "Docker networks on the fabric": __fabric_stale and __fabric_target
OLD_STALE = """{{ ansible_play_hosts | map('extract', hostvars, '__fabric_config_live') | map(attribute='results')
         | flatten | selectattr('stale', 'defined') | selectattr('stale') | map(attribute='item.name')
         | unique | list }}"""
OLD_TARGET = """
      {%- set out = {} -%}
      {%- for name, gen in __fabric_gen.items() -%}
      {%-   set _ = out.update({name: gen + (1 if name in __fabric_stale else 0)}) -%}
      {%- endfor -%}
      {{ out }}"""

READ = st.sampled_from([
    {'skipped': True, 'item': {'name': 'appnet'}},
    {'exists': True, 'stale': False},
    {'exists': True, 'stale': True},
    {'exists': False, 'stale': False},
])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(HOSTS), st.lists(st.tuples(st.sampled_from(['appnet', 'db', 'web']), READ),
                                                        max_size=3), min_size=1),
       st.dictionaries(st.sampled_from(['appnet', 'db', 'web']), st.integers(0, 7)))
def test_stale_overlays_and_next_generations_are_what_the_jinja_computed(reads, current):
    play = sorted(reads)
    hostvars = {host: {'__fabric_config_live': {
                    'changed': False, 'msg': 'All items completed',
                    'results': [dict(result, item={'name': name}) for name, result in items]}}
                for host, items in reads.items()}
    old_stale = render(OLD_STALE, ansible_play_hosts=play, hostvars=hostvars)
    stale = FILTERS['swarm_fabric_stale']([hostvars[host]['__fabric_config_live'] for host in play])
    assert stale == old_stale
    old_target = render(OLD_TARGET, __fabric_gen=current, __fabric_stale=old_stale)
    assert FILTERS['swarm_fabric_next_generations'](current, stale) == old_target


def test_next_generation_moves_only_the_stale_overlays():
    assert inventory.next_generations({'appnet': 0, 'db': 3}, ['db']) == {'appnet': 0, 'db': 4}


def test_missing_keeps_order_and_drops_repeats():
    assert inventory.missing(['b', 'a', 'b', 'c'], ['c']) == ['b', 'a']


def test_an_unreached_host_gets_no_node_id():
    plan = _plan()
    joined = {'m1': {'node_id': 'j-m1'}, 'w1': {'node_id': 'j-w1'}}
    members = {'m2': {'node_id': 'r-m2'}, 'w1': {'node_id': 'r-w1'}}
    nodes = {node['name']: node for node in inventory.cluster_nodes(plan, ['m1', 'm2'], joined, members)}
    assert nodes['m1']['node_id'] == 'j-m1' and nodes['m2']['node_id'] == 'r-m2'
    assert 'node_id' not in nodes['w1'] and nodes['w1']['reachable'] is False
    assert nodes['w2'] == {'name': 'w2', 'role': 'worker', 'labels': {'zone': '2'}, 'availability': 'drain',
                           'reachable': False}


def test_maintenance_is_asked_only_for_the_named_hosts():
    plan = _plan()
    members = {'m1': {'node_id': 'r-m1'}, 'm2': {'node_id': 'r-m2'}}
    nodes = {node['name']: node for node in inventory.cluster_nodes(plan, ['m1', 'm2'], {}, members,
                                                                      {'m2': True, 'w2': False})}
    assert nodes['m2']['maintenance'] is True and nodes['w2']['maintenance'] is False
    assert 'maintenance' not in nodes['m1'] and 'maintenance' not in nodes['w1']
