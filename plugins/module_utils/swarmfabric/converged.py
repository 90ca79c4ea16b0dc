"""The controller's side of a converged run (docs/architecture.md, "Converged runs").

A complete converge leaves on every host a stamp: the hash of the run's
inputs for that host and the digests of its live state (hoststate.py). A
later run reads every host once; when every described host answers, and
its inputs hash and every digest equal its stamp, a converge would change
nothing, and the layers are skipped. Any doubt runs them: a host not
reached, no stamp, other inputs, one section that moved.

The inputs of a host: this toolkit's code (roles, modules, plugins,
playbooks), the whole plan and the host's view of it, the variables
(inventory or extra) that override a role default, the versions of the
secrets' and configs' contents (as Docker names them) and a keyed
fingerprint of the fabric secret. Variables that do not change what a
converge does (plan_summary, swarmfabric_full) are not inputs, so the plan
step of a pipeline and the converge after it compare equal.
"""

import hashlib
import hmac
import os
import re

from .hoststate import SECTIONS, digest

CODE_DIRS = ("roles", "plugins", "playbooks", "library")
_DEFAULT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):", re.MULTILINE)
_CODE_CACHE = {}


def code_digest(root):
    """SHA-256 over the paths and contents of the toolkit's code under ``root`` (cached per process)."""
    if root not in _CODE_CACHE:
        sha = hashlib.sha256()
        for top in CODE_DIRS:
            for base, dirs, files in os.walk(os.path.join(root, top)):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(files):
                    path = os.path.join(base, name)
                    if name.endswith(".pyc") or not os.path.isfile(path):
                        continue
                    sha.update(os.path.relpath(path, root).encode("utf-8") + b"\0")
                    with open(path, "rb") as handle:
                        sha.update(hashlib.sha256(handle.read()).digest())
        _CODE_CACHE[root] = sha.hexdigest()
    return _CODE_CACHE[root]


def role_variables(root):
    """The names of every role default (the variables an inventory may override)."""
    names = set()
    roles = os.path.join(root, "roles")
    for role in sorted(os.listdir(roles)) if os.path.isdir(roles) else ():
        path = os.path.join(roles, role, "defaults", "main.yml")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                names.update(_DEFAULT.findall(handle.read()))
    return sorted(names)


def secret_fingerprint(secret):
    """A keyed fingerprint of the fabric secret: equal secrets give equal values, and it tells nothing."""
    if not secret:
        return ""
    return hmac.new(str(secret).encode("utf-8"), b"swarmfabric converge inputs", hashlib.sha256).hexdigest()


def inputs_digest(common, host, view, variables):
    """One host's inputs hash: the digest of the run's common inputs, the host's view and its
    overriding variables."""
    return digest({"common": common, "host": host, "view": view, "vars": variables})


def verdict(described, reached, reads, inputs, complete, full=False):
    """Whether the run can skip its layers: {converged, reasons, stampable}.

    ``reads`` maps each reached host to its host_state result; ``inputs`` to its inputs hash.
    ``complete``: the command line runs every task (no tags, no start-at-task, not in check mode).
    ``full``: every layer runs, whatever the reads say.
    """
    missing = [h for h in described if h not in reached]
    stampable = complete and not missing
    if full:
        return {"converged": False, "reasons": ["swarmfabric_full is set"], "stampable": stampable}
    reasons = []
    if missing:
        reasons.append(f"not reached: {', '.join(missing)}")
    for host in described:
        if host in missing:
            continue
        read = reads.get(host) or {}
        stamp = read.get("stamp")
        if not read.get("digests"):
            reasons.append(f"{host}: its live state was not read")
        elif read.get("unread"):
            reasons.append(f"{host}: could not read its live {', '.join(sorted(read['unread']))}")
        elif not stamp:
            reasons.append(f"{host}: no complete converge recorded yet")
        elif stamp.get("inputs") != inputs.get(host):
            reasons.append(f"{host}: the inputs changed since its last complete converge")
        else:
            moved = [s for s in SECTIONS if (stamp.get("digests") or {}).get(s) != read["digests"].get(s)]
            if moved:
                reasons.append(f"{host}: live {', '.join(moved)} moved since its last complete converge")
    return {"converged": not reasons, "reasons": reasons, "stampable": stampable}
