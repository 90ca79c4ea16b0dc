#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the swarm's allocation record (slots, VIPs, marks), kept in the swarm."""

DOCUMENTATION = r"""
---
module: swarm_allocations
short_description: Read or write the allocation record (slots, VIPs, firewall marks) kept in the swarm
description:
  - The plan's allocations (each node's slot on each overlay, each service's VIP and firewall mark,
    and the allocations held for nodes and services that are gone) are kept in the swarm itself, as a
    versioned swarm config object C(swarmfabric-<swarm>-allocations-<serial>) labelled
    C(io.swarmfabric.allocations=<swarm>) and C(io.swarmfabric.serial=<serial>), whose data is the
    record as JSON. Configs are replicated by the managers' Raft store, so every manager has it and
    nothing is kept on the controller.
  - O(state=query) reads the newest version. On a host that is not a manager of an active swarm, or
    where no Docker Engine answers on O(socket), it fails nothing and returns RV(readable=false) with
    the node's state (C(no-engine) for the latter).
  - O(state=present) writes O(record) as a new version when it differs from the newest one, then
    removes the older versions.
author: Swarmfabric contributors
options:
  state:
    description: C(query) reads the record; C(present) writes O(record).
    type: str
    choices: [query, present]
    default: query
  swarm:
    description: The swarm's name (C(swarm.name)); the record of another swarm is never read.
    type: str
    required: true
  record:
    description: The record to keep (the plan's C(allocations)). Required with O(state=present).
    type: dict
  base:
    description:
      - The serial the plan was made from (RV(serial) of the query). With O(state=present), a newer
        version in the swarm (another run wrote one since) is refused instead of overwritten.
    type: int
attributes:
  check_mode:
    description: Reads the record and reports the version it would write; writes and removes nothing.
    support: full
  diff_mode:
    description: The newest record as before, O(record) as after.
    support: full
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Read the allocations
  swarm_allocations:
    swarm: lab
  register: allocations

- name: Keep the plan's allocations in the swarm
  swarm_allocations:
    state: present
    swarm: lab
    record: "{{ swarmfabric_plan.allocations }}"
    base: "{{ allocations.serial }}"
"""

RETURN = r"""
readable:
  description: Whether this host is a manager of an active swarm (only then is the record read).
  returned: always
  type: bool
node_state:
  description: >-
    This host's swarm state (Docker's LocalNodeState), C(active) on a member; C(no-engine) when no
    engine answers.
  returned: always
  type: str
  sample: active
record:
  description: The newest record after the run (O(record) after a write); C({}) when there is none.
  returned: always
  type: dict
  sample: {version: 1, swarm: lab, overlays: {appnet: {subnet: 10.20.0.0/16, node_prefix: 24,
           vip_range: 10.20.252.0/22, slots: {node1: {value: 248}}, vips: {web: {value: 10.20.253.164}}}},
           fwmarks: {web: {value: 1593852601}}}
serial:
  description: The newest version's serial after the run (the one that would be written, in check mode); 0 when none.
  returned: always
  type: int
  sample: 7
name:
  description: The newest version's config name; empty when there is none.
  returned: always
  type: str
  sample: swarmfabric-lab-allocations-7
actions:
  description: The versions written and removed (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["wrote allocation record swarmfabric-lab-allocations-8", "removed swarmfabric-lab-allocations-7"]
"""

import base64
import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.allocrecord import SERIAL_LABEL, SWARM_LABEL, RecordReader
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change

# swarmkit's limit on a config's data (MaxConfigSize).
MAX_DATA = 1000 * 1024


def config_name(swarm, serial):
    return f"swarmfabric-{swarm}-allocations-{serial}"


def encode(record):
    """The config data: canonical JSON (sorted keys, no spaces), as bytes."""
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")


class Allocations:
    def __init__(self, change, api, swarm):
        self.change, self.api, self.swarm = change, api, swarm

    def run(self, state, record, base):
        out, versions = RecordReader(self.api, self.swarm).query()
        if not out["readable"]:
            if state == "present":
                raise NotReadable(out["node_state"])
            return out
        if state == "query":
            return out
        current, serial = out["record"], out["serial"]
        self.change.before, self.change.after = current, record
        old = versions[:-1]
        if not versions or current != record:
            if base is not None and base != serial:
                raise Stale(base, serial)
            data = encode(record)
            if len(data) > MAX_DATA:
                raise TooLarge(len(data))
            serial += 1
            name = config_name(self.swarm, serial)
            body = {"Name": name, "Labels": {SWARM_LABEL: self.swarm, SERIAL_LABEL: str(serial)},
                    "Data": base64.b64encode(data).decode("ascii")}
            self.change.act(f"wrote allocation record {name}", self.api.post, "/configs/create", body=body)
            old = versions
            out.update(record=record, serial=serial, name=name)
        for config in old:
            self.change.act(f"removed {(config.get('Spec') or {}).get('Name', config['ID'])}",
                            self.api.delete, f"/configs/{config['ID']}")
        return out


class NotReadable(Exception):
    pass


class Stale(Exception):
    pass


class TooLarge(Exception):
    pass


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["query", "present"], "default": "query"},
            "swarm": {"type": "str", "required": True},
            "record": {"type": "dict"},
            "base": {"type": "int"},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        required_if=[("state", "present", ["record"])],
        supports_check_mode=True,
    )
    params = module.params
    change = Change(module, headers=("allocations in the swarm", "allocations of the plan"))
    allocations = Allocations(change, DockerAPI(params["socket"]), params["swarm"])
    action = "write the allocations" if params["state"] == "present" else "read the allocations"
    try:
        result = allocations.run(params["state"], params["record"], params["base"])
    except DockerAPIError as exc:
        change.fail(action, exc)
    except NotReadable as exc:
        change.fail(action, f"this host is not a manager of an active swarm (its swarm state is {exc})")
    except Stale as exc:
        base, serial = exc.args
        change.fail(action, f"the record in the swarm is version {serial}, the plan was made from version {base} "
                            "(another run wrote it since); run again")
    except TooLarge as exc:
        change.fail(action, f"the record is {exc} bytes of JSON, more than a swarm config holds ({MAX_DATA})")
    change.exit(**result)


if __name__ == "__main__":
    main()
