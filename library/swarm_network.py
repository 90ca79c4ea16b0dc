#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: swarm_network
short_description: Attach a VXLAN overlay to Swarm as generations of macvlan networks
description:
  - With O(kind=config), on every node, a node-local config-only network
    (C(docker network create --config-only)) holding the overlay subnet, the
    node's own IP range, the anycast gateway, the host shim address as an
    auxiliary address, and a macvlan parent in bridge mode.
  - With O(kind=swarm), once on a manager, the swarm-scope attachable macvlan
    network built C(ConfigFrom) those config-only networks. Each node then
    hands its tasks addresses from its own range on the shared overlay.
  - Docker cannot change a network, cannot delete a config-only network while
    a swarm network is built from it, nor a swarm network while services use
    it. A node whose range or shim address moves therefore gets a new
    B(generation) of the overlay's networks. O(state=query) tells whether the
    current one is stale, O(state=present) with O(kind=swarm) creates the new
    swarm network, moves every service on an older generation onto it with one
    rolling update each (following the service's own update config), and
    removes the older swarm networks; O(state=pruned) then removes the older
    config-only networks.
  - Even generations use the plain names (C(appnet), C(appnet-config)) and
    O(parent); odd ones C(appnet-<gen>), C(appnet-config-<gen>) and
    O(alt_parent), because Docker's macvlan driver allows one network per
    parent on a node. Generation 0 is the plain names, so a cluster from before
    generations existed does not churn. Config-only networks carry the labels
    C(io.swarmfabric.overlay) and C(io.swarmfabric.generation) (an unlabelled
    one with the plain name is generation 0); Docker refuses labels on a
    network built C(ConfigFrom), so a swarm network's generation is read from
    its name and its config network.
author: Swarmfabric contributors
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  name:
    description: The overlay, for example C(appnet). Network names derive from it and O(generation).
    type: str
    required: true
  kind:
    description: Which of the two kinds of network this call manages.
    type: str
    required: true
    choices: [config, swarm]
  generation:
    description:
      - The generation to query, converge, or keep (O(state=pruned)). With O(kind=swarm) and
        O(state=query) it is ignored and the current (newest) generation is returned.
    type: int
    default: 0
  keep:
    description: With O(state=pruned), older generations not to remove (their swarm network still exists).
    type: list
    elements: int
    default: []
  subnet:
    description: Overlay subnet (CIDR). Required for O(kind=config) with O(state=present) or O(state=query).
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
    description: The VXLAN device, macvlan parent of even generations. Required with O(subnet).
    type: str
  alt_parent:
    description: The macvlan parent of odd generations; defaults to the host shim, O(parent) with C(-h) appended.
    type: str
  wait_timeout:
    description: Seconds to wait for each service's rolling update onto the new generation.
    type: int
    default: 300
  state:
    description:
      - C(present) converges the network of O(generation) (and, for O(kind=swarm), moves services
        off every other generation and removes those). C(query) only reads. C(absent) removes every
        generation of this kind. C(pruned) removes this node's generations older than O(generation)
        except O(keep).
    type: str
    default: present
    choices: [present, absent, query, pruned]
requirements:
  - dockerd reachable on O(socket); for O(kind=swarm) the node must be a swarm manager
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Is this node's config-only network of the current generation as described?
  swarm_network:
    name: appnet
    kind: config
    state: query
    generation: 0
    subnet: 10.20.0.0/16
    gateway: 10.20.0.1
    ip_range: 10.20.17.0/24
    aux_addresses: {host: 10.20.17.1}
    parent: sf-appnet

- name: The swarm network of generation 1, services moved onto it, generation 0 removed
  swarm_network:
    name: appnet
    kind: swarm
    generation: 1
  run_once: true
"""

RETURN = r"""
changed:
  description: Whether a network was (or would be) created, recreated or removed, or a service moved.
  returned: always
  type: bool
actions:
  description: What was (or would be) done.
  returned: always
  type: list
  elements: str
  sample: ["create swarm network appnet-1 (generation 1)", "move service web from appnet to appnet-1"]
generation:
  description: The generation queried, converged or kept; with O(kind=swarm) and O(state=query), the current one.
  returned: always
  type: int
network_name:
  description: The name of that generation's network of this kind.
  returned: always
  type: str
config_name:
  description: The name of that generation's config-only networks.
  returned: always
  type: str
exists:
  description: With O(state=query), whether the network of O(generation) exists here.
  returned: when state is query
  type: bool
stale:
  description:
    - With O(kind=config) and O(state=query), the network exists but its settings differ from the
      desired ones (a new generation is needed; Docker cannot change it).
  returned: when state is query
  type: bool
generations:
  description: The generations of this kind that exist after the run (predicted in check mode).
  returned: always
  type: list
  elements: int
moved:
  description: Services moved (or to be moved) onto the generation, with O(kind=swarm).
  returned: always
  type: list
  elements: str
network:
  description: The compared settings of the network of O(generation) (live for O(state=query)).
  returned: when state is present or query
  type: dict
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric import netgen
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change


def desired_body(p, generation):
    swarm_name, config_name = netgen.names(p["name"], generation)
    tags = netgen.labels(p["name"], generation)
    if p["kind"] == "swarm":
        # No labels: Docker refuses them on a network built ConfigFrom.
        return {"Name": swarm_name, "Driver": "macvlan", "Scope": "swarm", "Attachable": True,
                "ConfigFrom": {"Network": config_name}, "CheckDuplicate": True}
    ipam = {"Subnet": p["subnet"]}
    if p["gateway"]:
        ipam["Gateway"] = p["gateway"]
    if p["ip_range"]:
        ipam["IPRange"] = p["ip_range"]
    if p["aux_addresses"]:
        ipam["AuxiliaryAddresses"] = dict(p["aux_addresses"])
    return {"Name": config_name, "Driver": "macvlan", "ConfigOnly": True, "CheckDuplicate": True, "Labels": tags,
            "IPAM": {"Driver": "default", "Config": [ipam]},
            "Options": {"parent": netgen.parent(generation, p["parent"], p["alt_parent"]), "macvlan_mode": "bridge"}}


def comparable(net, kind):
    """The settings we own, from an inspect, a listing or a create body; None if absent.

    Labels are not compared: networks from before generations have none, and
    Docker cannot add them."""
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


def task_networks(task):
    """Network ids a task is attached to (its spec and its live attachments)."""
    ids = {n.get("Target") for n in (task.get("Spec") or {}).get("Networks") or []}
    ids |= {(a.get("Network") or {}).get("ID") for a in task.get("NetworksAttachments") or []}
    return ids - {None}


def service_networks(spec):
    task = spec.get("TaskTemplate") or {}
    return task.get("Networks") or spec.get("Networks") or []


def swap_network(spec, old, new_id):
    """A copy of a service spec with its attachments to any of ``old`` (ids and names) pointing at ``new_id``.

    Aliases and driver options of the first old attachment are kept; the
    deprecated top-level Networks moves into the task template."""
    spec = dict(spec)
    task = dict(spec.get("TaskTemplate") or {})
    networks, placed = [], False
    for attachment in service_networks(spec):
        if attachment.get("Target") in old or attachment.get("Target") == new_id:
            if not placed:
                networks.append(dict(attachment, Target=new_id))
                placed = True
            continue
        networks.append(dict(attachment))
    task["Networks"] = networks
    spec.pop("Networks", None)
    spec["TaskTemplate"] = task
    return spec


class Networks:
    def __init__(self, change, api, sleep=time.sleep, clock=time.monotonic):
        self.change, self.module, self.api = change, change.module, api
        self.p = self.module.params
        self.sleep, self.clock = sleep, clock
        self.moved = []

    def listing(self):
        return self.api.get("/networks") or []

    # -- kind=config ------------------------------------------------------

    def config_query(self, gen):
        gens = netgen.generations(self.listing(), self.p["name"], "config")
        _, config_name = netgen.names(self.p["name"], gen)
        live = gens.get(gen)
        if live is not None and live.get("Name") != config_name:
            live = None
        before = comparable(live, "config")
        want = comparable(desired_body(self.p, gen), "config")
        return {"exists": live is not None, "stale": live is not None and before != want,
                "network": before, "generations": sorted(gens)}

    def ensure(self, kind, gen, live):
        """Create the network of ``gen`` of ``kind``, or recreate it if its settings differ."""
        body = desired_body(self.p, gen)
        label = f"{'swarm' if kind == 'swarm' else 'config-only'} network {body['Name']} (generation {gen})"
        before, after = comparable(live, kind), comparable(body, kind)
        if live is not None and before == after:
            return live.get("Id"), before, after
        if live is not None:
            self.change.act(f"remove {label} (settings differ)")
            self.do(f"remove {label}", self.api.delete, f"/networks/{live['Id']}")
        self.change.act(f"create {label}")
        created = self.do(f"create {label}", self.api.post, "/networks/create", body=body)
        return (created or {}).get("Id"), before, after

    def do(self, what, fn, *args, **kwargs):
        try:
            return self.change.write(fn, *args, **kwargs)
        except DockerAPIError as exc:
            raise Failure(what, exc) from exc

    def by_name(self, gens, gen, kind):
        net = gens.get(gen)
        name = netgen.names(self.p["name"], gen)[0 if kind == "swarm" else 1]
        return net if net is not None and net.get("Name") == name else None

    def config_present(self, gen):
        nets = self.listing()
        gens = netgen.generations(nets, self.p["name"], "config")
        live = self.by_name(gens, gen, "config")
        _, config_name = netgen.names(self.p["name"], gen)
        holder = next((n for n in nets if n.get("Name") == config_name and n.get("ConfigOnly")), None)
        if live is None and holder is not None:
            # An older generation left on this node (e.g. unreachable when it
            # was pruned) holds the name this one reuses: replace it. Docker
            # refuses while a swarm network is still built from it.
            old = netgen.generation_of(holder, self.p["name"], "config")
            label = f"config-only network {config_name} (generation {old if old is not None else 'unknown'})"
            self.change.act(f"remove {label}")
            self.do(f"remove {label}", self.api.delete, f"/networks/{holder['Id']}")
            gens.pop(old, None)
        _, before, after = self.ensure("config", gen, live)
        return {"network": after, "before": before, "generations": sorted(set(gens) | {gen})}

    def remove_all(self, kind, gens, which, tolerate=False):
        """Remove the networks of the generations ``which``; the generations left.

        With ``tolerate``, one Docker still uses (a container attached by hand)
        is a warning and stays; the next run tries again."""
        left = set(gens)
        for gen in sorted(which):
            net = gens[gen]
            label = f"{'swarm' if kind == 'swarm' else 'config-only'} network {net['Name']} (generation {gen})"
            try:
                self.do(f"remove {label}", self.api.delete, f"/networks/{net['Id']}")
            except Failure as exc:
                if not tolerate:
                    raise
                self.module.warn(f"{exc}; it is kept until nothing uses it, and removed by a later run")
                continue
            self.change.act(f"remove {label}")
            left.discard(gen)
        return sorted(left)

    def config_pruned(self, gen, keep):
        gens = netgen.generations(self.listing(), self.p["name"], "config")
        _, keep_name = netgen.names(self.p["name"], gen)
        old = {g for g, net in gens.items() if g < gen and g not in keep and net.get("Name") != keep_name}
        return {"generations": self.remove_all("config", gens, old)}

    # -- kind=swarm -------------------------------------------------------

    def swarm_query(self):
        nets = self.listing()
        gens = netgen.generations(nets, self.p["name"], "swarm")
        gen = netgen.current(nets, self.p["name"])
        return gen, {"exists": gen in gens, "stale": False, "network": comparable(gens.get(gen), "swarm"),
                     "generations": sorted(gens)}

    def swarm_present(self, gen):
        gens = netgen.generations(self.listing(), self.p["name"], "swarm")
        new_id, before, after = self.ensure("swarm", gen, self.by_name(gens, gen, "swarm"))
        older = {g: net for g, net in gens.items() if g != gen}
        if older:
            new_name = netgen.names(self.p["name"], gen)[0]
            old_refs = {ref for net in older.values() for ref in (net["Id"], net["Name"])}
            old_ids = {net["Id"] for net in older.values()}
            # Tasks still on an old generation although their spec is not: a
            # move that stopped half way (a paused update) is resumed.
            stuck = {t.get("ServiceID") for t in self.api.get(
                "/tasks", query={"filters": {"desired-state": ["running"]}}) or [] if task_networks(t) & old_ids}
            for service in sorted(self.api.get("/services") or [], key=lambda s: s["Spec"]["Name"]):
                attached = {n.get("Target") for n in service_networks(service["Spec"])} & old_refs
                if attached or service["ID"] in stuck:
                    self.move(service, old_refs, new_id, new_name, older, resume=not attached)
            left = self.remove_all("swarm", gens, set(older), tolerate=True)
        else:
            left = sorted(gens)
        return {"network": after, "before": before, "generations": sorted(set(left) | {gen})}

    def move(self, service, old_refs, new_id, new_name, older, resume=False):
        name = service["Spec"]["Name"]
        targets = {n.get("Target") for n in service_networks(service["Spec"])}
        old_names = sorted({net["Name"] for net in older.values() if resume or {net["Id"], net["Name"]} & targets})
        what = f"move service {name} from {', '.join(old_names)} to {new_name}"
        self.change.act(what)
        self.moved.append(name)
        if self.change.check_mode:
            return
        spec = swap_network(service["Spec"], old_refs, new_id)
        if resume:  # the spec is on the new network already: restart the tasks left behind
            spec["TaskTemplate"]["ForceUpdate"] = int(spec["TaskTemplate"].get("ForceUpdate") or 0) + 1
        # Docker 20.10 rejects a new task once on each node whose old
        # network still holds the overlay's subnet ("Pool overlaps with other
        # one on this address space") and runs it on the retry, when the old
        # task is gone; so this update continues past failures. Parallelism,
        # delay and order stay the service's own; its failure action comes
        # back right after (an update config change restarts no task).
        own = dict(spec.get("UpdateConfig") or {})
        spec["UpdateConfig"] = dict(own, FailureAction="continue")
        self.do(what, self.api.post, f"/services/{service['ID']}/update", body=spec,
                query={"version": service["Version"]["Index"]})
        try:
            self.wait_moved(service["ID"], {net["Id"] for net in older.values()}, new_id)
            if own.get("FailureAction", "pause") != "continue":
                live = self.api.get(f"/services/{service['ID']}")
                restored = dict(live["Spec"], UpdateConfig=dict(live["Spec"].get("UpdateConfig") or {}, **own))
                if "FailureAction" not in own:
                    restored["UpdateConfig"].pop("FailureAction", None)
                self.api.post(f"/services/{service['ID']}/update", body=restored,
                              query={"version": live["Version"]["Index"]})
        except DockerAPIError as exc:
            raise Failure(what, exc) from exc

    def wait_moved(self, service_id, old_ids, new_id):
        """Until the rolling update completed and every task that should run runs on the new network."""
        deadline = self.clock() + self.p["wait_timeout"]
        while True:
            service = self.api.get(f"/services/{service_id}")
            state = (service.get("UpdateStatus") or {}).get("State")
            tasks = self.api.get("/tasks", query={"filters": {"service": [service_id], "desired-state": ["running"]}})
            pending = [t for t in tasks or [] if (t.get("Status") or {}).get("State") != "running"
                       or task_networks(t) & old_ids or new_id not in task_networks(t)]
            if state in ("paused", "rollback_started", "rollback_paused", "rollback_completed"):
                message = (service.get("UpdateStatus") or {}).get("Message") or ""
                raise DockerAPIError(f"the rolling update is {state}" + (f": {message}" if message else ""))
            if state in (None, "completed") and not pending:
                return
            if self.clock() > deadline:
                errors = {(t.get("Status") or {}).get("Err") for t in tasks or []} - {None, ""}
                cause = f"; task errors: {'; '.join(sorted(errors))}" if errors else ""
                raise DockerAPIError(f"{len(pending)} tasks not yet running on the new network after "
                                     f"{self.p['wait_timeout']}s (update state {state}){cause}")
            self.sleep(1)


class Failure(Exception):
    """A step that failed: "Cannot <what>: <cause>"."""

    def __init__(self, what, cause):
        self.what, self.cause = what, cause
        super().__init__(f"Cannot {what}: {cause}")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            kind=dict(type="str", required=True, choices=["config", "swarm"]),
            generation=dict(type="int", default=0),
            keep=dict(type="list", elements="int", default=[]),
            subnet=dict(type="str"),
            gateway=dict(type="str"),
            ip_range=dict(type="str"),
            aux_addresses=dict(type="dict", default={}),
            parent=dict(type="str"),
            alt_parent=dict(type="str"),
            wait_timeout=dict(type="int", default=300),
            socket=dict(type="path", default="/var/run/docker.sock"),
            state=dict(type="str", default="present", choices=["present", "absent", "query", "pruned"]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    change = Change(module)
    needs_settings = p["kind"] == "config" and p["state"] in ("present", "query")
    if needs_settings and not (p["subnet"] and p["parent"]):
        change.fail("converge a config-only network", "subnet and parent are required")
    if p["generation"] < 0:
        change.fail(f"converge network generation {p['generation']}", "generations start at 0")
    p["alt_parent"] = p["alt_parent"] or (f"{p['parent']}-h" if p["parent"] else None)
    nets = Networks(change, DockerAPI(p["socket"]))
    gen = p["generation"]
    out = {}
    try:
        if p["state"] == "query" and p["kind"] == "swarm":
            gen, out = nets.swarm_query()
        elif p["state"] == "query":
            out = nets.config_query(gen)
        elif p["state"] == "present" and p["kind"] == "swarm":
            out = nets.swarm_present(gen)
        elif p["state"] == "present":
            out = nets.config_present(gen)
        elif p["state"] == "pruned" and p["kind"] == "swarm":
            change.fail("prune swarm networks", "state=present with kind=swarm removes older ones")
        elif p["state"] == "pruned":
            out = nets.config_pruned(gen, set(p["keep"]))
        else:
            gens = netgen.generations(nets.listing(), p["name"], p["kind"])
            out = {"generations": nets.remove_all(p["kind"], gens, set(gens))}
    except Failure as exc:
        change.fail(exc.what, exc.cause, moved=nets.moved)
    except DockerAPIError as exc:
        change.fail(f"read the networks of overlay {p['name']}", exc)
    swarm_name, config_name = netgen.names(p["name"], gen)
    before = out.pop("before", out.get("network"))
    change.before = {"generation": gen, "network": before or {}, "moved": []}
    change.after = {"generation": gen, "network": out.get("network") or {}, "moved": nets.moved}
    out.setdefault("generations", [])
    change.exit(**out, moved=nets.moved, generation=gen, config_name=config_name,
                network_name=swarm_name if p["kind"] == "swarm" else config_name)


if __name__ == "__main__":
    main()
