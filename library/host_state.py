#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: host_state
short_description: Read, in one round trip, the digests of all the live state a converge of this host looks at
description:
  - C(state=query) (read-only) reads everything the layers of a converge
    read on this host and returns one SHA-256 digest per section, never the
    state itself; the last stamp comes with them.
  - "The sections: C(docker) (engine version, this node's membership, the
    local networks, the running task containers and their addresses),
    C(swarm) (on a manager: the swarm's spec without the converge lock, the
    nodes with their roles, availability, labels and states, the services'
    specs, the configs' and secrets' names and labels), C(links) (the
    C(sf-) devices with their addresses, FDB entries and routes), C(xfrm)
    (ESP SAs by SPI, reqid and algorithm, never their keys; the policies),
    C(nft) (the tables named C(swarmfabric...)), C(iptables) (the lines of
    the C(SF-) chains), C(ipvs) (services, timeouts and settings, when
    ip_vs is loaded), C(files) (modes and contents of C(/etc/swarmfabric),
    C(/usr/local/libexec/swarmfabric), C(/run/swarmfabric) and the
    C(swarmfabric-) units) and C(daemons) (whether each of our daemons runs)."
  - "What moves while nothing changes is left out of the digests: packet
    and byte counters, set element expiry, replay counters, promiscuity,
    the converge lock, the raft leader, log and pid files."
  - C(state=stamped) reads the same, then records the digests with
    O(inputs) in C(/var/lib/swarmfabric/converged.json) (mode 0600, renamed
    into place). site.yml writes it at the end of a complete converge; the
    next run skips its layers when every host's inputs and digests equal
    its stamp (docs/architecture.md, "Converged runs").
author: Swarmfabric contributors
options:
  state:
    description: C(query) reads; C(stamped) also records the stamp.
    type: str
    choices: [query, stamped]
    default: query
  facts:
    description:
      - Also return the network and DNS facts, as C(ansible.builtin.setup)
        with C(gather_subset=[!all, !min, network, dns]) gathers them (the
        same collectors), so that the plan needs no round trip of its own.
    type: bool
    default: false
  allocations:
    description:
      - The swarm's name (C(swarm.name)). On a manager of an active swarm,
        also read that swarm's allocation record (as
        M(swarm_allocations) O(state=query) does) and return it as
        RV(allocations). When a manager answers but cannot read it,
        RV(allocations.error) says why (and the plan stops on it).
    type: str
  inputs:
    description:
      - The hash of the converge's inputs for this host (filter
        C(swarm_converge_inputs)). Required with C(state=stamped).
    type: str
attributes:
  check_mode:
    support: full
    description: Reads; in check mode the stamp is not written.
  diff_mode:
    support: full
    description: The stamp before and after (digests only).
  idempotent:
    support: full
    description: A stamp equal to the one recorded is not written again.
requirements:
  - iproute2; nft, iptables-save and ipvsadm when installed
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Read every host's live state once
  host_state:
  register: read

- name: Record what a complete converge left
  host_state:
    state: stamped
    # converged.yml computed every host's inputs hash (filter swarm_converge_inputs)
    inputs: "{{ hostvars['localhost'].swarmfabric_inputs[inventory_hostname] }}"
"""

RETURN = r"""
changed:
  description: Whether the stamp was (or, in check mode, would be) written.
  returned: always
  type: bool
digests:
  description: Section name to the SHA-256 of its canonical live value.
  returned: always
  type: dict
  sample: {docker: 3f1c..., swarm: 9a0e..., links: 77b2..., xfrm: 1d4e..., nft: 5c21...,
           iptables: e3b0..., ipvs: 74234..., files: 0b8f..., daemons: c6a4...}
unread:
  description:
    - Section name to why it could not be read. Such a section is unknown,
      so the run never counts as converged.
  returned: always
  type: dict
  sample: {ipvs: "ipvsadm -Sn failed (rc=2): Can't initialize ipvs"}
allocations:
  description: With O(allocations), what M(swarm_allocations) O(state=query) returns
    (readable, node_state, record, serial, name).
  returned: with O(allocations)
  type: dict
  sample: {readable: true, node_state: active, record: {version: 1, swarm: lab}, serial: 4,
           name: swarmfabric-lab-allocations-4}
ansible_facts:
  description: The network and DNS facts, with O(facts=true).
  returned: with O(facts=true)
  type: dict
stamp:
  description: The stamp found before this run (version, inputs, digests), or null.
  returned: always
  type: dict
  sample: {version: 1, inputs: 8e41..., digests: {docker: 3f1c...}}
actions:
  description: "C(stamp written) when the stamp changed; otherwise empty."
  returned: always
  type: list
  elements: str
  sample: [stamp written]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.facts import ansible_collector, default_collectors
from ansible.module_utils.facts.namespace import PrefixFactNamespace
from ansible.module_utils.swarmfabric.allocrecord import RecordReader
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.hoststate import STAMP_VERSION, digests, read_sections, read_stamp, write_stamp
from ansible.module_utils.swarmfabric.module import Change, Runner

# What setup gathers with gather_subset [!all, !min, network, dns].
FACT_SUBSET = ["!all", "!min", "network", "dns"]


def network_facts(module):
    collector = ansible_collector.get_ansible_collector(
        all_collector_classes=default_collectors.collectors,
        namespace=PrefixFactNamespace(namespace_name="ansible", prefix="ansible_"),
        filter_spec="*", gather_subset=FACT_SUBSET, gather_timeout=10,
        minimal_gather_subset=frozenset(["dns"]))
    return collector.collect(module=module)


ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["query", "stamped"], "default": "query"},
    "facts": {"type": "bool", "default": False},
    "allocations": {"type": "str"}, "inputs": {"type": "str"},
    "socket": {"type": "path", "default": "/var/run/docker.sock"},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=[("state", "stamped", ["inputs"])],
                           supports_check_mode=True)
    change = Change(module, headers=("stamp before", "stamp after"))
    stamp = read_stamp()
    api = DockerAPI(socket_path=module.params["socket"], timeout=30)
    sections, unread = read_sections(Runner(module), module, api)
    live = digests(sections)
    extra = {"ansible_facts": network_facts(module)} if module.params["facts"] else {}
    if module.params["allocations"]:
        try:
            extra["allocations"] = RecordReader(api, module.params["allocations"]).query()[0]
        except DockerAPIError as exc:
            extra["allocations"] = {"readable": False, "error": str(exc), "record": {}, "serial": 0}
    if module.params["state"] == "stamped":
        wanted = {"version": STAMP_VERSION, "inputs": module.params["inputs"], "digests": live}
        change.before, change.after = stamp or {}, wanted
        if wanted != stamp:
            try:
                change.act("stamp written", write_stamp, wanted)
            except OSError as exc:
                change.fail("write the converge stamp", exc)
    change.exit(digests=live, unread=unread, stamp=stamp, **extra)


if __name__ == "__main__":
    main()
