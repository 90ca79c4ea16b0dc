#!/usr/bin/python
"""Ansible module: a swarm service in the Compose Specification's shape (format v2)."""

DOCUMENTATION = r"""
---
module: swarm_service
short_description: Create, update, scale, remove or prune swarm services given in Compose's shape
description:
  - Runs on a manager. O(service) is one service as a compose file writes it (its swarm-relevant part,
    docs/description.md); the module builds the Engine API ServiceSpec that C(docker stack deploy) would
    send for it, reads the live service over the Docker Engine API unix socket and updates it only when
    a field it manages differs. Docker's own defaults never show as a change; fields no Compose key sets
    (such as a C(--force) counter) are kept on update.
  - A change of the image or of any task field is a rolling update that follows the service's
    C(deploy.update_config). A changed replica count only scales.
  - C(state=pruned) removes every service whose name is not in O(keep); with O(stack), only the services
    of that stack (label C(com.docker.stack.namespace)), as C(docker stack deploy --prune) does.
  - Images are never pulled by this module; use images present on every node.
version_added: "1.0.0"
author: Swarmfabric
options:
  name:
    description:
      - Service name; with O(stack), its name in the compose file (the Docker service is C(<stack>_<name>)).
        Required unless O(state=pruned).
    type: str
  state:
    description: C(present), C(absent), or C(pruned) (remove services not in O(keep)).
    type: str
    choices: [present, absent, pruned]
    default: present
  keep:
    description: With O(state=pruned), the Docker names of the services to keep.
    type: list
    elements: str
    default: []
  stack:
    description:
      - The stack the service belongs to. Names and labels are then those C(docker stack deploy) gives
        (C(<stack>_<name>), C(com.docker.stack.namespace), the name in the file as a network alias).
    type: str
  service:
    description:
      - The service in Compose's shape (C(image), C(command), C(environment), C(secrets), C(configs),
        C(volumes), C(ports), C(networks), C(deploy), C(healthcheck), ...). Required with O(state=present).
      - A network that is an overlay of the fabric means that overlay's current network generation (its
        newest swarm network, see M(swarm_network)); any other name is a swarm-scope network looked up as
        is. A missing network is an error, except in check mode, where it shows as a change.
      - Docker refuses at task start the sysctls that are not per container; the description's
        validation checks that first. Sysctls need Engine API 1.40 (Docker 19.03) or later.
    type: dict
  mesh:
    description:
      - The fabric's mesh publishes the service's ports (docs/mesh.md). Docker's EndpointSpec then gets none
        of them (its ingress would claim the same ports); they still show in RV(changes) and the diff.
    type: bool
    default: false
  secrets:
    description:
      - The Docker name of each secret the service names (its source), such as the versioned names
        M(swarm_object) returns. A secret not given is looked up under its own name (with O(stack),
        C(<stack>_<name>)).
    type: dict
    default: {}
  configs:
    description: The Docker name of each config the service names, as O(secrets).
    type: dict
    default: {}
  volumes:
    description: The Docker name of each named volume the service mounts, where it differs from the name.
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
  - module: swarm_object
  - module: swarm_cluster
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: A web service, pasted from a compose file
  swarm_service:
    name: web
    service:
      image: swarmfabric/task:1
      command: [sh, -c, "exec httpd -f -p 80 -h /www"]
      networks: [appnet]
      ports: ["8080:80"]
      # Keepalives before the mesh's idle timeouts (docs/mesh.md, Idle connections).
      sysctls: {net.ipv4.tcp_keepalive_time: 600}
      deploy:
        replicas: 3
        update_config: {parallelism: 1, delay: 2s, order: start-first}

- name: Remove the services of stack shop that its file no longer has
  swarm_service:
    state: pruned
    stack: shop
    keep: [shop_app, shop_kv]
"""

RETURN = r"""
service_id:
  description: Id of the service, empty when absent (or only planned in check mode).
  returned: when state is present or absent
  type: str
changes:
  description:
    - The fields that differ, each with its live and desired value, in the description's words (Compose's
      field names and values, networks by name, secrets by name and Docker name). An environment value
      is never shown, only that it changed. C(before) is null for every field of a service that is
      created; the diff then shows no "before" at all.
  returned: always
  type: dict
  sample:
    deploy.replicas: {before: 3, after: 5}
    deploy.update_config.delay: {before: 5s, after: 10s}
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

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric import compose, netgen
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError, version_tuple
from ansible.module_utils.swarmfabric.module import Change

# The first Engine API version that keeps TaskTemplate.ContainerSpec.Sysctls (Docker 19.03).
SYSCTLS_API = (1, 40)
# The service label that keeps the fields of the last converge, in the description's words, so that
# the next change is shown in them.
FIELDS_LABEL = "io.swarmfabric.fields"
HIDDEN = "(hidden)"

# The parts of a ServiceSpec that Compose's keys set (compose.service_spec); the rest is Docker's.
SPEC_KEYS = ("Name", "Labels", "UpdateConfig", "RollbackConfig", "EndpointSpec")
TASK_KEYS = ("Resources", "RestartPolicy", "Placement", "Networks", "LogDriver")
CONTAINER_KEYS = ("Image", "Command", "Args", "Env", "Dir", "User", "Hostname", "Init", "ReadOnly", "Labels",
                  "Mounts", "Secrets", "Configs", "Healthcheck", "StopGracePeriod", "StopSignal", "CapabilityAdd",
                  "CapabilityDrop", "Sysctls", "Ulimits", "DNSConfig", "Hosts")
# Values the daemon means when a field is left out.
DEFAULTS = {("UpdateConfig", "FailureAction"): "pause", ("UpdateConfig", "Order"): "stop-first",
            ("RollbackConfig", "FailureAction"): "pause", ("RollbackConfig", "Order"): "stop-first",
            ("EndpointSpec", "Mode"): "vip", ("RestartPolicy", "Condition"): "any"}


def _pruned(value):
    """A value without its empty parts: Docker drops empty lists and maps, zeros and false."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "", 0, False)}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def managed(spec):
    """The parts of a ServiceSpec the module manages, in one normal form (live and desired alike)."""
    spec = spec or {}
    task = spec.get("TaskTemplate") or {}
    container = dict(task.get("ContainerSpec") or {})
    # The CLI pins images by digest; compare the reference only.
    container["Image"] = (container.get("Image") or "").split("@", 1)[0]
    view = {key: spec.get(key) for key in SPEC_KEYS}
    view["Labels"] = dict(spec.get("Labels") or {})
    view.update({key: task.get(key) for key in TASK_KEYS})
    view["Networks"] = sorted(task.get("Networks") or spec.get("Networks") or [], key=lambda n: n.get("Target", ""))
    view["ContainerSpec"] = {key: container.get(key) for key in CONTAINER_KEYS}
    endpoint = dict(view["EndpointSpec"] or {})
    if endpoint.get("Ports"):
        endpoint["Ports"] = sorted(({"Protocol": "tcp", "PublishMode": "ingress", **p} for p in endpoint["Ports"]),
                                   key=lambda p: json.dumps(p, sort_keys=True))
    view["EndpointSpec"] = endpoint
    for (part, key), default in DEFAULTS.items():
        if (view.get(part) or {}).get(key) == default:
            view[part] = {k: v for k, v in view[part].items() if k != key}
    view = _pruned(view)
    view["Mode"] = mode_of(spec)
    return view


def mode_of(spec):
    """(mode, replicas) of a ServiceSpec, Docker's defaults filled in."""
    mode = (spec or {}).get("Mode") or {"Replicated": {}}
    if "Global" in mode:
        return ["global", None]
    if "GlobalJob" in mode:
        return ["global-job", None]
    if "ReplicatedJob" in mode:
        return ["replicated-job", (mode["ReplicatedJob"] or {}).get("TotalCompletions", 1)]
    return ["replicated", (mode.get("Replicated") or {}).get("Replicas", 1)]


def differing(before, after, prefix=""):
    """The paths (a.b.c) where two managed views differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        paths = []
        for key in sorted(set(before) | set(after)):
            paths += differing(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else key)
        return paths
    return [] if before == after else [prefix]


def shown(fields):
    """Fields as a diff shows them: an environment value never."""
    return {key: HIDDEN if key.startswith("environment.") and value is not None else value
            for key, value in fields.items()}


def describe(name, changes):
    """One action line per kind of change."""
    if not changes:
        return []
    if set(changes) == {"deploy.replicas"}:
        replicas = changes["deploy.replicas"]
        return [f"scaled {name} from {replicas['before']} to {replicas['after']} replicas"]
    if "image" in changes:
        return [f"rolling update of {name} to {changes['image']['after']} (changed: {', '.join(sorted(changes))})"]
    return [f"updated {name} ({', '.join(sorted(changes))})"]


class Services:
    def __init__(self, change, api):
        self.change, self.module, self.api = change, change.module, api

    def find(self, name):
        for service in self.api.get("/services", query={"filters": {"name": [name]}}) or []:
            if (service.get("Spec") or {}).get("Name") == name:
                return service
        return None

    def current_generation(self, name):
        """The id of the fabric's current network of overlay ``name`` (its newest generation), or None."""
        nets = self.api.get("/networks", query={"filters": {"driver": ["macvlan"]}}) or []
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
        return ids

    def objects(self, kind, service, names, stack):
        """{source: {'name': Docker name, 'id': ID}} of the secrets or configs a service names. One that
        does not exist yet is only a change in check mode (swarm_object creates it first in a real run)."""
        found = {}
        for item in service.get(kind) or ():
            source = item if isinstance(item, str) else item.get("source")
            name = names.get(source) or (f"{stack}_{source}" if stack else source)
            listed = [obj for obj in self.api.get(f"/{kind}", query={"filters": {"name": [name]}}) or []
                      if (obj.get("Spec") or {}).get("Name") == name]
            if listed:
                found[source] = {"name": name, "id": listed[0]["ID"]}
            elif self.change.check_mode:
                found[source] = {"name": name}
            else:
                raise DockerAPIError(f"{kind[:-1]} {name!r} does not exist")
        return found

    def desired(self, name, stack):
        """(Docker name, ServiceSpec, fields) of the service the options describe."""
        params = self.module.params
        service = params["service"]
        attached = compose.networks(service)
        ids = self.network_ids(list(attached))
        secrets = self.objects("secrets", service, params["secrets"], stack)
        configs = self.objects("configs", service, params["configs"], stack)
        docker = {key: value for key, value in service.items() if key != "ports"} if params["mesh"] else service
        spec = compose.service_spec(name, docker, networks=ids, secrets=secrets, configs=configs,
                                    volumes=params["volumes"], stack=stack)
        fields = compose.service_fields(service)
        for kind, objects in (("secrets", secrets), ("configs", configs)):
            for source, obj in objects.items():
                fields[f"{kind}.{source}.name"] = obj["name"]
        spec["Labels"] = {**spec.get("Labels", {}), FIELDS_LABEL: json.dumps(fields, sort_keys=True,
                                                                             separators=(",", ":"))}
        if spec["TaskTemplate"]["ContainerSpec"].get("Sysctls") and \
                version_tuple(self.api.api_version) < SYSCTLS_API:
            # Older daemons drop the field without a word: every run would be a change.
            raise DockerAPIError(f"sysctls need Docker Engine API 1.40 or later; the daemon speaks "
                                 f"{self.api.api_version}")
        return spec["Name"], spec, fields

    def wait(self, service_id, spec, previous=None):
        """Wait for the tasks of ``spec``. ``previous`` is the service's UpdateStatus before an update
        that restarts its tasks: Docker sets the new one only when its updater starts, so until then
        the old status (and the old tasks) must not count as the end of this update."""
        params = self.module.params
        mode, replicas = mode_of(spec)
        if self.change.check_mode or not params["wait"] or mode.endswith("-job"):
            return
        deadline = time.monotonic() + params["wait_timeout"]
        while True:
            service = self.api.get(f"/services/{service_id}")
            status = service.get("UpdateStatus") or {}
            state = status.get("State", "completed")
            if previous is not None and status.get("StartedAt") == previous.get("StartedAt"):
                state = "not started"
            tasks = self.api.get("/tasks", query={"filters": {"service": [service_id]}}) or []
            live = [t for t in tasks if (t.get("Status") or {}).get("State") == "running"]
            running = [t for t in live if t.get("DesiredState", "running") == "running"]
            # A replaced task that still runs (its stop grace period): the mesh would still count it.
            stopping = [t for t in live if t.get("DesiredState", "running") != "running"]
            enough = mode == "global" or len(running) >= replicas
            if state in ("completed", "rollback_completed") and enough and not stopping:
                return
            if state in ("paused", "rollback_paused") or time.monotonic() > deadline:
                errors = {(t.get("Status") or {}).get("Err") for t in tasks
                          if t.get("DesiredState", "running") == "running"} - {None, ""}
                cause = f"; task errors: {'; '.join(sorted(errors))}" if errors else ""
                raise DockerAPIError(
                    f"{len(running)} tasks running (want {replicas or 'one per node'}),"
                    f" update state {state}, after {params['wait_timeout']}s{cause}"
                )
            time.sleep(1)

    def present(self, name, stack):
        docker_name, spec, fields = self.desired(name, stack)
        service = self.find(docker_name)
        if service is None:
            mode, replicas = mode_of(spec)
            what = f"{mode}, {replicas} replicas" if replicas is not None else mode
            image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
            created = self.change.act(f"created {docker_name} ({what}, image {image})", self.create, spec)
            return {"service_id": created or "",
                    "changes": {key: {"before": None, "after": value} for key, value in shown(fields).items()}}
        live = service["Spec"]
        if mode_of(live)[0] != mode_of(spec)[0]:
            raise DockerAPIError(
                f"deploy.mode changes from {mode_of(live)[0]} to {mode_of(spec)[0]}; Docker can't change a "
                "service's mode in place, remove the service first"
            )
        paths = differing(managed(live), managed(spec))
        if not paths:
            return {"service_id": service["ID"], "changes": {}}
        try:
            before = json.loads((live.get("Labels") or {}).get(FIELDS_LABEL, ""))
        except ValueError:
            before = None
        if isinstance(before, dict):
            changes = {key: {"before": old, "after": new}
                       for key, old, new in compose.diff_fields(shown(before), shown(fields))}
            for key, old, new in compose.diff_fields(before, fields):
                if key.startswith("environment.") and old is not None and new is not None:
                    changes[key] = {"before": HIDDEN, "after": f"{HIDDEN}, changed"}
        else:
            changes = {}
        if not changes:
            # Changed outside Swarmfabric (docker service update), or converged before the fields label.
            changes = {"spec": {"before": "differs from the description in " + ", ".join(paths),
                                "after": "as described"}}
        for text in describe(docker_name, changes):
            self.change.act(text)
        self.change.write(self.update, service, spec)
        return {"service_id": service["ID"], "changes": changes}

    def create(self, spec):
        service_id = self.api.post("/services/create", body=spec)["ID"]
        self.wait(service_id, spec)
        return service_id

    def update(self, service, spec):
        """The desired spec over the live one: what no Compose key sets (ForceUpdate, Privileges...) stays."""
        live = service["Spec"]
        body = {key: value for key, value in live.items() if key not in (*SPEC_KEYS, "Mode", "Networks")}
        body.update(spec)
        task = {key: value for key, value in (live.get("TaskTemplate") or {}).items() if key not in TASK_KEYS}
        task.update(spec["TaskTemplate"])
        container = {key: value for key, value in ((live.get("TaskTemplate") or {}).get("ContainerSpec") or {}).items()
                     if key not in CONTAINER_KEYS}
        container.update(spec["TaskTemplate"]["ContainerSpec"])
        task["ContainerSpec"] = container
        body["TaskTemplate"] = task
        self.api.post(f"/services/{service['ID']}/update", body=body, query={"version": service["Version"]["Index"]})
        rolls = managed({"TaskTemplate": live.get("TaskTemplate")}) != managed({"TaskTemplate": spec["TaskTemplate"]})
        self.wait(service["ID"], spec, previous=(service.get("UpdateStatus") or {}) if rolls else None)

    def remove(self, service):
        self.change.act(f"removed {service['Spec']['Name']}", self.api.delete, f"/services/{service['ID']}")

    def absent(self, name):
        service = self.find(name)
        if service is None:
            return {"service_id": "", "changes": {}}
        self.remove(service)
        return {"service_id": service["ID"], "changes": {"state": {"before": "present", "after": "absent"}}}

    def pruned(self, keep, stack):
        removed = []
        for service in sorted(self.api.get("/services") or [], key=lambda s: s["Spec"]["Name"]):
            spec = service["Spec"]
            if stack and (spec.get("Labels") or {}).get(compose.STACK_NAMESPACE) != stack:
                continue
            if spec["Name"] not in keep:
                self.remove(service)
                removed.append(spec["Name"])
        return {"removed": removed, "changes": {name: {"before": "present", "after": "absent"} for name in removed}}


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent", "pruned"], "default": "present"},
            "keep": {"type": "list", "elements": "str", "default": []},
            "stack": {"type": "str"},
            "service": {"type": "dict"},
            "mesh": {"type": "bool", "default": False},
            "secrets": {"type": "dict", "default": {}},
            "configs": {"type": "dict", "default": {}},
            "volumes": {"type": "dict", "default": {}},
            "wait": {"type": "bool", "default": True},
            "wait_timeout": {"type": "int", "default": 120},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        required_if=[("state", "present", ("name", "service")), ("state", "absent", ("name",))],
        supports_check_mode=True,
    )
    params = module.params
    state, name, stack = params["state"], params["name"], params["stack"]
    full = f"{stack}_{name}" if stack and name else name
    what = {"present": f"converge service {full}", "absent": f"remove service {full}", "pruned": "prune services"}
    change = Change(module)
    services = Services(change, DockerAPI(params["socket"]))
    try:
        if state == "present":
            result = services.present(name, stack)
        elif state == "absent":
            result = services.absent(full)
        else:
            result = services.pruned(set(params["keep"]), stack)
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
