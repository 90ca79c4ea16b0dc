#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the last known backends of each node, kept in the swarm."""

DOCUMENTATION = r"""
---
module: swarm_backends_record
short_description: Keep each node's last reported backends in the swarm, for nodes that cannot report
description:
  - Run on a live manager by the mesh layer. Only the node that runs a task knows its address
    on a swarm-scope macvlan network (M(swarm_backends)), so a node that Ansible cannot reach
    cannot report its tasks. This module keeps the last report of every node in the swarm, as
    the node label C(io.swarmfabric.backends) (found by the identity label
    C(io.swarmfabric.host)), so that its tasks stay backends of the mesh while it is unreachable.
  - For each node in O(reports), the label is set to its report when it differs.
  - For each node in O(silent), the last recorded addresses are returned in RV(kept) for every
    service of which the swarm still lists a running task on that node; a service the swarm no
    longer runs there is dropped. The addresses are the last known ones (stale but still served).
author: Swarmfabric contributors
options:
  reports:
    description: Inventory name of each node that reported in this run to its M(swarm_backends) answer.
    type: dict
    default: {}
  silent:
    description: Inventory names of the nodes that did not report in this run.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Reads everything and returns RV(kept); writes no label.
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Record the backends, read those of the nodes that did not report
  swarm_backends_record:
    reports: {node1: {web: [10.20.1.2]}, node2: {web: [10.20.2.2]}}
    silent: [node5]
  register: record
"""

RETURN = r"""
kept:
  description: For each silent node, service name to its last known addresses (services still running there).
  returned: always
  type: dict
  sample: {node5: {web: [10.20.5.2]}}
unknown:
  description: Silent nodes with no record in the swarm (never reported, or no identity label).
  returned: always
  type: list
  elements: str
actions:
  description: The nodes whose record was (or, in check mode, would be) written.
  returned: always
  type: list
  elements: str
  sample: ["recorded the backends of node2"]
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change

HOST_LABEL = "io.swarmfabric.host"
BACKENDS_LABEL = "io.swarmfabric.backends"


def encode(report):
    """Canonical label text of one node's report (services with addresses only)."""
    clean = {name: sorted(set(ips)) for name, ips in sorted((report or {}).items()) if ips}
    return json.dumps(clean, sort_keys=True, separators=(",", ":"))


def decode(text):
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(name): [str(ip) for ip in ips] for name, ips in value.items() if isinstance(ips, list)}


def running_services(tasks, services):
    """Names of the services with a running task in ``tasks`` (GET /tasks answers)."""
    names = {service["ID"]: (service.get("Spec") or {}).get("Name", "") for service in services}
    return {
        names.get(task.get("ServiceID"), "")
        for task in tasks
        if (task.get("Status") or {}).get("State") == "running"
    } - {""}


class Record:
    def __init__(self, change, api):
        self.change, self.api = change, api

    def run(self, reports, silent):
        nodes = {}
        for node in self.api.get("/nodes"):
            host = ((node.get("Spec") or {}).get("Labels") or {}).get(HOST_LABEL)
            # A ready node wins over a stale entry of the same host.
            if host and (host not in nodes or (node.get("Status") or {}).get("State") == "ready"):
                nodes[host] = node
        for host, report in sorted(reports.items()):
            node = nodes.get(host)
            if node is None:
                continue
            text = encode(report)
            labels = dict((node.get("Spec") or {}).get("Labels") or {})
            if labels.get(BACKENDS_LABEL) == text:
                continue
            self.change.act(f"recorded the backends of {host}", self.label, node["ID"], text)
        kept, unknown = {}, []
        services = self.api.get("/services") if silent else []
        for host in sorted(set(silent)):
            node = nodes.get(host)
            labels = ((node or {}).get("Spec") or {}).get("Labels") or {}
            if node is None or BACKENDS_LABEL not in labels:
                unknown.append(host)
                continue
            tasks = self.api.get("/tasks", query={"filters": {"node": [node["ID"]], "desired-state": ["running"]}})
            alive = running_services(tasks, services)
            kept[host] = {name: ips for name, ips in decode(labels[BACKENDS_LABEL]).items() if name in alive}
        return {"kept": kept, "unknown": unknown}

    def label(self, node_id, text):
        # Re-read: the version index must be the node's current one.
        fresh = self.api.get(f"/nodes/{node_id}")
        spec = dict(fresh.get("Spec") or {})
        spec["Labels"] = dict(spec.get("Labels") or {}, **{BACKENDS_LABEL: text})
        self.api.post(f"/nodes/{node_id}/update", body=spec, query={"version": fresh["Version"]["Index"]})


def main():
    module = AnsibleModule(
        argument_spec={
            "reports": {"type": "dict", "default": {}},
            "silent": {"type": "list", "elements": "str", "default": []},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        supports_check_mode=True,
    )
    change = Change(module, diff=False)
    record = Record(change, DockerAPI(module.params["socket"]))
    try:
        result = record.run(module.params["reports"], module.params["silent"])
    except DockerAPIError as exc:
        change.fail("record the backends in the swarm", exc)
    change.exit(**result)


if __name__ == "__main__":
    main()
