#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: host_files
short_description: A layer's directories, files and links on a host, in one round trip
description:
  - Takes a host's directories, files (content given, usually rendered on the
    controller) and symbolic links to exactly what O(files) lists, in the order
    listed. It reads each path, plans what differs (content, mode, owner,
    group, link target) and writes only that.
  - A run that changes nothing is one module call, where the
    M(ansible.builtin.file), M(ansible.builtin.copy) and
    M(ansible.builtin.template) tasks it replaces cost one or two round trips
    each.
  - A file is written to a temporary file in its own directory, validated
    (O(files[].validate)), then renamed over the old one, so a reader never
    sees half a file. A link is made under a temporary name and renamed over
    the old path, so two hosts that share a directory can both make it.
  - It manages nothing beyond the listed paths and never removes one.
author: Swarmfabric contributors
options:
  files:
    description: The paths, in the order they are taken care of (directories before what they hold).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description: What the path is.
        type: str
        default: file
        choices: [file, directory, link]
      content:
        description: The file's whole content. Required for O(files[].state=file).
        type: str
      src:
        description: Target of the link. Required for O(files[].state=link).
        type: str
      mode:
        description:
          - Octal permissions as a string (C("0644")). Required for files and
            directories; links have none.
        type: str
      owner:
        description: Owner's user name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
      validate:
        description:
          - A command run on the new content before it replaces the file, with
            C(%s) standing for the temporary file (C(nft -c -f %s)). A
            non-zero exit leaves the old file in place and fails the module.
            Not run in check mode.
        type: str
attributes:
  check_mode:
    support: full
    description: Reads every path and reports what would change, writing nothing (no temporary file either).
  diff_mode:
    support: full
    description:
      - One diff per changed path, the file's content (or the link target, the directory's mode) before and after.
extends_documentation_fragment:
  - swarmfabric
"""

EXAMPLES = r"""
- name: The health responder's directories, program and state
  host_files:
    files:
      - {path: /usr/local/libexec/swarmfabric, state: directory, mode: "0755"}
      - path: /usr/local/libexec/swarmfabric/mesh_health.py
        content: "{{ lookup('ansible.builtin.file', 'mesh_health.py', rstrip=false) }}"
        mode: "0755"
      - path: /etc/swarmfabric/fabric-guard.nft
        content: "{{ lookup('ansible.builtin.template', 'fabric-guard.nft.j2') }}"
        mode: "0600"
        validate: nft -c -f %s
      - {path: /etc/systemd/system/sysinit.target.wants/x.service, state: link, src: /etc/systemd/system/x.service}
  register: __files

- name: Restart when the program changed
  ansible.builtin.debug:
    msg: restart
  when: "'/usr/local/libexec/swarmfabric/mesh_health.py' in __files.changed_paths"
"""

RETURN = r"""
changed:
  description: Whether any path differed (in check mode, would differ).
  returned: always
  type: bool
actions:
  description: What was (or would be) done, one line per path that differed.
  returned: always
  type: list
  elements: str
  sample: ["wrote /run/swarmfabric/mesh-health.json (content)", "directory /etc/swarmfabric (created)"]
changed_paths:
  description: The paths that differed, in the order of O(files).
  returned: always
  type: list
  elements: str
  sample: [/run/swarmfabric/mesh-health.json]
"""

import grp
import os
import pwd
import shlex
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.module import Change, CommandError, Runner


def read(path):
    """The live state of ``path``: its kind, and for each kind what a plan compares."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"state": "absent"}
    live = {"mode": f"{st.st_mode & 0o7777:04o}", "uid": st.st_uid, "gid": st.st_gid}
    if os.path.islink(path):
        return {"state": "link", "src": os.readlink(path)}
    if os.path.isdir(path):
        return {"state": "directory", **live}
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        live["content"] = data.decode("utf-8")
    except UnicodeDecodeError:
        live["content"] = None  # never equal to a str: rewritten
    return {"state": "file", **live}


def ids(spec):
    """(uid, gid) of the spec's owner and group names."""
    try:
        uid = pwd.getpwnam(spec["owner"]).pw_uid
    except KeyError:
        raise ValueError(f"no user {spec['owner']}") from None
    try:
        gid = grp.getgrnam(spec["group"]).gr_gid
    except KeyError:
        raise ValueError(f"no group {spec['group']}") from None
    return uid, gid


def plan(spec, live, uid, gid):
    """What differs between a path's spec and its live state: a list of words ("content", "mode", ...)."""
    kind = spec["state"]
    if live["state"] == "absent":
        return ["created"]
    if live["state"] != kind:
        return [f"was a {live['state']}"]
    if kind == "link":
        return [] if live["src"] == spec["src"] else ["target"]
    wrong = []
    if kind == "file" and live["content"] != spec["content"]:
        wrong.append("content")
    if live["mode"] != spec["mode"]:
        wrong.append("mode")
    if (live["uid"], live["gid"]) != (uid, gid):
        wrong.append("owner")
    return wrong


def write_file(runner, spec, uid, gid):
    """The new content in a temporary file beside the old one, validated, then renamed over it."""
    directory = os.path.dirname(spec["path"])
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(spec['path'])}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(spec["content"].encode("utf-8"))
            os.fchmod(handle.fileno(), int(spec["mode"], 8))
            os.fchown(handle.fileno(), uid, gid)
            handle.flush()
            os.fsync(handle.fileno())
        if spec.get("validate"):
            argv = [temp if word == "%s" else word.replace("%s", temp) for word in shlex.split(spec["validate"])]
            runner.run(argv, what=f"validate {spec['path']} ({spec['validate']})")
        os.replace(temp, spec["path"])
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


def write_link(spec):
    """The link under a name of its own, renamed over the path (atomic, and no race with a sharer)."""
    directory = os.path.dirname(spec["path"])
    temp = os.path.join(directory, f".{os.path.basename(spec['path'])}.{os.getpid()}.{os.urandom(4).hex()}")
    os.symlink(spec["src"], temp)
    try:
        os.replace(temp, spec["path"])
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


def set_attributes(spec, uid, gid):
    """Mode and owner of a path whose content is right, in place."""
    os.chmod(spec["path"], int(spec["mode"], 8))
    os.chown(spec["path"], uid, gid)


def write_directory(spec, live, uid, gid):
    if live["state"] == "absent":
        # Missing parents too, as ansible.builtin.file does (with the umask's mode); another host
        # that shares the directory may make it first.
        os.makedirs(spec["path"], int(spec["mode"], 8), exist_ok=True)
    set_attributes(spec, uid, gid)


def shown(spec_or_live):
    """A path's state as one diff side: the content of a file, the target of a link, a directory's mode."""
    state = spec_or_live["state"]
    if state == "absent":
        return ""
    if state == "link":
        return f"-> {spec_or_live['src']}\n"
    head = f"{state} mode {spec_or_live['mode']}"
    if state == "file":
        return f"# {head}\n{spec_or_live['content'] if spec_or_live['content'] is not None else '(binary)'}"
    return head + "\n"


def check_spec(spec):
    """The spec's own rule: the fields its state needs; a ValueError names what is missing."""
    if not os.path.isabs(spec["path"]):
        raise ValueError("the path is not absolute")
    need = {"file": ("content", "mode"), "directory": ("mode",), "link": ("src",)}[spec["state"]]
    missing = [key for key in need if spec.get(key) is None]
    if missing:
        raise ValueError(f"state {spec['state']} needs {' and '.join(missing)}")
    if spec.get("mode") is not None:
        try:
            int(spec["mode"], 8)
        except ValueError:
            raise ValueError(f"mode {spec['mode']!r} is not an octal string like \"0644\"") from None
        spec["mode"] = f"{int(spec['mode'], 8):04o}"


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "state": {"type": "str", "default": "file", "choices": ["file", "directory", "link"]},
                    "content": {"type": "str"},
                    "src": {"type": "str"},
                    "mode": {"type": "str"},
                    "owner": {"type": "str", "default": "root"},
                    "group": {"type": "str", "default": "root"},
                    "validate": {"type": "str"},
                },
            },
        },
        supports_check_mode=True,
    )
    change = Change(module)
    runner = Runner(module)
    diffs, changed_paths = [], []
    for spec in module.params["files"]:
        path = spec["path"]
        try:
            check_spec(spec)
            uid, gid = ids(spec) if spec["state"] != "link" else (None, None)
            live = read(path)
        except (ValueError, OSError) as exc:
            change.fail(f"manage {path}", exc)
        if live["state"] == "directory" and spec["state"] != "directory":
            change.fail(f"manage {path}", f"it is a directory, not a {spec['state']}")
        wrong = plan(spec, live, uid, gid)
        if not wrong:
            continue
        changed_paths.append(path)
        diffs.append({"before_header": path, "after_header": path, "before": shown(live),
                      "after": shown(spec)})
        verb = {"file": "wrote", "directory": "directory", "link": "linked"}[spec["state"]]
        try:
            if spec["state"] == "file" and "content" not in wrong and live["state"] == "file":
                change.act(f"{verb} {path} ({', '.join(wrong)})", set_attributes, spec, uid, gid)
            elif spec["state"] == "file":
                change.act(f"{verb} {path} ({', '.join(wrong)})", write_file, runner, spec, uid, gid)
            elif spec["state"] == "link":
                change.act(f"{verb} {path} -> {spec['src']} ({', '.join(wrong)})", write_link, spec)
            else:
                change.act(f"{verb} {path} ({', '.join(wrong)})", write_directory, spec, live, uid, gid)
        except CommandError as exc:
            change.fail(f"write {path}", exc.cause, changed_paths=changed_paths[:-1])
        except OSError as exc:
            change.fail(f"write {path}", exc, changed_paths=changed_paths[:-1])
    change.diffs = diffs
    change.exit(changed_paths=changed_paths)


if __name__ == "__main__":
    main()
