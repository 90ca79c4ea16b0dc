#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: one of Docker's own overlay networks (swarm.overlays.<name>.driver: docker)."""

DOCUMENTATION = r"""
---
module: docker_overlay
short_description: Docker's own overlay network, beside the fabric
description:
  - Runs on a manager. Creates the swarm-scope network that C(docker network create --driver overlay) would,
    labelled C(io.swarmfabric.overlay), for an overlay of the description with C(driver=docker) (Docker's VXLAN,
    VIPs, DNS and ingress).
  - Docker cannot change a network. One that exists with other settings is refused, naming each, and left as
    it is (remove it when no service uses it, then converge again).
  - The kernel check (M(fabric_capabilities), its O(fabric_capabilities#module:docker_encrypted)) runs first,
    because on a kernel without ESP Docker would create an encrypted overlay and send plaintext.
version_added: "1.2.0"
author: Swarmfabric
options:
  name:
    description: The network's name (the overlay's).
    type: str
    required: true
  state:
    description: C(present), or C(absent) (removed when it carries our label).
    type: str
    choices: [present, absent]
    default: present
  subnet:
    description: The subnet (CIDR); Docker picks one when it is not given.
    type: str
  encrypted:
    description: Encrypt the overlay's traffic between nodes (Docker's C(--opt encrypted), ESP).
    type: bool
    default: true
  attachable:
    description: Let standalone containers attach (C(--attachable)).
    type: bool
    default: false
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Docker's own encrypted overlay for the back end
  docker_overlay:
    name: backend
    subnet: 10.30.0.0/24
    encrypted: true
"""

RETURN = r"""
network_id:
  description: The network's ID; empty when absent or only planned.
  returned: always
  type: str
actions:
  description: What was done (or would be done in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change

LABEL = "io.swarmfabric.overlay"


def view(network):
    """The compared settings of a live network."""
    configs = (network.get("IPAM") or {}).get("Config") or []
    return {"driver": network.get("Driver"), "scope": network.get("Scope"),
            "subnet": configs[0].get("Subnet") if configs else None,
            "encrypted": "encrypted" in (network.get("Options") or {}),
            "attachable": bool(network.get("Attachable"))}


def wanted(params):
    return {"driver": "overlay", "scope": "swarm", "subnet": params["subnet"], "encrypted": params["encrypted"],
            "attachable": params["attachable"]}


def body(params):
    out = {"Name": params["name"], "Driver": "overlay", "Attachable": params["attachable"], "CheckDuplicate": True,
           "Labels": {LABEL: params["name"]}}
    if params["encrypted"]:
        out["Options"] = {"encrypted": ""}
    if params["subnet"]:
        out["IPAM"] = {"Driver": "default", "Config": [{"Subnet": params["subnet"]}]}
    return out


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "subnet": {"type": "str"},
            "encrypted": {"type": "bool", "default": True},
            "attachable": {"type": "bool", "default": False},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        supports_check_mode=True,
    )
    params = module.params
    name = params["name"]
    change = Change(module)
    api = DockerAPI(params["socket"])
    what = f"{'converge' if params['state'] == 'present' else 'remove'} Docker overlay {name}"
    try:
        try:
            live = api.get(f"/networks/{name}")
        except DockerAPIError as exc:
            if exc.status != 404:
                raise
            live = None
        if params["state"] == "absent":
            if live is not None and (live.get("Labels") or {}).get(LABEL) == name:
                change.before = view(live)
                change.act(f"removed Docker overlay {name}", api.delete, f"/networks/{live['Id']}")
            change.exit(network_id="")
        want = wanted(params)
        if live is None:
            change.after = want
            created = change.act(f"created Docker overlay {name}", api.post, "/networks/create", body=body(params))
            change.exit(network_id=(created or {}).get("Id", ""))
        have = view(live)
        # Docker picks a subnet when none is asked for: any one is as described.
        differs = [f"{key} is {have[key]}, described {want[key]}" for key in want
                   if want[key] != have[key] and not (key == "subnet" and want[key] is None)]
        if differs:
            change.fail(what, "it exists with other settings (" + "; ".join(differs) + "), and Docker cannot "
                        "change a network: remove it once no service uses it, then converge again")
        change.before = change.after = have
        change.exit(network_id=live.get("Id", ""))
    except DockerAPIError as exc:
        change.fail(what, exc)


if __name__ == "__main__":
    main()
