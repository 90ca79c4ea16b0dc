# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status report's filters (playbooks/status.yml, docs/operations.md):
swarm_status_gather parses what the hosts read, swarm_status compares it
with the plan, swarm_status_table prints it, swarm_status_dot draws it, swarm_status_brief
sums it up.
The logic is plugins/module_utils/swarmfabric/status.py."""

from __future__ import annotations

import json
import os
import sys

from ansible.errors import AnsibleFilterError

# Filter plugins are not on the module_utils path (see swarmfabric.py).
_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils')
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from swarmfabric import status as _status


def _plain(value):
    """Ansible's containers and tagged strings as plain JSON data."""
    return json.loads(json.dumps(value, default=str))


def swarm_status_gather(reads, sa_results):
    """The actual state from every host's read (host -> stdout) and its SA queries (host -> loop results)."""
    try:
        return _status.gather(_plain(reads), _plain(sa_results))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f'Cannot read the state the hosts reported: {exc}') from exc


def swarm_status(plan, actual, reached):
    """status.json: desired, actual, drift, lines, drifted_hosts, drifted_objects."""
    try:
        return _status.report(_plain(plan), _plain(actual), list(reached))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f'Cannot compare the swarm with its description: {exc!r}') from exc


def swarm_status_table(status):
    """The report's table of desired, actual and drift, one line per object."""
    return _status.summary(_plain(status))


def swarm_status_brief(status, answers=None):
    """A short human summary: nodes, overlays, services, and what each node's URL answers."""
    try:
        return _status.brief(_plain(status), _plain(answers or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f'Cannot summarise the status: {exc!r}') from exc


def swarm_status_dot(status):
    """The report as Graphviz DOT text."""
    return _status.dot(_plain(status))


class FilterModule:
    def filters(self):
        return {'swarm_status_gather': swarm_status_gather, 'swarm_status': swarm_status,
                'swarm_status_table': swarm_status_table, 'swarm_status_dot': swarm_status_dot,
                'swarm_status_brief': swarm_status_brief}
