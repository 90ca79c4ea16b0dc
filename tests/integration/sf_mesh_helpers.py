"""Helpers for the mesh integration tests: network namespaces named sf-mesh-*
and modules run by ansible inside them against the real kernel."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The one-node description the netns mesh tests converge: a container service
# and a static one, both with a VIP and an ingress port.
SWARM = {
    "name": "t", "managers": ["node1"], "nodes": {"node1": {"slot": 17}},
    "overlays": {"appnet": {"vni": 300, "subnet": "10.20.0.0/16", "encrypted": False}},
    "services": {
        "web": {"image": "swarmfabric/task:1", "deploy": {"replicas": 2}, "networks": ["appnet"],
                "ports": [{"published": 8080, "target": 80}], "x-swarmfabric": {"vip": "10.20.255.10"}},
        "static": {"networks": ["appnet"], "ports": [{"published": 8081, "target": 80}],
                   "x-swarmfabric": {"backends": ["10.20.50.5:80"], "vip": "10.20.255.11"}},
    },
    "mesh": {"backend": "nftables", "scheduler": "rr"},
}
ANSIBLE = str(pathlib.Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible")


def sh(*argv, ns=None, check=True, data=None):
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run(prefix + list(argv), input=data, capture_output=True, text=True, check=check)


def new_ns(tag):
    name = f"sf-mesh-{tag}-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", ns=name)
    return name


def health_vars(ns):
    """Role variables that keep a namespace's health responder (roles/mesh)
    apart: its program, state and supervisor under /tmp, per namespace."""
    base = pathlib.Path(tempfile.gettempdir()) / f"sf-mesh-health-{ns}"
    return {"mesh_health_dir": str(base), "mesh_health_program": str(base / "bin" / "mesh_health.py")}


def stop_health(ns):
    """Stop the supervisor (and so the responder) that roles/mesh started for `ns`, by its pid."""
    base = pathlib.Path(health_vars(ns)["mesh_health_dir"])
    pidfile = base / "mesh-health.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().split()[0])
        try:
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(base).encode() in cmdline:
                os.kill(pid, 15)
        except (OSError, ValueError):
            pass
    shutil.rmtree(base, ignore_errors=True)


def del_ns(name):
    stop_health(name)
    sh("ip", "netns", "del", name, check=False)


def veth(ns_a, tag, addr_a, ns_b, addr_b):
    """A veth pair sfp-<tag>-a in ns_a and sfp-<tag>-b in ns_b, addressed and up."""
    a, b = f"sfp-{tag}-a", f"sfp-{tag}-b"
    sh("ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_b, ns=ns_a)
    for ns, dev, addr in ((ns_a, a, addr_a), (ns_b, b, addr_b)):
        sh("ip", "addr", "add", addr, "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)


def fabric_devices(ns):
    """The fabric's devices for overlay appnet as the fabric role leaves them: VXLAN plus its macvlan shim."""
    sh("ip", "link", "add", "sf-appnet", "type", "vxlan", "id", "300", "dstport", "4789", ns=ns)
    sh("ip", "link", "add", "sf-appnet-h", "link", "sf-appnet", "type", "macvlan", "mode", "bridge", ns=ns)
    sh("ip", "link", "set", "sf-appnet", "up", ns=ns)
    sh("ip", "link", "set", "sf-appnet-h", "up", ns=ns)
    time.sleep(1)


def teardown(names, procs):
    """Stop the test's server processes, then delete its namespaces."""
    for proc in procs:
        proc.terminate()
        proc.wait()
    for name in names.values():
        del_ns(name)


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


def snapshot(ns, devices=("sf-appnet-h",)):
    """What a failed apply must leave byte-identical: the nftables ruleset
    (stateless), iptables without counters or timestamps, and the shims' addresses."""
    nft = sh("nft", "-s", "list", "ruleset", ns=ns).stdout
    ipt = "".join(line.split(" [", 1)[0] + "\n" for line in sh("iptables-save", ns=ns).stdout.splitlines()
                  if not line.startswith("#"))
    addrs = "".join(sh("ip", "-4", "addr", "show", "dev", dev, ns=ns).stdout for dev in devices)
    return {"nft": nft, "iptables": ipt, "addresses": addrs}


MESH_PLAY = "- hosts: node1\n  gather_facts: false\n  roles: [mesh]\n"
IP = shutil.which("ip", path="/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin")


def play(ns, plan, backends, check=False, env=None, playbook=MESH_PLAY):
    """Run roles/mesh inside `ns` for real; return (stats, {task name: result})."""
    with tempfile.TemporaryDirectory(prefix="sf-mesh-play-") as tmp:
        (pathlib.Path(tmp) / "play.yml").write_text(playbook)
        (pathlib.Path(tmp) / "vars.json").write_text(json.dumps(
            {"swarmfabric_plan": plan, "swarmfabric_mesh_backends": backends, **health_vars(ns)}))
        environ = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                   "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
                   **(env or {})}
        # The real ip: `env` may put a shim of it first in PATH, for the module only.
        argv = [IP, "netns", "exec", ns, str(pathlib.Path(ANSIBLE).parent / "ansible-playbook"),
                "-i", "node1,", "-c", "local", "-e", f"@{tmp}/vars.json", f"{tmp}/play.yml"] + ["--check"] * check
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=environ, check=False)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"ansible gave no JSON: {proc.stdout}\n{proc.stderr}") from exc
    tasks = {t["task"]["name"]: t["hosts"]["node1"] for t in out["plays"][0]["tasks"]}
    return out["stats"]["node1"], tasks


def changed(tasks):
    """The role's tasks that changed something, by name (without the role prefix)."""
    return sorted(name.split(" : ", 1)[-1] for name, r in tasks.items() if r.get("changed"))


HEALTH_STATE_TASK = "Programs of the health responder and the DNS resolver, and what they serve on this node"


def health_files_changed(tasks):
    """The paths that task changed (or would change)."""
    return next(r for name, r in tasks.items() if name.endswith(HEALTH_STATE_TASK))["changed_paths"]


def mesh_result(tasks):
    return next(r for name, r in tasks.items() if name.endswith("Apply the mesh ruleset"))


# The one call-counting shim (also used by the kernel lab's test_mesh_atomic).
SHIM_FILE = ROOT / "tests" / "integration" / "sf_mesh_shim.sh"


def shim_script(tool, real):
    return SHIM_FILE.read_text().replace("{tool}", tool).replace("{real}", real)


SHIM_TOOLS = ("nft", "ip", "iptables-save", "iptables-restore", "ipvsadm", "ipvsadm-restore", "modprobe")


class Shim:
    """A PATH directory whose tools count their calls and can fail the Nth."""

    def __init__(self, tools=SHIM_TOOLS):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="sf-mesh-shim-"))
        for tool in tools:
            real = shutil.which(tool, path="/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin")
            if real:
                path = self.dir / tool
                path.write_text(shim_script(tool, real))
                path.chmod(0o755)

    def env(self, fail=()):
        for name in ("count", "log"):
            (self.dir / name).unlink(missing_ok=True)
        return {"PATH": f"{self.dir}:{os.environ['PATH']}", "SF_SHIM_DIR": str(self.dir),
                "SF_SHIM_FAIL": " ".join(map(str, fail))}

    def calls(self):
        log = self.dir / "log"
        return [(*line.split(" ", 2)[1:], "")[:2] for line in log.read_text().splitlines()] if log.exists() else []
