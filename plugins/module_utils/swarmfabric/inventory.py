# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who is who in a run, from the plan and what the hosts reported: the node lists, the hosts a
run did not reach, the live manager, the swarm_cluster node list, the next network generation.
Pure functions over plain data (the filters in plugins/filter/swarmfabric.py hand them the plan,
the play's hosts and each host's registered results); no Ansible imports."""

from collections.abc import Mapping


def members(swarm):
    """The described hosts, managers first (a plan, or a description whose workers may be missing)."""
    return list(swarm.get('managers') or []) + list(swarm.get('workers') or [])


def missing(hosts, reached):
    """``hosts`` not in ``reached``, in order, each once (Ansible's ``difference`` on lists)."""
    reached = set(reached)
    out = []
    for host in hosts:
        if host not in reached and host not in out:
            out.append(host)
    return out


def unreached(swarm, reached):
    """The described hosts a run does not reach (not in the play, unreachable or failed)."""
    return missing(members(swarm), reached)


def first_reached(hosts, reached):
    """The first of ``hosts`` that is in ``reached``; '' when none is."""
    reached = set(reached)
    return next((host for host in hosts if host in reached), '')


def _get(mapping, key, default=None):
    return mapping.get(key, default) if isinstance(mapping, Mapping) else default


def live_manager(plan, reached, memberships):
    """A reached host that is a manager of this very swarm (by its swarm name), a described
    manager first, else any reached host in play order; '' when none is.
    ``memberships``: host -> its swarm_node query result (missing for hosts that did not read)."""
    reached_set = set(reached)
    for host in list(plan['managers']) + list(reached):
        member = _get(memberships, host, {})
        if (host in reached_set and _get(member, 'is_manager', False)
                and _get(member, 'swarm_name', '') == plan['name']):
            return host
    return ''


def _node_id(joined, member):
    """The join's node id where the join ran, else the membership read's (a skipped join's result
    has none); '' for neither."""
    for result in (joined, member):
        if isinstance(result, Mapping) and 'node_id' in result:
            return result['node_id']
    return ''


def cluster_nodes(plan, reached, joined, memberships, maintenance=None):
    """swarm_cluster's ``nodes``: every described host with its role, labels and availability,
    whether the run reached it, and the node id of a reached one that has one.
    ``joined`` and ``memberships``: host -> the join's and the membership read's results.
    ``maintenance``: host -> True (begin it) or False (end it), for playbooks/maintenance.yml."""
    reached_set = set(reached)
    out = []
    for host in members(plan):
        node = plan['nodes'][host]
        item = {'name': host, 'role': node['role'], 'labels': node['labels'],
                'availability': node['availability'], 'reachable': host in reached_set}
        node_id = _node_id(_get(joined, host), _get(memberships, host))
        if item['reachable'] and node_id:
            item['node_id'] = node_id
        if host in (maintenance or {}):
            item['maintenance'] = bool(maintenance[host])
        out.append(item)
    return out


def stale_overlays(config_reads):
    """The overlays some host's config-only network query called stale, in order, each once.
    ``config_reads``: every host's registered loop of swarm_network kind=config state=query."""
    out = []
    for read in config_reads:
        for result in _get(read, 'results', []) or []:
            if _get(result, 'stale'):
                name = result['item']['name']
                if name not in out:
                    out.append(name)
    return out


def next_generations(current, stale):
    """{overlay: generation to converge to}: one past the current one where a node is stale."""
    stale = set(stale)
    return {name: generation + (1 if name in stale else 0) for name, generation in current.items()}


class RecordUnreadable(Exception):
    """A manager answered but could not read the allocation record: planning without it could move
    live allocations."""


def first_record(managers, reached, reads):
    """The allocation record of the first reached manager that could read it (host_state's
    ``allocations``), managers in described order; an unreadable one when none is a manager of an
    active swarm. A manager on the way that answered but could not read it raises RecordUnreadable."""
    for host in managers:
        found = (reads.get(host) or {}).get("allocations") or {}
        if host not in reached:
            continue
        if found.get("error"):
            raise RecordUnreadable(f"{host} cannot read the allocation record: {found['error']}")
        if found.get("readable"):
            return found
    return {"readable": False, "record": {}, "serial": 0}
