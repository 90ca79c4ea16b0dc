#!/usr/bin/python
"""Ansible module: swarm secrets and configs, versioned by content so that services roll."""

DOCUMENTATION = r"""
---
module: swarm_object
short_description: Versioned swarm secrets and configs that roll the services using them
description:
  - Runs on a manager, over the Docker Engine API unix socket. Docker cannot change a secret or a config
    (moby/moby#29882), so each content is its own object, named C(<name>-<version>), where the version is
    the first 12 hex digits of HMAC-SHA256 (key O(version_key)) of the kind, the name and the content
    (plain SHA-256 without a key). A service that references the new name rolls; the old object is
    removed by O(state=pruned) (or O(state=absent)) once no service references it.
  - Objects this module creates carry the labels C(io.swarmfabric.object=<name>) and
    C(io.swarmfabric.version=<version>). Objects without them (the user's own) are never touched.
  - The content is never returned, shown in a diff or put in a message.
version_added: "1.0.0"
author: Swarmfabric
options:
  kind:
    description: C(secret) or C(config).
    type: str
    choices: [secret, config]
    required: true
  state:
    description:
      - C(present) (the object of this content exists), C(absent) (remove every version of O(name)),
        or C(pruned) (remove the versions no service uses, see O(keep) and O(current)).
      - C(absent) fails, removing nothing, while a service uses a version of O(name).
    type: str
    choices: [present, absent, pruned]
    default: present
  name:
    description:
      - The logical name, the C(<name>) of C(<name>-<version>). Letters, digits, C(-), C(_) and C(.),
        starting and ending with a letter or digit; at most 51 characters (Docker's 64 with the suffix).
      - With O(external), the exact name of the existing object (at most 64 characters).
      - Required unless O(state=pruned).
    type: str
  data:
    description:
      - The content, base64-encoded (the C(b64encode) filter). Required with O(state=present) unless
        O(external).
      - Docker refuses empty content.
    type: str
  external:
    description:
      - The object named exactly O(name) (no version) was created outside Swarmfabric and must exist.
        Nothing is created; the module returns its id, or fails when it does not exist (in check mode too).
        O(data) must not be given.
      - Only used with O(state=present).
    type: bool
    default: false
  version_key:
    description:
      - Key of the version's HMAC. Anyone who can list secrets sees their names, so without a key a
        guessable secret can be found from its version; give secrets one. Changing it renames (and so
        rolls) every object it versions.
    type: str
    default: ''
  labels:
    description:
      - Extra labels of the object (for example C(com.docker.stack.namespace)). Only used when it is
        created; a label change alone is not a change. C(io.swarmfabric.object) and
        C(io.swarmfabric.version) are the module's own.
    type: dict
    default: {}
  keep:
    description: With O(state=pruned), the logical names whose objects named in O(current) are kept.
    type: list
    elements: str
    default: []
  current:
    description:
      - With O(state=pruned), the Docker names (C(<name>-<version>)) just converged, kept even when no
        service references them yet, if their logical name is in O(keep).
    type: list
    elements: str
    default: []
attributes:
  diff_mode:
    support: full
    description:
      - Shows, for each C(<kind> <name>), the Docker name (or, with O(state=absent) or O(state=pruned), the
        sorted Docker names) before and after; never the content.
notes:
  - A version is kept while a service's current spec references it (by id or name). Tasks of an update
    still in progress, or a later C(docker service rollback), may still want an older version; prune after
    the services converged.
seealso:
  - module: swarm_service
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: The database password, versioned
  swarm_object:
    kind: secret
    name: db_password
    data: "{{ db_password | b64encode }}"
    version_key: "{{ swarmfabric_object_key }}"
    labels: {com.docker.stack.namespace: shop}
  register: db_password
  no_log: true

- name: A secret made with docker secret create
  swarm_object:
    kind: secret
    name: tls_key
    external: true

- name: Remove the versions no service uses any more
  swarm_object:
    kind: secret
    state: pruned
    keep: [db_password]
    current: ["{{ db_password.docker_name }}"]
"""

RETURN = r"""
docker_name:
  description: The object's Docker name, C(<name>-<version>) (with O(external), O(name) itself).
  returned: when state is present
  type: str
  sample: db_password-1a2b3c4d5e6f
id:
  description: The object's id; empty in check mode when it would be created.
  returned: when state is present
  type: str
version:
  description: The content's version (12 hex digits); empty with O(external).
  returned: when state is present
  type: str
  sample: 1a2b3c4d5e6f
removed:
  description: Docker names of the objects removed (or that would be), sorted.
  returned: when state is absent or pruned
  type: list
  elements: str
kept:
  description:
    - Objects of ours that were kept, by Docker name, each with the services that use it (sorted; empty
      for an object kept only by O(current)).
  returned: when state is pruned
  type: dict
  sample: {db_password-1a2b3c4d5e6f: [web]}
actions:
  description: What was done (or would be done in check mode).
  returned: always
  type: list
  elements: str
  sample: ["created secret db_password-1a2b3c4d5e6f"]
"""

import base64
import binascii
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.module import Change
from ansible.module_utils.swarmfabric.objects import (
    LABEL_OBJECT,
    LABEL_VERSION,
    MAX_DOCKER_NAME,
    docker_name,
    name_problem,
    version,
)

HIDDEN = "********"


def decode(data):
    """The content's bytes from its base64 (whitespace ignored); a message never quotes it."""
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("data is not valid base64") from None


def scrub(text, hidden):
    """``text`` with every one of ``hidden`` (the content, in each form, and the key) masked."""
    for value in sorted((v for v in hidden if v), key=len, reverse=True):
        text = text.replace(value, HIDDEN)
    return text


def secret_forms(params):
    """Every form in which the content or the key could be echoed back."""
    forms = [params.get("version_key") or ""]
    data = params.get("data")
    if data:
        forms.append(data)
        try:
            raw = decode(data)
        except ValueError:
            return forms
        forms.append(base64.b64encode(raw).decode("ascii"))
        forms.append(raw.decode("utf-8", errors="replace"))
    return [form for form in forms if form.strip()]


class Objects:
    """The secrets (or configs) of one swarm: ``kind`` is ``secret`` or ``config``."""

    def __init__(self, change, api, kind):
        self.change, self.api, self.kind = change, api, kind
        self.path = f"/{kind}s"
        self.field = kind.capitalize()  # ContainerSpec.Secrets[].SecretID, .Configs[].ConfigName

    def listed(self, filters):
        return self.api.get(self.path, query={"filters": filters}) or []

    def find(self, name):
        """The object named exactly ``name`` (Docker's name filter matches prefixes), or None."""
        for obj in self.listed({"name": [name]}):
            if (obj.get("Spec") or {}).get("Name") == name:
                return obj
        return None

    def ours(self, name=None):
        """Objects with our label (of logical name ``name``), checked here, not only by the daemon's filter."""
        label = LABEL_OBJECT if name is None else f"{LABEL_OBJECT}={name}"
        found = []
        for obj in self.listed({"label": [label]}):
            labels = (obj.get("Spec") or {}).get("Labels") or {}
            if LABEL_OBJECT in labels and (name is None or labels[LABEL_OBJECT] == name):
                found.append(obj)
        return sorted(found, key=lambda obj: obj["Spec"]["Name"])

    def users(self):
        """Each reference (an id or a name) of this kind -> the services whose spec has it."""
        refs = {}
        for service in self.api.get("/services") or []:
            spec = service.get("Spec") or {}
            container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
            for ref in container.get(f"{self.field}s") or []:
                for key in (f"{self.field}ID", f"{self.field}Name"):
                    if ref.get(key):
                        refs.setdefault(ref[key], set()).add(spec.get("Name") or service.get("ID"))
        return refs

    @staticmethod
    def used_by(obj, refs):
        return sorted(refs.get(obj.get("ID"), set()) | refs.get(obj["Spec"]["Name"], set()))

    def remove(self, obj):
        self.change.act(f"removed {self.kind} {obj['Spec']['Name']}", self.api.delete, f"{self.path}/{obj['ID']}")

    def key(self, name):
        return f"{self.kind} {name}"

    def present(self, name, raw, key, labels):
        wanted = docker_name(self.kind, name, raw, key)
        ver = version(self.kind, name, raw, key)
        self.change.after = {self.key(name): wanted}
        obj = self.find(wanted)
        if obj is not None:
            self.change.before = dict(self.change.after)
            return {"docker_name": wanted, "id": obj["ID"], "version": ver}
        body = {"Name": wanted, "Data": base64.b64encode(raw).decode("ascii"),
                "Labels": {**labels, LABEL_OBJECT: name, LABEL_VERSION: ver}}
        created = self.change.act(f"created {self.kind} {wanted}", self.api.post, f"{self.path}/create", body=body)
        return {"docker_name": wanted, "id": (created or {}).get("ID", ""), "version": ver}

    def external(self, name):
        obj = self.find(name)
        if obj is None:
            raise LookupError(f"it does not exist (create it with docker {self.kind} create, or drop external)")
        self.change.before = self.change.after = {self.key(name): name}
        return {"docker_name": name, "id": obj["ID"], "version": ""}

    def absent(self, name):
        objs = self.ours(name)
        if not objs:
            return {"removed": []}
        refs = self.users()
        busy = sorted({service for obj in objs for service in self.used_by(obj, refs)})
        if busy:
            raise LookupError(f"still used by service(s) {', '.join(busy)}")
        self.change.before = {self.key(name): [obj["Spec"]["Name"] for obj in objs]}
        for obj in objs:
            self.remove(obj)
        return {"removed": [obj["Spec"]["Name"] for obj in objs]}

    def pruned(self, keep, current):
        objs = self.ours()
        refs = self.users() if objs else {}
        removed, kept = [], {}
        for obj in objs:
            logical, name = obj["Spec"]["Labels"][LABEL_OBJECT], obj["Spec"]["Name"]
            services = self.used_by(obj, refs)
            if services or (logical in keep and name in current):
                kept[name] = services
            else:
                removed.append(name)
        before, after = {}, {}
        for obj in objs:
            logical, name = obj["Spec"]["Labels"][LABEL_OBJECT], obj["Spec"]["Name"]
            before.setdefault(self.key(logical), []).append(name)
            if name in kept:
                after.setdefault(self.key(logical), []).append(name)
        self.change.before, self.change.after = before, after
        for obj in objs:
            if obj["Spec"]["Name"] in removed:
                self.remove(obj)
        return {"removed": sorted(removed), "kept": kept}


def converge(objects, params):
    """The result of one run; ValueError, LookupError and DockerAPIError are its failures."""
    kind, name, state = params["kind"], params["name"], params["state"]
    if state == "pruned":
        return objects.pruned(set(params["keep"]), set(params["current"]))
    if state == "absent":
        return objects.absent(name)
    if params["external"]:
        if params["data"] is not None:
            raise ValueError(f"data is given, but an external {kind}'s content is made outside (drop data or external)")
        problem = name_problem(name, MAX_DOCKER_NAME)
        if problem:
            raise ValueError(problem)
        return objects.external(name)
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    if params["data"] is None:
        raise ValueError("data is required with state=present (or set external)")
    raw = decode(params["data"])
    if not raw:
        raise ValueError(f"data is empty; Docker refuses an empty {kind}")
    labels = {str(k): str(v) for k, v in (params["labels"] or {}).items()}
    own = sorted({LABEL_OBJECT, LABEL_VERSION} & set(labels))
    if own:
        raise ValueError(f"labels {', '.join(own)} are the module's own")
    return objects.present(name, raw, params["version_key"] or "", labels)


def main():
    module = AnsibleModule(
        argument_spec={
            "kind": {"type": "str", "choices": ["secret", "config"], "required": True},
            "state": {"type": "str", "choices": ["present", "absent", "pruned"], "default": "present"},
            "name": {"type": "str"},
            "data": {"type": "str", "no_log": True},
            "external": {"type": "bool", "default": False},
            "version_key": {"type": "str", "no_log": True, "default": ""},
            "labels": {"type": "dict", "default": {}},
            "keep": {"type": "list", "elements": "str", "default": []},
            "current": {"type": "list", "elements": "str", "default": []},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        required_if=[("state", "present", ("name",)), ("state", "absent", ("name",))],
        supports_check_mode=True,
    )
    params = module.params
    kind, name, state = params["kind"], params["name"], params["state"]
    if state == "pruned":
        what = f"prune {kind}s"
    elif state == "absent":
        what = f"remove {kind} {name}"
    elif params["external"]:
        what = f"use external {kind} {name}"
    else:
        what = f"converge {kind} {name}"
    change = Change(module)
    try:
        result = converge(Objects(change, DockerAPI(params["socket"]), kind), params)
    except (DockerAPIError, ValueError, LookupError) as exc:
        # A daemon may quote what it was sent: mask the content (and the key) in the message and traceback.
        hidden = secret_forms(params)
        change.fail(what, scrub(str(exc), hidden), exception=scrub(traceback.format_exc(), hidden))
    change.exit(**result)


if __name__ == "__main__":
    main()
