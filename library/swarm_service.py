#!/usr/bin/python
"""Ansible module: a swarm service, compared on the fields Swarmfabric manages."""

DOCUMENTATION = r"""
---
module: swarm_service
short_description: Create, update, scale, remove or prune swarm services
description:
  - Runs on a manager. Reads the live service over the Docker Engine API unix socket and compares
    it with the desired one B(only on the fields this module manages), so Docker's defaults never
    show as a change. Unmanaged fields of a live service are kept on update.
  - A changed image is a rolling update that follows O(update). A changed replica count only scales.
  - C(state=pruned) removes every service whose name is not in O(keep).
  - Images are never pulled by this module; use images present on every node.
version_added: "1.0.0"
author: Swarmfabric
options:
  name:
    description: Service name. Required unless O(state=pruned).
    type: str
  state:
    description: C(present), C(absent), or C(pruned) (remove services not in O(keep)).
    type: str
    choices: [present, absent, pruned]
    default: present
  keep:
    description: With O(state=pruned), the names of the services to keep.
    type: list
    elements: str
    default: []
  image:
    description: Image reference. Required with O(state=present).
    type: str
  command:
    description: Full command line of the task (overrides the image's entrypoint and command).
    type: list
    elements: str
  sysctls:
    description:
      - Namespaced kernel parameters of each task (Compose's C(sysctls)), set exactly; C({}) removes them.
        Values are strings (integers are converted). Engine API C(TaskTemplate.ContainerSpec.Sysctls),
        which needs API 1.40 (Docker 19.03) or later.
      - Docker refuses at task start the sysctls that are not per container (only C(net.*), C(fs.mqueue.*)
        and some C(kernel.*) IPC ones are); the description's validation checks that first.
      - A change restarts the tasks (a rolling update).
    type: dict
    default: {}
  mounts:
    description:
      - Mounts of each task (Engine API C(TaskTemplate.ContainerSpec.Mounts)), set exactly; C([]) removes them.
        Only bind mounts; the source must exist on every node a task may run on.
      - The services role mounts the fabric's resolver file at C(/etc/resolv.conf) this way (docs/dns.md), so that
        Docker writes no resolv.conf of its own into the task.
      - A change restarts the tasks (a rolling update).
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description: Mount type.
        type: str
        choices: [bind]
        default: bind
      source:
        description: Path on the node.
        type: str
        required: true
      target:
        description: Path in the task.
        type: str
        required: true
      read_only:
        description: Mount read-only.
        type: bool
        default: false
  mode:
    description: Scheduling mode.
    type: str
    choices: [replicated, global]
    default: replicated
  replicas:
    description: Number of tasks, for O(mode=replicated).
    type: int
    default: 1
  networks:
    description:
      - Names of the swarm-scope networks the tasks attach to. A name that is an overlay of the
        fabric means that overlay's current network generation (its newest swarm network, see
        M(swarm_network)); any other name is looked up as is.
      - A missing network is an error, except in check mode, where it shows as a change (an earlier
        layer creates it in a real run).
    type: list
    elements: str
    default: []
  endpoint_mode:
    description: Service discovery mode.
    type: str
    choices: [vip, dnsrr]
    default: vip
  publish:
    description: Published ports.
    type: list
    elements: dict
    default: []
    suboptions:
      published:
        description: Port on the nodes.
        type: int
        required: true
      target:
        description: Port in the task.
        type: int
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      mode:
        description: C(ingress) (routing mesh, every node) or C(host) (only nodes running a task).
        type: str
        choices: [ingress, host]
        default: ingress
  update:
    description: Rolling update policy.
    type: dict
    default: {}
    suboptions:
      parallelism:
        description: Tasks updated at once (0 is all at once).
        type: int
        default: 1
      delay:
        description: Pause between batches, a duration such as C(5s), C(1m30s) or C(250ms).
        type: str
        default: 5s
  hosts:
    description: Extra /etc/hosts entries of the tasks, each C(name:ip).
    type: list
    elements: str
    default: []
  labels:
    description: Service labels, set exactly.
    type: dict
    default: {}
  wait:
    description: After a change, wait until the service's tasks run (replicated mode) and any update completes.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait with O(wait).
    type: int
    default: 120
seealso:
  - module: swarm_cluster
  - module: swarm_node
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Web service with an ingress port
  swarm_service:
    name: web
    image: swarmfabric/task:1
    command: [sh, -c, "exec httpd -f -p 80 -h /www"]
    replicas: 3
    # Keepalives before the mesh's idle timeouts (docs/mesh.md, Idle connections).
    sysctls: {net.ipv4.tcp_keepalive_time: 600}
    publish:
      - {published: 8080, target: 80}
    update: {parallelism: 1, delay: 2s}

- name: Remove services that are not described
  swarm_service:
    state: pruned
    keep: [web]
"""

RETURN = r"""
service_id:
  description: Id of the service, empty when absent (or only planned in check mode).
  returned: when state is present or absent
  type: str
changes:
  description:
    - Managed fields that differ, each with its live and desired value, in the description's words
      (networks by name, ports as C(8080:80/tcp), mounts as C(source:target:ro), the update settings
      by name with the delay as a duration, extra hosts as C(name:address)). C(before) is null for
      every field of a service that is created; the diff then shows no "before" at all.
  returned: always
  type: dict
  sample:
    replicas: {before: 3, after: 5}
    update: {before: {parallelism: 1, delay: 5s}, after: {parallelism: 2, delay: 10s}}
removed:
  description: Services removed by C(state=pruned).
  returned: when state is pruned
  type: list
  elements: str
actions:
  description: What was done (or would be done in check mode).
  returned: always
  type: list
  elements: str
  sample: ["scaled web from 3 to 5 replicas"]
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric import duration, netgen
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError, version_tuple
from ansible.module_utils.swarmfabric.module import Change

# The first Engine API version that keeps TaskTemplate.ContainerSpec.Sysctls (Docker 19.03).
SYSCTLS_API = (1, 40)


def duration_ns(text):
    """'1m30s' -> nanoseconds, in the description's one grammar; a bare number is seconds."""
    return duration.to_ns(text)


def hosts_entries(hosts):
    """['name:ip'] -> Docker's ['ip name'] form."""
    entries = []
    for item in hosts:
        name, sep, addr = item.partition(":")
        if not sep or not name or not addr:
            raise ValueError(f"invalid hosts entry {item!r} (use name:ip)")
        entries.append(f"{addr} {name}")
    return entries


def sysctl_values(sysctls):
    """Docker's map of strings; an integer becomes its digits, anything else is refused."""
    values = {}
    for name, value in (sysctls or {}).items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"sysctl {name}: {value!r} is not a string or an integer")
        values[str(name)] = str(value)
    return values


def desired_view(params, network_ids):
    """The managed fields, in the same shape as live_view()."""
    return {
        "image": params["image"],
        "command": list(params["command"] or []),
        "sysctls": sysctl_values(params.get("sysctls")),
        "mounts": sorted((m["target"], m["type"], m["source"], bool(m["read_only"]))
                         for m in params.get("mounts") or []),
        "mode": params["mode"],
        "replicas": params["replicas"] if params["mode"] == "replicated" else None,
        "networks": sorted(network_ids[name] for name in params["networks"]),
        "endpoint_mode": params["endpoint_mode"],
        "publish": sorted((p["published"], p["target"], p["protocol"], p["mode"]) for p in params["publish"]),
        "update": (params["update"]["parallelism"], duration_ns(params["update"]["delay"])),
        "hosts": sorted(hosts_entries(params["hosts"])),
        "labels": {str(k): str(v) for k, v in (params["labels"] or {}).items()},
    }


def live_view(spec):
    task = spec.get("TaskTemplate") or {}
    container = task.get("ContainerSpec") or {}
    mode = spec.get("Mode") or {}
    endpoint = spec.get("EndpointSpec") or {}
    update = spec.get("UpdateConfig") or {}
    return {
        # The CLI pins images by digest; compare the reference only.
        "image": (container.get("Image") or "").split("@", 1)[0],
        "command": list(container.get("Command") or []),
        "sysctls": dict(container.get("Sysctls") or {}),
        "mounts": sorted((m.get("Target"), (m.get("Type") or "").lower(), m.get("Source"), bool(m.get("ReadOnly")))
                         for m in container.get("Mounts") or []),
        "mode": "global" if "Global" in mode else "replicated",
        "replicas": (mode.get("Replicated") or {}).get("Replicas", 1) if "Global" not in mode else None,
        "networks": sorted(n.get("Target") for n in (task.get("Networks") or spec.get("Networks") or [])),
        "endpoint_mode": endpoint.get("Mode") or "vip",
        "publish": sorted(
            (p.get("PublishedPort"), p.get("TargetPort"), p.get("Protocol") or "tcp", p.get("PublishMode") or "ingress")
            for p in endpoint.get("Ports") or []
        ),
        "update": (update.get("Parallelism", 0), update.get("Delay", 0)),
        "hosts": sorted(container.get("Hosts") or []),
        "labels": dict(spec.get("Labels") or {}),
    }


def diff_views(live, want):
    return {key: {"before": live[key], "after": want[key]} for key in want if live.get(key) != want[key]}


def user_view(view, names):
    """A view in the description's words, for changes and diffs: networks by name (``names``:
    network id -> name), Compose's short syntax for ports and mounts, the update settings by
    name and the delay as a duration, extra hosts as ``name:address``."""
    parallelism, delay = view["update"]
    return dict(
        view,
        networks=sorted(names.get(n, n) for n in view["networks"]),
        publish=[f"{pub}:{target}/{proto}" + ("" if mode == "ingress" else f" (mode {mode})")
                 for pub, target, proto, mode in view["publish"]],
        mounts=[f"{source}:{target}" + (":ro" if read_only else "") + ("" if kind == "bind" else f" ({kind})")
                for target, kind, source, read_only in view["mounts"]],
        update={"parallelism": parallelism, "delay": duration.format_ns(delay or 0)},
        hosts=[f"{name}:{address}" if name else address
               for address, _, name in (entry.partition(" ") for entry in view["hosts"])],
    )


def apply_view(spec, want, name):
    """Write the managed fields into a (copy of a live) spec; other fields stay as they are."""
    spec = dict(spec or {})
    spec["Name"] = name
    spec["Labels"] = want["labels"]
    task = dict(spec.get("TaskTemplate") or {})
    container = dict(task.get("ContainerSpec") or {})
    container["Image"] = want["image"]
    if want["command"]:
        container["Command"] = want["command"]
    else:
        container.pop("Command", None)
    if want["sysctls"]:
        container["Sysctls"] = want["sysctls"]
    else:
        container.pop("Sysctls", None)
    if want["mounts"]:
        container["Mounts"] = [{"Type": kind, "Source": source, "Target": target, "ReadOnly": read_only}
                               for target, kind, source, read_only in want["mounts"]]
    else:
        container.pop("Mounts", None)
    container["Hosts"] = want["hosts"]
    task["ContainerSpec"] = container
    task["Networks"] = [{"Target": target} for target in want["networks"]]
    spec.pop("Networks", None)  # deprecated top-level form
    spec["TaskTemplate"] = task
    spec["Mode"] = {"Global": {}} if want["mode"] == "global" else {"Replicated": {"Replicas": want["replicas"]}}
    spec["EndpointSpec"] = {
        "Mode": want["endpoint_mode"],
        "Ports": [
            {"PublishedPort": pub, "TargetPort": target, "Protocol": proto, "PublishMode": mode}
            for pub, target, proto, mode in want["publish"]
        ],
    }
    update = dict(spec.get("UpdateConfig") or {})
    update["Parallelism"], update["Delay"] = want["update"]
    spec["UpdateConfig"] = update
    return spec


def describe(name, changes):
    """One action line per kind of change."""
    if not changes:
        return []
    if set(changes) == {"replicas"}:
        return [f"scaled {name} from {changes['replicas']['before']} to {changes['replicas']['after']} replicas"]
    if "image" in changes:
        return [f"rolling update of {name} to {changes['image']['after']} (changed: {', '.join(sorted(changes))})"]
    return [f"updated {name} ({', '.join(sorted(changes))})"]


class Services:
    def __init__(self, change, api):
        self.change, self.module, self.api = change, change.module, api
        self.network_names = {}  # network id -> name, for changes and diffs

    def find(self, name):
        for service in self.api.get("/services", query={"filters": {"name": [name]}}) or []:
            if (service.get("Spec") or {}).get("Name") == name:
                return service
        return None

    def current_generation(self, name):
        """The id of the fabric's current network of overlay ``name`` (its newest generation), or None."""
        nets = self.api.get("/networks", query={"filters": {"driver": ["macvlan"]}}) or []
        self.network_names.update({net["Id"]: net["Name"] for net in nets if "Id" in net and "Name" in net})
        gens = netgen.generations(nets, name, "swarm")
        return gens[max(gens)]["Id"] if gens else None

    def network_ids(self, names):
        ids = {}
        for name in names:
            # An overlay of the fabric: its network's name changes with each
            # generation (library/swarm_network.py).
            current = self.current_generation(name)
            if current is not None:
                ids[name] = current
                continue
            try:
                network = self.api.get(f"/networks/{name}")
            except DockerAPIError as exc:
                if exc.status == 404 and self.change.check_mode:
                    # The fabric creates it earlier in a real run; a check-mode plan shows the change.
                    ids[name] = f"(network {name}, not created yet)"
                    continue
                if exc.status == 404:
                    raise DockerAPIError(f"network {name!r} does not exist") from None
                raise
            if network.get("Scope") != "swarm":
                raise DockerAPIError(f"network {name!r} is {network.get('Scope')}-scoped, not swarm-scoped")
            ids[name] = network["Id"]
            self.network_names[network["Id"]] = name
        return ids

    def wait(self, service_id, want):
        params = self.module.params
        if self.change.check_mode or not params["wait"]:
            return
        deadline = time.monotonic() + params["wait_timeout"]
        while True:
            service = self.api.get(f"/services/{service_id}")
            state = (service.get("UpdateStatus") or {}).get("State", "completed")
            tasks = self.api.get("/tasks", query={"filters": {"service": [service_id], "desired-state": ["running"]}})
            running = [t for t in tasks if (t.get("Status") or {}).get("State") == "running"]
            enough = want["mode"] == "global" or len(running) >= want["replicas"]
            if state in ("completed", "rollback_completed") and enough:
                return
            if state in ("paused", "rollback_paused") or time.monotonic() > deadline:
                errors = {(t.get("Status") or {}).get("Err") for t in tasks} - {None, ""}
                cause = f"; task errors: {'; '.join(sorted(errors))}" if errors else ""
                raise DockerAPIError(
                    f"{len(running)} tasks running (want {want['replicas'] or 'one per node'}),"
                    f" update state {state}, after {params['wait_timeout']}s{cause}"
                )
            time.sleep(1)

    def present(self, name):
        params = self.module.params
        want = desired_view(params, self.network_ids(params["networks"]))
        if want["sysctls"] and version_tuple(self.api.api_version) < SYSCTLS_API:
            # Older daemons drop the field without a word: every run would be a change.
            raise DockerAPIError(f"sysctls need Docker Engine API 1.40 or later; the daemon speaks "
                                 f"{self.api.api_version}")
        service = self.find(name)
        if service is None:
            text = f"created {name} ({want['mode']}, image {want['image']})"
            created = self.change.act(text, self.create, name, want)
            return {
                "service_id": created or "",
                "changes": {key: {"before": None, "after": value}
                            for key, value in user_view(want, self.network_names).items()},
            }
        live = live_view(service["Spec"])
        if live["mode"] != want["mode"]:
            raise DockerAPIError(
                f"mode changes from {live['mode']} to {want['mode']}; Docker can't change a service's mode "
                "in place, remove the service first"
            )
        changes = diff_views(live, want)
        for text in describe(name, changes):
            self.change.act(text)
        if changes:
            self.change.write(self.update, service, want, name)
        shown = diff_views(user_view(live, self.network_names), user_view(want, self.network_names))
        return {"service_id": service["ID"], "changes": {key: shown[key] for key in changes if key in shown}}

    def create(self, name, want):
        service_id = self.api.post("/services/create", body=apply_view({}, want, name))["ID"]
        self.wait(service_id, want)
        return service_id

    def update(self, service, want, name):
        self.api.post(
            f"/services/{service['ID']}/update",
            body=apply_view(service["Spec"], want, name),
            query={"version": service["Version"]["Index"]},
        )
        self.wait(service["ID"], want)

    def remove(self, service):
        self.change.act(f"removed {service['Spec']['Name']}", self.api.delete, f"/services/{service['ID']}")

    def absent(self, name):
        service = self.find(name)
        if service is None:
            return {"service_id": "", "changes": {}}
        self.remove(service)
        return {"service_id": service["ID"], "changes": {"state": {"before": "present", "after": "absent"}}}

    def pruned(self, keep):
        removed = []
        for service in sorted(self.api.get("/services") or [], key=lambda s: s["Spec"]["Name"]):
            if service["Spec"]["Name"] not in keep:
                self.remove(service)
                removed.append(service["Spec"]["Name"])
        return {"removed": removed, "changes": {name: {"before": "present", "after": "absent"} for name in removed}}


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent", "pruned"], "default": "present"},
            "keep": {"type": "list", "elements": "str", "default": []},
            "image": {"type": "str"},
            "command": {"type": "list", "elements": "str"},
            "sysctls": {"type": "dict", "default": {}},
            "mounts": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "type": {"type": "str", "choices": ["bind"], "default": "bind"},
                    "source": {"type": "str", "required": True},
                    "target": {"type": "str", "required": True},
                    "read_only": {"type": "bool", "default": False},
                },
            },
            "mode": {"type": "str", "choices": ["replicated", "global"], "default": "replicated"},
            "replicas": {"type": "int", "default": 1},
            "networks": {"type": "list", "elements": "str", "default": []},
            "endpoint_mode": {"type": "str", "choices": ["vip", "dnsrr"], "default": "vip"},
            "publish": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "published": {"type": "int", "required": True},
                    "target": {"type": "int", "required": True},
                    "protocol": {"type": "str", "choices": ["tcp", "udp"], "default": "tcp"},
                    "mode": {"type": "str", "choices": ["ingress", "host"], "default": "ingress"},
                },
            },
            "update": {
                "type": "dict",
                "default": {},
                "options": {
                    "parallelism": {"type": "int", "default": 1},
                    "delay": {"type": "str", "default": "5s"},
                },
            },
            "hosts": {"type": "list", "elements": "str", "default": []},
            "labels": {"type": "dict", "default": {}},
            "wait": {"type": "bool", "default": True},
            "wait_timeout": {"type": "int", "default": 120},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        required_if=[("state", "present", ("name", "image")), ("state", "absent", ("name",))],
        supports_check_mode=True,
    )
    params = module.params
    state, name = params["state"], params["name"]
    what = {"present": f"converge service {name}", "absent": f"remove service {name}", "pruned": "prune services"}
    change = Change(module)
    services = Services(change, DockerAPI(params["socket"]))
    try:
        if state == "present":
            result = services.present(name)
        elif state == "absent":
            result = services.absent(name)
        else:
            result = services.pruned(set(params["keep"]))
    except (DockerAPIError, ValueError) as exc:
        change.fail(what[state], exc)
    fields = result["changes"].values()
    # A service that is created has no "before": the diff shows only what it gets.
    created = bool(fields) and all(field["before"] is None for field in fields)
    change.before = {} if created else {key: field["before"] for key, field in result["changes"].items()}
    change.after = {key: field["after"] for key, field in result["changes"].items()}
    change.exit(**result)


if __name__ == "__main__":
    main()
