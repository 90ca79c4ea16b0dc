# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Swarmfabric's filters: the description layer (swarm_validate, swarm_plan,
swarm_host_view) and the mesh layer (swarm_mesh_view, swarm_mesh_subnets,
swarm_mesh_merge)."""

from __future__ import annotations

import base64
import os
import sys

from ansible import context
from ansible.errors import AnsibleFilterError

try:  # where each value was read from (ansible-core 2.19's data tags; internal, so optional)
    from ansible.module_utils._internal._datatag import AnsibleTagHelper
except ImportError:
    AnsibleTagHelper = None

# Filter plugins are not on the module_utils path; reach the shared package
# (plugins/module_utils/swarmfabric) through the repository layout instead.
_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils')
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from swarmfabric import converged as sf_converged
from swarmfabric import inventory as sf_inventory
from swarmfabric import keys as fabric_keys
from swarmfabric import objects as sf_objects
from swarmfabric.description import DescriptionSyntaxError, load_file, message, validate
from swarmfabric.plan import PlanError, build_plan, host_view, plain
from swarmfabric.ruleset import backend_subnets, merge_backends, mesh_view
from swarmfabric.stack import load_stack, plan_input


def _origin(value):
    """(path, line, column) of where Ansible read a value, or None (needs ansible-core 2.19's data tags)."""
    try:
        tags = AnsibleTagHelper.tags(value)
    except Exception:  # another ansible-core: no origins, the checks that need them are skipped
        return None
    for tag in tags:
        if isinstance(getattr(tag, 'path', None), str) and isinstance(getattr(tag, 'line_num', None), int):
            return tag.path, tag.line_num, getattr(tag, 'col_num', None)
    return None


def _source(swarm):
    """The YAML file that defined ``swarm``, re-read strictly: Ansible's loader keeps the last of two
    duplicate keys (a warning at most) and forgets how a value was written (1:30 for 90)."""
    origin = _origin(swarm)
    if origin is None or not os.path.isfile(origin[0]):
        return None
    try:
        source = load_file(origin[0])
    except (OSError, UnicodeError, DescriptionSyntaxError):
        return None
    if not isinstance(source.data, dict) or 'swarm' not in source.data:
        return None
    return source.under('swarm')


def _identity(value):
    # Ansible hands out a new lazy wrapper on every access; where a container was read stays the same.
    return _origin(value) or id(value)


def swarm_validate(swarm, inventory=None, hostvars=None, base_dir=None):
    """Every problem of the description, one line each; [] when it is valid."""
    if swarm is None and hostvars is not None:
        # `swarm | default(None)` is None for a swarm whose template fails too: say which.
        local = hostvars.get('localhost') if hasattr(hostvars, 'get') else None
        try:
            str(local.get('swarm') if local is not None else None)
        except Exception as exc:
            return [f'swarm: cannot be templated: {message(exc)}']
    try:
        return validate(swarm, None if inventory is None else list(inventory), hostvars,
                        source=_source(swarm), identity=_identity, base_dir=base_dir)
    except Exception as exc:  # a validator bug must still read as one line, not a traceback
        name = '' if type(exc).__module__.startswith('ansible') else f'{type(exc).__name__}: '
        return [f'swarm: cannot be validated: {name}{exc}']


def swarm_plan(swarm, hostvars, swarm_nodes=None, record=None, base_dir=None):
    """The whole plan (docs/architecture.md) from a valid description and the hostvars
    (and, for hosts without facts, the swarm's node list read on a live manager; the
    allocation record kept in the swarm, swarm_allocations state=query). The stacks'
    compose files are read relative to ``base_dir`` (validate.yml checked them)."""
    described = plain(swarm)
    stacks = []
    for name, given in sorted((described.get('stacks') or {}).items()):
        stack = load_stack(name, given['compose'], given.get('variables') or {}, base_dir=str(base_dir or '.'),
                           overlays=set(described.get('overlays') or {}))
        if stack.errors:
            raise AnsibleFilterError('Cannot compute the plan:\n' + '\n'.join(stack.errors))
        stacks.append(plan_input(stack))
    try:
        return build_plan(described, hostvars, swarm_nodes, record, stacks=stacks)
    except PlanError as exc:
        raise AnsibleFilterError('Cannot compute the plan:\n' + '\n'.join(exc.errors)) from None


def swarm_service_compose(plan, name, dns_overlays=(), vip_hosts=True):
    """The Compose service swarm_service converges for one planned service: the description's,
    with what the fabric adds. On an overlay of the fabric (the mesh publishes the ports there:
    swarm_service's ``mesh``), the tasks resolve the other VIP services
    through hosts entries (Docker gives macvlan services no VIP), and they ask the fabric's resolver
    through a resolv.conf mounted over their own (docs/dns.md)."""
    service = plan['services'][name]
    out = plain(service['compose'])
    if service['overlays']:
        hosts = [entry.replace(':', '=', 1) for entry in service['hosts']] if vip_hosts else []
        if hosts:
            given = out.get('extra_hosts') or []
            if isinstance(given, dict):
                given = [f'{host}={address}' for host, address in sorted(given.items())]
            out['extra_hosts'] = [*given, *hosts]
        first = service['overlays'][0]
        if first in plain(dns_overlays or []):
            out['volumes'] = [*(out.get('volumes') or []),
                              {'type': 'bind', 'source': f'/etc/swarmfabric/dns/{first}.resolv.conf',
                               'target': '/etc/resolv.conf', 'read_only': True}]
    return out


def swarm_object_data(entry, swarm, base_dir):
    """The content of one secret or config of the plan (plan.object_entry), base64 for swarm_object's
    no_log ``data``: the description's ``content``, or the file (relative to the inventory directory;
    a stack's, to its compose file) read as bytes."""
    entry = plain(entry)
    if entry['content'] is not None:
        return base64.b64encode(entry['content'].encode('utf-8')).decode('ascii')
    described = {} if entry['stack'] else ((swarm or {}).get(entry['kind'] + 's') or {}).get(entry['key']) or {}
    if 'content' in described:
        return base64.b64encode(str(described['content']).encode('utf-8')).decode('ascii')
    path = os.path.join(str(base_dir), entry['file'])
    try:
        with open(path, 'rb') as handle:
            return base64.b64encode(handle.read()).decode('ascii')
    except OSError as exc:
        raise AnsibleFilterError(f'Cannot read {entry["file"]} (relative to {base_dir}): {exc.strerror}') from None


def swarm_base_dir(sources, given=None):
    """The directory relative paths of the description are relative to: ``given`` (swarm_base_dir),
    else the first inventory source's (the source itself when it is a directory)."""
    if given:
        return str(given)
    first = str(plain(sources or [''])[0])
    return first if os.path.isdir(first) else os.path.dirname(first)


def swarm_object_names(results, stack=None):
    """{kind: {key: Docker name}} of the swarm_object results of one stack (None: the description's)."""
    names = {}
    for result in plain((results or {}).get('results') or []):
        entry = result.get('item') or {}
        if entry.get('stack') == stack and result.get('docker_name'):
            names.setdefault(entry['kind'], {})[entry['key']] = result['docker_name']
    return names


def swarm_host_view(plan, host):
    """One host's part of the plan."""
    try:
        return host_view(plan, host)
    except PlanError as exc:
        raise AnsibleFilterError(f'Cannot build the host view: {exc}') from None


def swarm_mesh_view(plan, host, backends=None):
    """Endpoints, backends and anycast addresses of one host's mesh."""
    # Copy only what one host's mesh reads: never the other hosts' members,
    # which would make the whole run O(n^2) in copies.
    overlays = {}
    for name, overlay in plan['overlays'].items():
        members = overlay['members']
        overlays[name] = {**{k: plain(v) for k, v in overlay.items() if k != 'members'},
                          'members': {host: plain(members[host])} if host in members else {}}
    trimmed = {'services': plain(plan['services']), 'mesh': plain(plan.get('mesh') or {}), 'overlays': overlays}
    try:
        return mesh_view(trimmed, host, plain(backends or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f'Cannot compute the mesh of {host}: {type(exc).__name__}: {exc}') from None


def swarm_mesh_subnets(plan):
    """Container services to their overlay subnet (the input of swarm_backends)."""
    return backend_subnets(plain(plan))


def swarm_mesh_merge(per_node):
    """Merge the swarm_backends answers of all nodes into one map."""
    return merge_backends(plain(per_node))


def swarm_fabric_index(plan, overlay):
    """The overlay's index among the encrypted overlays (part of its SPIs and reqids)."""
    try:
        return fabric_keys.overlay_index(plain(plan['overlays']), overlay)
    except (KeyError, ValueError) as exc:
        raise AnsibleFilterError(f'Cannot encrypt overlay {overlay}: {exc}') from None


def swarm_fabric_sas(overlay, plan, host, reads, secret, nonce, phase='converge', epoch=None):
    """One host's peers and SAs (with keys) for one encrypted overlay, derived here on the
    controller: the master secret never goes to a host (docs/security.md)."""
    name = overlay['name']
    try:
        overlays = plain(plan['overlays'])
        spec = {'name': name, 'vni': overlays[name]['vni'], 'index': fabric_keys.overlay_index(overlays, name)}
        return fabric_keys.host_sas(str(secret or ''), plan['name'], str(nonce or ''), spec, host,
                                    fabric_keys.overlay_members(overlays[name]),
                                    fabric_keys.live_by_host(plain(reads), name), phase,
                                    None if epoch is None else int(epoch))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f'Cannot derive the ESP keys of {host} on overlay {name}: {exc}') from None


def swarm_fabric_epoch(overlay, reads, rotate=False):
    """The overlay's current epoch (a converge adopts it), or with rotate=True the next one."""
    live = fabric_keys.live_by_host(plain(reads), overlay)
    if rotate:
        epochs = [e for h in live.values() for e in [h['epoch'], *(sa['epoch'] for sa in h['sas'])]]
        return fabric_keys.rotation_epoch(epochs)
    return fabric_keys.cluster_epoch(h['epoch'] for h in live.values())


def swarm_fabric_rekey(plan, reads):
    """{overlay: epoch} of the encrypted overlays this converge must re-key by a zero-loss
    rotation: every member is in the play and answered, and some pair's ends disagree (a
    host lost its keys). The whole overlay moves past every epoch held, so no SA anywhere
    keeps a key from before (docs/security.md, "After a reboot")."""
    out = {}
    overlays = plain(plan['overlays'])
    for name in sorted(n for n, o in overlays.items() if o.get('encrypted')):
        members = fabric_keys.overlay_members(overlays[name])
        live = fabric_keys.live_by_host(plain(reads), name)
        if set(members) <= set(live) and fabric_keys.broken_pairs(members, live):
            out[name] = swarm_fabric_epoch(name, reads, rotate=True)
    return out


def _hostvar(hostvars, host, name):
    """One variable of one host, None where it is not set (a host that did not get that far)."""
    try:
        return hostvars[host].get(name)
    except (KeyError, AttributeError, TypeError):
        return None


def swarm_members(swarm):
    """The described hosts, managers first (of the plan or of the description)."""
    return sf_inventory.members(plain(swarm))


def swarm_unreached(swarm, reached):
    """The described hosts not in ``reached`` (ansible_play_hosts): unreachable, failed or left out."""
    return sf_inventory.unreached(plain(swarm), plain(reached))


def swarm_first_reached(hosts, reached):
    """The first of ``hosts`` in ``reached``; '' when none is."""
    return sf_inventory.first_reached(plain(hosts), plain(reached))


def swarm_live_manager(plan, reached, hostvars):
    """A reached manager of this swarm by the hosts' membership reads (__swarm_member), a
    described manager first; ''."""
    reached = plain(reached)
    memberships = {host: _hostvar(hostvars, host, '__swarm_member') for host in reached}
    return sf_inventory.live_manager({'name': plan['name'], 'managers': plain(plan['managers'])}, reached, memberships)


def swarm_cluster_nodes(plan, reached, hostvars, maintenance=None):
    """swarm_cluster's node list: every described host, reached or not, with the node id of a
    reached one from its join (__swarm_joined) or its membership read (__swarm_member);
    ``maintenance`` (host -> begin it or end it) for playbooks/maintenance.yml."""
    reached = plain(reached)
    view = {'managers': plain(plan['managers']), 'workers': plain(plan['workers']),
            'nodes': {host: plain(plan['nodes'][host]) for host in [*plan['managers'], *plan['workers']]}}
    return sf_inventory.cluster_nodes(view, reached,
                                   {host: plain(_hostvar(hostvars, host, '__swarm_joined')) for host in reached},
                                   {host: plain(_hostvar(hostvars, host, '__swarm_member')) for host in reached},
                                   plain(maintenance))


def swarm_allocations_record(swarm, hostvars, reached):
    """The allocation record the plan is made from: the first reached manager's read (plan.yml's
    host_state, __swarmfabric_read)."""
    reached = plain(reached)
    reads = {host: plain(_hostvar(hostvars, host, '__swarmfabric_read')) for host in reached}
    try:
        return sf_inventory.first_record(plain(swarm).get('managers') or [], reached, reads)
    except sf_inventory.RecordUnreadable as exc:
        raise AnsibleFilterError(f'Cannot compute the plan: {exc}') from None


def swarm_fabric_stale(config_reads):
    """The overlays whose config-only network some host called stale (every host's registered query)."""
    return sf_inventory.stale_overlays(plain(config_reads))


def swarm_fabric_next_generations(current, stale):
    """{overlay: generation}: one past the current where a node is stale."""
    return sf_inventory.next_generations(plain(current), plain(stale))


# The toolkit's root: roles/, plugins/, playbooks/ (a checkout or the installed collection).
_ROOT = os.path.dirname(os.path.dirname(_MODULE_UTILS))


def _complete(check_mode):
    """Whether this run runs every task: not in check mode, no tags, no start-at-task, no step."""
    args = context.CLIARGS
    return not (check_mode or args.get('skip_tags') or set(args.get('tags') or ()) - {'all'}
                or args.get('start_at_task') or args.get('step'))


def swarm_converge_inputs(plan, hostvars, swarm, base_dir, secret=''):
    """{host: the hash of its converge's inputs} for every described host (module_utils converged.py)."""
    plan = plain(plan)
    versions = [sf_objects.version(entry['kind'], entry['name'],
                                   base64.b64decode(swarm_object_data(entry, swarm, base_dir)), str(secret or ''))
                for entry in plan['objects'] if not entry['external']]
    common = sf_converged.digest({'code': sf_converged.code_digest(_ROOT), 'plan': plan, 'objects': versions,
                                  'secret': sf_converged.secret_fingerprint(secret)})
    names = sf_converged.role_variables(_ROOT)
    out = {}
    for host in sf_inventory.members(plan):
        try:
            found = hostvars[host]
        except (KeyError, TypeError):
            found = {}
        variables = {name: plain(found[name]) for name in names if name in found}
        out[host] = sf_converged.inputs_digest(common, host, host_view(plan, host), variables)
    return out


def swarm_converged(plan, hostvars, reached, inputs, check_mode=False, full=False):
    """Whether this run can skip its layers: {converged, reasons, stampable} (converged.py's verdict);
    every reached host's host_state read is its __swarmfabric_read; ``full`` (swarmfabric_full) runs
    every layer anyway."""
    reached = plain(reached)
    reads = {host: plain(_hostvar(hostvars, host, '__swarmfabric_read')) for host in reached}
    return sf_converged.verdict(sf_inventory.members(plain(plan)), reached, reads, plain(inputs),
                                _complete(check_mode), full)


class FilterModule:
    def filters(self):
        return {'swarm_validate': swarm_validate, 'swarm_plan': swarm_plan, 'swarm_host_view': swarm_host_view,
                'swarm_mesh_view': swarm_mesh_view, 'swarm_mesh_subnets': swarm_mesh_subnets,
                'swarm_mesh_merge': swarm_mesh_merge, 'swarm_fabric_index': swarm_fabric_index,
                'swarm_fabric_sas': swarm_fabric_sas, 'swarm_fabric_epoch': swarm_fabric_epoch,
                'swarm_fabric_rekey': swarm_fabric_rekey, 'swarm_members': swarm_members,
                'swarm_unreached': swarm_unreached, 'swarm_first_reached': swarm_first_reached,
                'swarm_live_manager': swarm_live_manager, 'swarm_cluster_nodes': swarm_cluster_nodes,
                'swarm_fabric_stale': swarm_fabric_stale,
                'swarm_fabric_next_generations': swarm_fabric_next_generations,
                'swarm_service_compose': swarm_service_compose, 'swarm_object_data': swarm_object_data,
                'swarm_object_names': swarm_object_names,
                'swarm_base_dir': swarm_base_dir, 'swarm_converge_inputs': swarm_converge_inputs,
                'swarm_converged': swarm_converged, 'swarm_allocations_record': swarm_allocations_record}
