"""Helpers for the mesh integration tests: network namespaces named sf-mesh-*
and modules run by ansible inside them against the real kernel."""

import json
import os
import pathlib
import subprocess
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE = str(pathlib.Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible")


def sh(*argv, ns=None, check=True, data=None):
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run(prefix + list(argv), input=data, capture_output=True, text=True, check=check)


def new_ns(tag):
    name = f"sf-mesh-{tag}-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", ns=name)
    return name


def del_ns(name):
    sh("ip", "netns", "del", name, check=False)


def ruleset(ns):
    return sh("nft", "list", "ruleset", ns=ns).stdout


def run_module(ns, module, args, check=False, diff=False):
    """Run one module on localhost inside `ns`; return its result dict."""
    argv = [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-m", module, "-a", json.dumps(args)]
    argv += ["--check"] * check + ["--diff"] * diff
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"}
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=False)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"ansible gave no JSON: {proc.stdout}\n{proc.stderr}") from exc
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]
