#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: swarm_backends
short_description: Read the fabric addresses of the running tasks of swarm services
description:
  - Read-only. Lists this node's running swarm task containers with one
    Engine API request and returns, per service, their addresses that lie in
    the service's overlay subnet.
  - It runs on every node, because Docker records no address in a task's
    network attachments for a swarm-scope macvlan network (its IPAM is local
    to each node, from the config-only network); only the node that runs a
    task knows its address. playbooks/mesh.yml merges the answers of all
    nodes, so the mesh follows scaling and rescheduling on every run.
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
  - A swarm node with the Docker Engine API on a unix socket
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Read the backends of the container services
  swarm_backends:
    services: {web: 10.20.0.0/16}
  register: backends
"""

RETURN = r"""
changed:
  description: Always false.
  returned: always
  type: bool
backends:
  description: Service name to the sorted addresses of its running tasks on this node.
  returned: always
  type: dict
  sample: {web: [10.20.17.2, 10.20.42.2]}
actions:
  description: Always empty (read-only module).
  returned: always
  type: list
  elements: str
"""

import ipaddress

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.constants import DOCKER_SERVICE_LABEL as SERVICE_LABEL
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change


def local_backends(containers, wanted, prefix):
    """Pure: service name -> sorted addresses, from the API's /containers/json answer."""
    subnets = {name: ipaddress.IPv4Network(cidr) for name, cidr in wanted.items()}
    backends = {name: set() for name in wanted}
    for container in containers:
        docker_name = (container.get("Labels") or {}).get(SERVICE_LABEL, "")
        name = docker_name[len(prefix):] if docker_name.startswith(prefix) else None
        if name not in subnets or container.get("State") != "running":
            continue
        for network in ((container.get("NetworkSettings") or {}).get("Networks") or {}).values():
            address = network.get("IPAddress")
            if address and ipaddress.IPv4Address(address) in subnets[name]:
                backends[name].add(address)
    return {name: sorted(ips, key=ipaddress.IPv4Address) for name, ips in backends.items()}


def main():
    module = AnsibleModule(
        argument_spec={
            "services": {"type": "dict", "required": True},
            "name_prefix": {"type": "str", "default": ""},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        supports_check_mode=True,
    )
    change = Change(module, diff=False)
    api = DockerAPI(socket_path=module.params["socket"])
    try:
        containers = api.get("/containers/json", query={"filters": {"label": [SERVICE_LABEL]}})
    except DockerAPIError as exc:
        change.fail("read the local swarm tasks", exc)
    change.exit(backends=local_backends(containers, module.params["services"], module.params["name_prefix"]))


if __name__ == "__main__":
    main()
