# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status report (playbooks/status.yml, docs/operations.md "Status and drift"): the actual
state read from the hosts, compared with the plan, and drawn as a Graphviz
graph. Pure functions of plain data, standard library only; the controller
runs them (filters swarm_status_gather, swarm_status, swarm_status_table and
swarm_status_dot).

``actual`` is what the playbook reads (``gather`` builds it from each host's
read, ``parse_read``):

- ``nodes``: ``docker node inspect`` of every swarm node (a list);
- ``services``: ``docker service inspect`` of every service (a list);
- ``tasks``: ``docker inspect`` of the tasks that should be running (a list);
- ``hosts``: per inventory host that answered, ``links`` (``ip -j -d link
  show``), ``fdb`` (overlay device to ``bridge -j fdb show dev``), ``sas``
  (overlay to ``xfrm_tunnel`` query's ``live_sas``, which carry no key),
  ``sa_added`` (``SPI date time`` lines: when each SA was added, from
  ``ip -s xfrm state`` filtered on the host so that no key leaves it),
  ``now`` (the host's clock, ``date time``), ``mesh`` (whether the mesh is
  in place) and ``mesh_detail`` (its backend, rule and backend counts).
"""

from __future__ import annotations

import json
import re
from datetime import datetime

HOST_LABEL = 'io.swarmfabric.host'
OWN_LABELS = 'io.swarmfabric.'
ZERO_MAC = '00:00:00:00:00:00'


def _user_labels(labels):
    return {k: v for k, v in (labels or {}).items() if not k.startswith(OWN_LABELS)}


def _image(spec_image):
    """An image reference without the digest Docker pins it to."""
    return (spec_image or '').split('@', 1)[0]


def read_nodes(nodes):
    """Inventory host -> the node's role, availability, state, labels and address (by the identity label)."""
    out = {}
    for node in nodes or []:
        spec, status = node.get('Spec') or {}, node.get('Status') or {}
        host = (spec.get('Labels') or {}).get(HOST_LABEL) or (node.get('Description') or {}).get('Hostname', '')
        out[host] = {
            'id': node.get('ID', ''),
            'role': spec.get('Role', ''),
            'availability': spec.get('Availability', ''),
            'state': status.get('State', ''),
            'addr': status.get('Addr', ''),
            'labels': _user_labels(spec.get('Labels')),
        }
    return out


def read_services(services, tasks, nodes):
    """Service name -> its mode, replicas, image, VIPs, published ports and running tasks per host."""
    host_of = {n['id']: host for host, n in read_nodes(nodes).items()}
    out = {}
    ids = {}
    for service in services or []:
        spec = service.get('Spec') or {}
        mode = spec.get('Mode') or {}
        name = spec.get('Name', '')
        ids[service.get('ID', '')] = name
        endpoint = service.get('Endpoint') or {}
        out[name] = {
            'mode': 'global' if 'Global' in mode else 'replicated',
            'replicas': (mode.get('Replicated') or {}).get('Replicas'),
            'image': _image(((spec.get('TaskTemplate') or {}).get('ContainerSpec') or {}).get('Image')),
            # A network whose VIP Docker does not manage has an entry without an address.
            'vips': sorted(v['Addr'] for v in endpoint.get('VirtualIPs') or [] if v.get('Addr')),
            # What Docker publishes, and what its spec asks for (host-mode ports included).
            'ports': sorted({p.get('PublishedPort') for p in (endpoint.get('Ports') or [])
                             + ((spec.get('EndpointSpec') or {}).get('Ports') or []) if p.get('PublishedPort')}),
            'tasks': {},
        }
    for task in tasks or []:
        name = ids.get(task.get('ServiceID', ''))
        if name is None or (task.get('Status') or {}).get('State') != 'running':
            continue
        host = host_of.get(task.get('NodeID', ''), task.get('NodeID', ''))
        running = out[name]['tasks']
        running[host] = running.get(host, 0) + 1
    return out


def fdb_peers(entries):
    """Underlay addresses of the all-zeros (flood) FDB entries of a unicast VXLAN device."""
    return sorted({e['dst'] for e in entries or [] if e.get('mac') == ZERO_MAC and e.get('dst')})


def sa_ages(lines, now):
    """SPI -> seconds since the SA was added, from ``SPI YYYY-MM-DD HH:MM:SS`` lines and the host's clock."""
    fmt = '%Y-%m-%d %H:%M:%S'
    try:
        clock = datetime.strptime((now or '').strip(), fmt)
    except ValueError:
        return {}
    ages = {}
    for line in lines or []:
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            spi = int(parts[0], 16)
            added = datetime.strptime(f'{parts[1]} {parts[2]}', fmt)
        except ValueError:
            continue
        ages[spi] = max(0, int((clock - added).total_seconds()))
    return ages


def _link(links, device):
    for link in links or []:
        if link.get('ifname') == device:
            return link
    return None


def read_overlays(plan, hosts):
    """Host -> overlay -> whether its device is there, its VNI, its FDB peers and its SAs (no keys)."""
    out = {}
    for host, seen in (hosts or {}).items():
        ages = sa_ages(seen.get('sa_added'), seen.get('now'))
        mine = {}
        for name, overlay in (plan.get('overlays') or {}).items():
            if host not in overlay.get('members', {}):
                continue
            link = _link(seen.get('links'), overlay['device'])
            info = ((link or {}).get('linkinfo') or {}).get('info_data') or {}
            sas = [dict(sa, age=ages.get(sa.get('spi'))) for sa in (seen.get('sas') or {}).get(name) or []]
            epochs = sorted({sa.get('epoch') for sa in sas if sa.get('epoch') is not None})
            known = [sa['age'] for sa in sas if sa['age'] is not None]
            mine[name] = {
                'device': link is not None,
                'vni': info.get('id'),
                'peers': fdb_peers((seen.get('fdb') or {}).get(overlay['device'])),
                'sas': len(sas),
                'epochs': epochs,
                # The key generation in use, and the age of its oldest SA (None: unknown).
                'generation': epochs[-1] if epochs else None,
                'sa_age': max(known) if known else None,
                'sa_list': [{k: sa.get(k) for k in ('peer', 'direction', 'epoch', 'spi', 'age')} for sa in sas],
            }
        out[host] = {'overlays': mine, 'mesh': bool(seen.get('mesh')), 'mesh_detail': seen.get('mesh_detail') or {}}
    return out


def _json(host, tag, text):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f'{host}: its {tag} line is not JSON ({exc})') from exc


def parse_read(host, text):
    """One host's read (status.yml's script): ``@tag rest`` lines, one record each.

    ``@now`` the host's clock, ``@links`` ``ip -j -d link show``, ``@fdb DEV``
    ``bridge -j fdb show dev DEV``, ``@sa SPI DATE TIME`` (filtered on the host:
    no key line ever leaves it), ``@mesh k=v ...`` counts, ``@node``/``@service``/
    ``@task`` one Docker object each (a manager only, fields picked on the host),
    ``@answer`` a published port's answer on the node.
    """
    out = {'now': '', 'links': [], 'fdb': {}, 'sa_added': [], 'mesh': False, 'mesh_detail': {},
           'nodes': [], 'services': [], 'tasks': [], 'answers': []}
    for line in (text or '').splitlines():
        tag, _, rest = line.partition(' ')
        if tag == '@now':
            out['now'] = rest.strip()
        elif tag == '@links':
            out['links'] = _json(host, tag, rest) or []
        elif tag == '@fdb':
            device, _, data = rest.partition(' ')
            out['fdb'][device] = _json(host, f'{tag} {device}', data) or []
        elif tag == '@sa':
            out['sa_added'].append(rest.strip())
        elif tag == '@mesh':
            counts = {}
            for pair in rest.split():
                key, _, value = pair.partition('=')
                counts[key] = int(value) if value.isdigit() else 0
            backend = ('ipvs' if counts.get('ipvs_services') else 'nftables' if counts.get('nft')
                       else 'iptables' if counts.get('filter') else None)
            out['mesh'] = bool(counts.get('nft') or counts.get('filter'))
            out['mesh_detail'] = {'backend': backend,
                                  'rules': counts.get('ipvs_services') or counts.get('nft_dnat', 0),
                                  'backends': counts.get('ipvs_servers') or counts.get('nft_backends', 0)}
        elif tag in ('@node', '@service', '@task'):
            out[tag[1:] + 's'].append(_json(host, tag, rest))
        elif tag == '@answer':
            out['answers'].append(rest.strip())
    return out


def gather(reads, sa_results):
    """``actual`` (see the module's docstring) from every host's read and its xfrm_tunnel queries.

    ``reads``: host -> its script's stdout; ``sa_results``: host -> the
    registered loop results of ``xfrm_tunnel state=query`` (item.name, live_sas).
    The Docker objects come from whichever host read them (one manager).
    """
    actual = {'nodes': [], 'services': [], 'tasks': [], 'hosts': {}, 'answers': {}}
    for host, text in sorted((reads or {}).items()):
        seen = parse_read(host, text)
        for kind in ('nodes', 'services', 'tasks'):
            actual[kind] += seen.pop(kind)
        actual['answers'][host] = seen.pop('answers')
        seen['sas'] = {r['item']['name']: r.get('live_sas') or []
                       for r in (sa_results or {}).get(host) or [] if not r.get('skipped') and 'item' in r}
        actual['hosts'][host] = seen
    return actual


def actual_state(plan, actual):
    """The actual state in the report's shape (status.json's ``actual``)."""
    return {
        'nodes': read_nodes(actual.get('nodes')),
        'services': read_services(actual.get('services'), actual.get('tasks'), actual.get('nodes')),
        'hosts': read_overlays(plan, actual.get('hosts')),
    }


def desired_state(plan):
    """The described state in the report's shape (status.json's ``desired``)."""
    nodes = {host: {'role': n['role'], 'availability': n['availability'], 'labels': dict(n['labels'])}
             for host, n in plan['nodes'].items()}
    services = {}
    for name, s in plan['services'].items():
        services[name] = {
            'mode': s['mode'], 'replicas': s['replicas'], 'image': s['image'],
            'vips': [s['vip']] if s.get('vip') else [],
            'ports': sorted(p['published'] for p in s.get('publish') or []),
        }
        # The mesh publishes the ports of services on the fabric; Docker publishes the others.
        services[name]['docker_ports'] = [] if s.get('overlays') else services[name]['ports']
    overlays = {}
    for name, o in plan['overlays'].items():
        members = o['members']
        overlays[name] = {
            'vni': o['vni'], 'subnet': o.get('subnet'), 'encrypted': bool(o['encrypted']), 'device': o['device'],
            'members': {host: {'underlay': m['underlay'], 'address': m['address'],
                               'peers': sorted(members[p]['underlay'] for p in members if p != host)}
                        for host, m in members.items()},
        }
    # The mesh layer has rules to apply only for services with a VIP or a published port.
    mesh = any(s['vips'] or s['ports'] for s in services.values())
    return {'name': plan['name'], 'nodes': nodes, 'services': services, 'overlays': overlays, 'mesh': mesh}


def _drift(out, host, obj, field, desired, actual):
    out.append({'host': host, 'object': obj, 'field': field, 'desired': desired, 'actual': actual})


def compare(desired, actual, reached):
    """Every difference between the described and the actual state, in a fixed order.

    ``reached`` lists the hosts that answered: a host that did not is one
    drift ('reachable'), and nothing else is claimed about its kernel state.
    """
    drift = []
    nodes = actual['nodes']
    for host, want in sorted(desired['nodes'].items()):
        have = nodes.get(host)
        obj = f'node {host}'
        if have is None:
            _drift(drift, host, obj, 'member', True, False)
            continue
        for field in ('role', 'availability'):
            if have[field] != want[field]:
                _drift(drift, host, obj, field, want[field], have[field])
        if have['state'] != 'ready':
            _drift(drift, host, obj, 'state', 'ready', have['state'])
        for key in sorted(set(want['labels']) | set(have['labels'])):
            if want['labels'].get(key) != have['labels'].get(key):
                _drift(drift, host, obj, f'labels.{key}', want['labels'].get(key), have['labels'].get(key))
    for host in sorted(set(nodes) - set(desired['nodes'])):
        _drift(drift, host, f'node {host}', 'member', False, True)

    for name, want in sorted(desired['services'].items()):
        have = actual['services'].get(name)
        obj = f'service {name}'
        if have is None:
            _drift(drift, '', obj, 'exists', True, False)
            continue
        for field in ('mode', 'image'):
            if have[field] != want[field]:
                _drift(drift, '', obj, field, want[field], have[field])
        if want['mode'] == 'replicated':
            if have['replicas'] != want['replicas']:
                _drift(drift, '', obj, 'replicas', want['replicas'], have['replicas'])
            running = sum(have['tasks'].values())
            if running != want['replicas']:
                _drift(drift, '', obj, 'running', want['replicas'], running)
        if have['ports'] != want['docker_ports']:
            _drift(drift, '', obj, 'ports', want['docker_ports'], have['ports'])

    for name, overlay in sorted(desired['overlays'].items()):
        for host, member in sorted(overlay['members'].items()):
            obj = f'overlay {name} on {host}'
            if host not in reached:
                _drift(drift, host, obj, 'reachable', True, False)
                continue
            have = actual['hosts'].get(host, {}).get('overlays', {}).get(name)
            if not have or not have['device']:
                _drift(drift, host, obj, 'device', overlay['device'], None)
                continue
            if have['vni'] != overlay['vni']:
                _drift(drift, host, obj, 'vni', overlay['vni'], have['vni'])
            if have['peers'] != member['peers']:
                missing = sorted(set(member['peers']) - set(have['peers']))
                extra = sorted(set(have['peers']) - set(member['peers']))
                _drift(drift, host, obj, 'fdb', {'missing': missing}, {'extra': extra})
            if overlay['encrypted'] and have['sas'] < 2 * len(member['peers']):
                _drift(drift, host, obj, 'sas', 2 * len(member['peers']), have['sas'])
    for host in sorted(reached):
        if desired['mesh'] and host in desired['nodes'] and not actual['hosts'].get(host, {}).get('mesh'):
            _drift(drift, host, f'mesh on {host}', 'table', True, False)
    return drift


def table(drift):
    """The report's lines: one per drift, 'object field: desired -> actual'."""
    return [f"{d['object']} {d['field']}: desired {_text(d['desired'])}, actual {_text(d['actual'])}" for d in drift]


def summary(status):
    """The table: one row per node, service and overlay member, desired | actual | drift."""
    desired, actual = status['desired'], status['actual']
    drifted = {}
    for d in status['drift']:
        drifted.setdefault(d['object'], []).append(d['field'])
    rows = [('object', 'desired', 'actual', 'drift')]
    for host, want in sorted(desired['nodes'].items()):
        have = actual['nodes'].get(host)
        got = f"{have['role']} {have['availability']} {have['state']} {_text(have['labels'])}" if have else 'absent'
        rows.append((f'node {host}', f"{want['role']} {want['availability']} {_text(want['labels'])}", got,
                     ', '.join(drifted.get(f'node {host}', [])) or '-'))
    for name, want in sorted(desired['services'].items()):
        have = actual['services'].get(name)
        count = want['replicas'] if want['mode'] == 'replicated' else 'global'
        got = 'absent'
        if have:
            scale = have['replicas'] if have['mode'] == 'replicated' else 'global'
            got = f"{scale} ({sum(have['tasks'].values())} running)"
        rows.append((f'service {name}', f"{count} {want['image']}", got,
                     ', '.join(drifted.get(f'service {name}', [])) or '-'))
    for name, overlay in sorted(desired['overlays'].items()):
        for host, member in sorted(overlay['members'].items()):
            obj = f'overlay {name} on {host}'
            have = actual['hosts'].get(host, {}).get('overlays', {}).get(name)
            got = f"{len(have['peers'])} peers, {have['sas']} SAs" if have and have['device'] else 'no device'
            if have and have.get('generation') is not None:
                got += f", generation {have['generation']}"
                got += f", oldest {have['sa_age']}s" if have.get('sa_age') is not None else ''
            rows.append((obj, f"{len(member['peers'])} peers", got, ', '.join(drifted.get(obj, [])) or '-'))
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    return [f'{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}' for r in rows]


def _count(number, word):
    return f"{number} {word}{'' if number == 1 else 's'}"


def _answer(result, addr):
    """One published port asked from the controller (an ansible.builtin.uri result): its URL and answer."""
    url = result.get('url') or f"http://{addr}:{result.get('item')}/"
    code = result.get('status') or -1
    if code > 0:
        body = ' '.join(str(result.get('content') or '').split())
        body = body[:40] + '...' if len(body) > 40 else body
        return f'{url} -> HTTP {code} "{body}"' if body else f'{url} -> HTTP {code}'
    reason = str(result.get('msg') or 'no answer')
    match = re.search(r'<urlopen error (?:\[Errno -?\d+\] )?(.*)>', reason)
    reason = match.group(1) if match else reason
    return f'{url} -> no answer ({reason[:60]})'


def brief(status, answers):
    """A short human summary of the swarm as it is: its nodes, overlays and services, and what each
    node's published ports answer, asked from the controller (``answers``: host -> the uri results,
    each with ``item`` the port). For ``./swarmfabric lab``; status.yml prints it with status_summary=true."""
    desired, actual = status['desired'], status['actual']
    nodes, services, overlays = actual['nodes'], actual['services'], desired['overlays']
    drift = status.get('drift') or []
    head = f"swarm {desired['name']}: {_count(len(set(desired['nodes']) | set(nodes)), 'node')}, "
    head += f"{_count(len(overlays), 'overlay')}, {_count(len(desired['services']), 'service')}; "
    head += f"{_count(len(drift), 'drift')} (listed above)" if drift else 'no drift'
    lines = [head, 'nodes:']
    rows = []
    for host in sorted(set(desired['nodes']) | set(nodes)):
        have, want = nodes.get(host), desired['nodes'].get(host) or {}
        if have is None:
            rows.append((host, want.get('role', '?'), want.get('availability', '?'), 'not a member', ''))
            continue
        labels = ' '.join(f'{k}={v}' for k, v in sorted(have['labels'].items()))
        rows.append((host, have['role'], have['availability'], have['state'],
                     ' '.join(filter(None, (have['addr'], labels)))))
    lines += _columns(rows)
    lines.append('overlays:' if overlays else 'overlays: none')
    rows = []
    for name, overlay in sorted(overlays.items()):
        seen = {host: actual['hosts'].get(host, {}).get('overlays', {}).get(name) for host in overlay['members']}
        counts = {}
        for host, member in overlay['members'].items():
            have = seen[host]
            counts[host] = (len(have['peers']) if have and have['device'] else None, len(member['peers']))
        if all(have == want for have, want in counts.values()):
            want = {want for _, want in counts.values()}
            peers = f"{len(counts)} members, each with its {'/'.join(str(w) for w in sorted(want))} peers"
        else:
            peers = 'peers ' + ', '.join(f"{host} {'no device' if have is None else f'{have}/{want}'}"
                                         for host, (have, want) in sorted(counts.items()))
        if overlay['encrypted']:
            generations = sorted({h['generation'] for h in seen.values() if h and h.get('generation') is not None})
            crypt = 'encrypted (ESP' + (f", generation {generations[-1]})" if generations else ')')
        else:
            crypt = 'not encrypted'
        rows.append((name, overlay.get('subnet') or '?', f"vni {overlay['vni']}", crypt, peers))
    lines += _columns(rows)
    lines.append('services:' if desired['services'] else 'services: none')
    rows = []
    for name, want in sorted(desired['services'].items()):
        have = services.get(name)
        if have is None:
            rows.append((name, 'absent', '', '', ''))
            continue
        running = sum(have['tasks'].values())
        if want['mode'] == 'replicated':
            scale = f"{running}/{want['replicas']} running"
        else:
            scale = f'global, {running} running'
        vips = [v.split('/', 1)[0] for v in want['vips'] or have['vips']]
        ports = want['ports'] or have['ports']
        placed = ', '.join(host + (f' x{n}' if n > 1 else '') for host, n in sorted(have['tasks'].items()))
        placed = _count(len(have['tasks']), 'node') if len(have['tasks']) > 3 else placed
        rows.append((name, scale, 'VIP ' + ', '.join(vips) if vips else 'no VIP',
                     ('port ' if len(ports) == 1 else 'ports ') + ', '.join(map(str, ports)) if ports else 'no port',
                     f'on {placed}' if placed else 'no task running'))
    lines += _columns(rows)
    urls = [(host, _answer(r, (nodes.get(host) or {}).get('addr') or host))
            for host, results in sorted((answers or {}).items()) for r in results or []]
    lines.append('what each node answers, asked from the controller:' if urls else 'published ports: none')
    lines += _columns(urls)
    return lines


def _columns(rows):
    """Rows of cells as lines indented by two, each column as wide as its widest cell."""
    if not rows:
        return []
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ['  ' + '  '.join(f'{c:<{w}}' for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _text(value):
    if isinstance(value, dict):
        return ', '.join(f'{k} {_text(v)}' for k, v in value.items())
    if isinstance(value, list):
        return '[' + ', '.join(_text(v) for v in value) + ']'
    if value is None:
        return 'none'
    return str(value).lower() if isinstance(value, bool) else str(value)


def report(plan, actual, reached):
    """status.json: desired, actual, drift, and the drifted hosts and objects by name."""
    desired = desired_state(plan)
    have = actual_state(plan, actual)
    drift = compare(desired, have, set(reached))
    return {
        'swarm': plan['name'],
        'desired': desired,
        'actual': have,
        'drift': drift,
        'lines': table(drift),
        'drifted_hosts': sorted({d['host'] for d in drift if d['host']}),
        'drifted_objects': sorted({d['object'] for d in drift}),
    }


def _q(*lines):
    """A DOT string of one or more lines."""
    return '"' + '\\n'.join(str(line).replace('\\', '\\\\').replace('"', '\\"') for line in lines) + '"'


def dot(status):
    """The topology as Graphviz DOT: nodes by role, overlays with their (encrypted) links, and the
    services with their VIPs, published ports and task placement. Drift is drawn red."""
    desired, actual = status['desired'], status['actual']
    drifted = {d['object'] for d in status['drift']}
    fdb_missing = {}
    for d in status['drift']:
        if d['field'] == 'fdb':
            fdb_missing.setdefault(d['object'], set()).update(d['desired']['missing'])
    lines = [
        f'graph {_q("swarm " + desired["name"])} {{',
        '  graph [rankdir=LR, fontname="Helvetica", label=' + _q(f'swarm {desired["name"]}: '
                                                                  f'{len(status["drift"])} drift') + '];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    underlay_of = {}
    for overlay in desired['overlays'].values():
        for host, member in overlay['members'].items():
            underlay_of[member['underlay']] = host
    for role in ('manager', 'worker'):
        lines.append(f'  subgraph {_q("cluster_" + role + "s")} {{')
        lines.append(f'    label={_q(role + "s")}; style=rounded; color=gray;')
        for host, want in sorted(desired['nodes'].items()):
            if want['role'] != role:
                continue
            have = actual['nodes'].get(host, {})
            label = _q(host, have.get('addr') or '?', have.get('availability') or 'not a member')
            color = 'red' if f'node {host}' in drifted else 'black'
            shape = 'box3d' if role == 'manager' else 'box'
            lines.append(f'    {_q("n:" + host)} [label={label}, shape={shape}, color={color}];')
        lines.append('  }')
    # One colour per overlay, named once in its legend note; its links carry no label.
    palette = ('steelblue', 'darkgreen', 'darkorange', 'purple', 'teal', 'brown')
    for index, (name, overlay) in enumerate(sorted(desired['overlays'].items())):
        hosts = sorted(overlay['members'])
        style = 'bold' if overlay['encrypted'] else 'dashed'
        colour = palette[index % len(palette)]
        what = f'{name} vni {overlay["vni"]}' + (' ESP' if overlay['encrypted'] else '')
        kind = 'ESP-encrypted' if overlay['encrypted'] else 'plain'
        legend = _q(f'overlay {name}', f'vni {overlay["vni"]}, {kind}', f'{len(hosts)} members, {style} links')
        lines.append(f'  {_q("o:" + name)} [label={legend}, shape=note, color={colour}, fontcolor={colour}];')
        for i, a in enumerate(hosts):
            for b in hosts[i + 1:]:
                broken = (overlay['members'][b]['underlay'] in fdb_missing.get(f'overlay {name} on {a}', ())
                          or overlay['members'][a]['underlay'] in fdb_missing.get(f'overlay {name} on {b}', ()))
                color = 'red' if broken else colour
                lines.append(f'  {_q("n:" + a)} -- {_q("n:" + b)} [tooltip={_q(what)}, style={style}, color={color}];')
    for name, want in sorted(desired['services'].items()):
        have = actual['services'].get(name, {})
        vips = 'VIP ' + ', '.join(want['vips']) if want['vips'] else 'no VIP'
        ports = ', '.join(str(p) for p in want['ports']) or 'no port'
        replicas = f"{want['replicas']} replicas" if want['mode'] == 'replicated' else 'global'
        label = _q(name, want['image'], f'{replicas}, {vips}', f'ports {ports}')
        color = 'red' if f'service {name}' in drifted else 'black'
        lines.append(f'  {_q("s:" + name)} [label={label}, shape=ellipse, style=filled, fillcolor=lightyellow, '
                     f'color={color}];')
        for host, count in sorted((have.get('tasks') or {}).items()):
            tasks = f'{count} tasks' if count > 1 else ''
            lines.append(f'  {_q("s:" + name)} -- {_q("n:" + host)} [label={_q(tasks)}, color=gray50];')
    lines.append('}')
    return '\n'.join(lines) + '\n'
