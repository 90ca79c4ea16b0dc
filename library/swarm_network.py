#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: swarm_network
short_description: Attach a VXLAN overlay to Swarm as a macvlan network
description:
  - With O(kind=config), on every node, a node-local config-only network
    (C(docker network create --config-only)) holding the overlay subnet, the
    node's own IP range, the anycast gateway, the host shim address as an
    auxiliary address, and C(parent=<vxlan device>) in macvlan bridge mode.
  - With O(kind=swarm), once on a manager, the swarm-scope attachable macvlan
    network built C(ConfigFrom) those config-only networks. Each node then
    hands its tasks addresses from its own range on the shared overlay.
  - Reads the network through the Engine API, compares it with the desired
    settings, and recreates it only if they differ (Docker cannot change a
    network in place). Docker refuses to delete a network that is in use; that
    error is reported as is.
author: Swarmfabric contributors
options:
  name:
    description: Name of the swarm-scope network, for example C(appnet).
    type: str
    required: true
  kind:
    description: Which of the two networks this call manages.
    type: str
    required: true
    choices: [config, swarm]
  config_name:
    description: Name of the node-local config-only network. Defaults to O(name) with C(-config) appended.
    type: str
  subnet:
    description: Overlay subnet (CIDR). Required for O(kind=config).
    type: str
  gateway:
    description: Anycast gateway address.
    type: str
  ip_range:
    description: This node's range inside the subnet (CIDR).
    type: str
  aux_addresses:
    description: Addresses Docker must not hand out, name to address (the host shim).
    type: dict
    default: {}
  parent:
    description: The VXLAN device, parent of the macvlan endpoints. Required for O(kind=config).
    type: str
  state:
    description: Whether the network exists.
    type: str
    default: present
    choices: [present, absent]
requirements:
  - dockerd reachable on O(socket); for O(kind=swarm) the node must be a swarm manager
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Config-only network on every node
  swarm_network:
    name: appnet
    kind: config
    subnet: 10.20.0.0/16
    gateway: 10.20.0.1
    ip_range: 10.20.17.0/24
    aux_addresses: {host: 10.20.17.1}
    parent: sf-appnet

- name: The swarm network, once
  swarm_network:
    name: appnet
    kind: swarm
  run_once: true
"""

RETURN = r"""
changed:
  description: Whether the network was (or would be) created, recreated or removed.
  returned: always
  type: bool
actions:
  description: What was (or would be) done.
  returned: always
  type: list
  elements: str
network:
  description: The compared settings of the network after the run.
  returned: when state is present
  type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError


def desired_body(p):
    if p["kind"] == "swarm":
        return {"Name": p["name"], "Driver": "macvlan", "Scope": "swarm", "Attachable": True,
                "ConfigFrom": {"Network": p["config_name"]}, "CheckDuplicate": True}
    ipam = {"Subnet": p["subnet"]}
    if p["gateway"]:
        ipam["Gateway"] = p["gateway"]
    if p["ip_range"]:
        ipam["IPRange"] = p["ip_range"]
    if p["aux_addresses"]:
        ipam["AuxiliaryAddresses"] = dict(p["aux_addresses"])
    return {"Name": p["config_name"], "Driver": "macvlan", "ConfigOnly": True, "CheckDuplicate": True,
            "IPAM": {"Driver": "default", "Config": [ipam]},
            "Options": {"parent": p["parent"], "macvlan_mode": "bridge"}}


def comparable(net, kind):
    """The settings we own, from an inspect (or a create body); None if absent."""
    if net is None:
        return None
    if kind == "swarm":
        return {"driver": net.get("Driver"), "scope": net.get("Scope"), "attachable": bool(net.get("Attachable")),
                "config_from": (net.get("ConfigFrom") or {}).get("Network")}
    config = ((net.get("IPAM") or {}).get("Config") or [{}])[0]
    return {"config_only": bool(net.get("ConfigOnly")), "subnet": config.get("Subnet"),
            "gateway": config.get("Gateway") or None, "ip_range": config.get("IPRange") or None,
            "aux_addresses": config.get("AuxiliaryAddresses") or config.get("AuxAddress") or {},
            "options": {k: v for k, v in (net.get("Options") or {}).items() if k in ("parent", "macvlan_mode")}}


def inspect(api, name):
    try:
        return api.get(f"/networks/{name}")
    except DockerAPIError as exc:
        if exc.status == 404:
            return None
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            kind=dict(type="str", required=True, choices=["config", "swarm"]),
            config_name=dict(type="str"),
            subnet=dict(type="str"),
            gateway=dict(type="str"),
            ip_range=dict(type="str"),
            aux_addresses=dict(type="dict", default={}),
            parent=dict(type="str"),
            socket=dict(type="path", default="/var/run/docker.sock"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        supports_check_mode=True,
    )
    p = dict(module.params)
    if p["kind"] == "config" and p["state"] == "present" and not (p["subnet"] and p["parent"]):
        module.fail_json(msg="Cannot create a config-only network: subnet and parent are required")
    p["config_name"] = p["config_name"] or f"{p['name']}-config"
    target = p["name"] if p["kind"] == "swarm" else p["config_name"]
    label = f"{'swarm' if p['kind'] == 'swarm' else 'config-only'} network {target}"
    api = DockerAPI(p["socket"])
    actions = []
    try:
        live = inspect(api, target)
        before = comparable(live, p["kind"])
        body = desired_body(p)
        after = comparable(body, p["kind"]) if p["state"] == "present" else None
        if p["kind"] == "swarm" and after is not None:
            after["scope"] = "swarm"
        remove = live is not None and (after is None or before != after)
        create = after is not None and (live is None or remove)
        if remove:
            actions.append(f"remove {label}" + (" (settings differ)" if create else ""))
        if create:
            actions.append(f"create {label}")
        if not module.check_mode:
            if remove:
                api.delete(f"/networks/{live['Id']}")
            if create:
                api.post("/networks/create", body=body)
    except DockerAPIError as exc:
        module.fail_json(msg=f"Cannot {actions[-1] if actions else 'read ' + label}: {exc}",
                         exception=traceback.format_exc())
    out = {"changed": bool(actions), "actions": actions}
    if after is not None:
        out["network"] = after
    if module._diff:
        out["diff"] = {"before": before or {}, "after": after or {}}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
