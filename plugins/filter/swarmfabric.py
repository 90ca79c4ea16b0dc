# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Swarmfabric's filters: the description layer (swarm_validate, swarm_plan,
swarm_host_view) and the mesh layer (swarm_mesh_view, swarm_mesh_subnets,
swarm_mesh_merge)."""

from __future__ import annotations

import os
import sys

from ansible.errors import AnsibleFilterError

# Filter plugins are not on the module_utils path; reach the shared package
# (plugins/module_utils/swarmfabric) through the repository layout instead.
_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils')
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from swarmfabric.description import validate
from swarmfabric.plan import PlanError, build_plan, host_view, plain
from swarmfabric.ruleset import backend_subnets, merge_backends, mesh_view


def swarm_validate(swarm, inventory=None):
    """Every problem of the description, one line each; [] when it is valid."""
    try:
        return validate(swarm, None if inventory is None else list(inventory))
    except Exception as exc:  # a validator bug must still read as one line, not a traceback
        return [f'swarm: cannot be validated: {type(exc).__name__}: {exc}']


def swarm_plan(swarm, hostvars):
    """The whole plan (docs/architecture.md) from a valid description and the hostvars."""
    try:
        return build_plan(swarm, hostvars)
    except PlanError as exc:
        raise AnsibleFilterError('Cannot compute the plan:\n' + '\n'.join(exc.errors)) from None


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


class FilterModule:
    def filters(self):
        return {'swarm_validate': swarm_validate, 'swarm_plan': swarm_plan, 'swarm_host_view': swarm_host_view,
                'swarm_mesh_view': swarm_mesh_view, 'swarm_mesh_subnets': swarm_mesh_subnets,
                'swarm_mesh_merge': swarm_mesh_merge}
