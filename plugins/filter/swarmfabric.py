# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the description layer: swarm_validate, swarm_plan, swarm_host_view."""

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
from swarmfabric.plan import PlanError, build_plan, host_view


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


class FilterModule:
    def filters(self):
        return {'swarm_validate': swarm_validate, 'swarm_plan': swarm_plan, 'swarm_host_view': swarm_host_view}
