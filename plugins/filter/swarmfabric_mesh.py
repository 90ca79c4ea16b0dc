# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter for the mesh layer: swarm_mesh_view (what roles/mesh renders for one host)."""

from __future__ import annotations

import os
import sys

from ansible.errors import AnsibleFilterError

# Same path trick as plugins/filter/swarmfabric.py: reach the shared package.
_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils')
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from swarmfabric.plan import plain
from swarmfabric.ruleset import backend_subnets, merge_backends, mesh_view


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
        return {'swarm_mesh_view': swarm_mesh_view, 'swarm_mesh_subnets': swarm_mesh_subnets,
                'swarm_mesh_merge': swarm_mesh_merge}
