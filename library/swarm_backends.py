#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: swarm_backends
short_description: Read the fabric addresses of the running tasks of swarm services
description:
  - Read-only. Asks a manager's Engine API for the services and their tasks
    (two requests in all) and returns, per service, the addresses of its
    tasks that are running, taken from the tasks' network attachments and
    kept only where they lie in the service's overlay subnet.
  - The routing mesh (roles/mesh) renders these as backends, so the mesh
    follows scaling and rescheduling on every run of playbooks/mesh.yml.
  - Run it on a manager; workers cannot list tasks.
author: Swarmfabric contributors
options:
  services:
    description:
      - Service name to the overlay subnet its backends live in
        (the subnet of the service's first overlay).
      - A service that does not exist (yet) gets an empty list.
    type: dict
    required: true
  name_prefix:
    description: Prefix of the Docker service names in front of the description's names.
    type: str
    default: ""
  socket:
    description: The Docker daemon socket.
    type: path
    default: /var/run/docker.sock
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    description: Never changes anything.
requirements:
  - A swarm manager with the Docker Engine API on a unix socket
"""

EXAMPLES = r"""
- name: Read the backends of the container services
  swarm_backends:
    services: {web: 10.20.0.0/16}
  register: backends
  run_once: true
  delegate_to: "{{ swarmfabric_plan.first_manager }}"
"""

RETURN = r"""
changed:
  description: Always false.
  returned: always
  type: bool
backends:
  description: Service name to the sorted addresses of its running tasks.
  returned: always
  type: dict
  sample: {web: [10.20.17.2, 10.20.42.2]}
tasks:
  description: Service name to its running tasks, with the node id and the address (or null when none was found).
  returned: always
  type: dict
actions:
  description: Always empty (read-only module).
  returned: always
  type: list
  elements: str
"""

import ipaddress

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError


def task_address(task, subnet):
    """The task's address inside `subnet`, from its network attachments."""
    for attachment in task.get("NetworksAttachments") or []:
        for cidr in attachment.get("Addresses") or []:
            address = ipaddress.IPv4Interface(cidr).ip
            if address in subnet:
                return str(address)
    return None


def running_backends(services, tasks, wanted, prefix):
    """Pure: (backends, tasks-by-service) from the API's /services and /tasks answers."""
    names = {s["ID"]: s["Spec"]["Name"] for s in services}
    backends = {name: [] for name in wanted}
    found = {name: [] for name in wanted}
    for task in tasks:
        docker_name = names.get(task.get("ServiceID"), "")
        name = docker_name[len(prefix):] if docker_name.startswith(prefix) else None
        if name not in wanted or (task.get("Status") or {}).get("State") != "running":
            continue
        address = task_address(task, ipaddress.IPv4Network(wanted[name]))
        found[name].append({"id": task["ID"], "node": task.get("NodeID"), "address": address})
        if address:
            backends[name].append(address)
    backends = {name: sorted(set(ips), key=ipaddress.IPv4Address) for name, ips in backends.items()}
    return backends, found


def main():
    module = AnsibleModule(
        argument_spec={
            "services": {"type": "dict", "required": True},
            "name_prefix": {"type": "str", "default": ""},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        supports_check_mode=True,
    )
    api = DockerAPI(socket_path=module.params["socket"])
    try:
        services = api.get("/services")
        tasks = api.get("/tasks", query={"filters": {"desired-state": ["running"]}})
    except DockerAPIError as exc:
        module.fail_json(msg=f"Cannot read the swarm tasks: {exc}")
    backends, found = running_backends(services, tasks, module.params["services"], module.params["name_prefix"])
    missing = [t["id"] for ts in found.values() for t in ts if t["address"] is None]
    if missing:
        module.warn(f"running tasks without an address on their overlay: {', '.join(sorted(missing))}")
    module.exit_json(changed=False, backends=backends, tasks=found, actions=[])


if __name__ == "__main__":
    main()
