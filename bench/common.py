"""Shared pieces of the benchmarks: result rows, timing of child processes,
machine facts. Every figure is in seconds unless a row says otherwise."""

from __future__ import annotations

import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Before any ansible import: the repository's configuration (module_utils path).
os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))

import ansible.release

VENV_BIN = pathlib.Path(sys.executable).parent
# Modules run with the managed host's Python, as on a real node.
HOST_PYTHON = "/usr/bin/python3"
PREFIX = "sf-bench-"

_OPS = {"<=": lambda r, t: r <= t, ">=": lambda r, t: r >= t, "==": lambda r, t: r == t}


@dataclass
class Row:
    """One line of the results table.

    ``ratio`` is always measured / baseline and ``met`` always compares that
    ratio with ``target`` through ``target_op``; neither is ever given by hand.
    """

    section: str
    name: str
    measured: float | None = None
    baseline: float | None = None
    target: float | None = None
    target_op: str | None = "<="
    unit: str = "s"
    status: str = "measured"     # measured | computed | info | skipped | not measured here
    note: str = ""
    detail: dict = field(default_factory=dict)

    @property
    def ratio(self):
        if self.measured is None or not self.baseline:
            return None
        return self.measured / self.baseline

    @property
    def met(self):
        ratio = self.ratio
        if ratio is None or self.target is None or self.status in ("skipped", "not measured here"):
            return None
        return _OPS[self.target_op](round(ratio, 6), self.target)

    def as_dict(self):
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


def skipped(section, name, why, status="skipped"):
    return Row(section, name, target=None, target_op=None, unit="", status=status, note=why)


class BenchError(Exception):
    """A benchmark step could not run; its rows are reported as skipped."""


@dataclass
class Run:
    seconds: float
    rc: int
    out: str
    err: str
    maxrss_kb: int


def run(argv, ns=None, data=None, env=None, cwd=None, check=True, rss=False):
    """Run one process to the end and time it; with ``rss``, read its peak RSS.

    The peak RSS is GNU time's %M: the largest resident set among the process
    and the children it waited for (a module and the nft it runs). GNU time
    is small, so unlike wait4() from here it does not count the resident set
    of this Python process that every fork starts with.
    """
    argv = [str(a) for a in argv]
    if ns:
        argv = ["ip", "netns", "exec", ns, *argv]
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout, \
            tempfile.TemporaryFile() as stderr, tempfile.NamedTemporaryFile("r") as rss_file:
        if rss:
            argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv]
        if data is not None:
            stdin.write(data.encode() if isinstance(data, str) else data)
            stdin.seek(0)
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
        proc.wait()
        seconds = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        maxrss = rss_file.read().strip().splitlines()[-1:] if rss else None
        result = Run(seconds, proc.returncode, stdout.read().decode(errors="replace"),
                     stderr.read().decode(errors="replace"), int(maxrss[0]) if maxrss else None)
    if check and result.rc != 0:
        raise BenchError(f"{' '.join(argv[:6])}... failed (rc {result.rc}): {(result.err or result.out)[-800:]}")
    return result


def median(values):
    return statistics.median(values) if values else None


def timed(func, repeat):
    """Median wall time of ``func()`` over ``repeat`` calls, and every sample."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return median(samples), samples


def _first_line(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return None


def machine_facts():
    model = None
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "controller_python": platform.python_version(),
        "module_python": _first_line([HOST_PYTHON, "-c", "import platform; print(platform.python_version())"]),
        "ansible_core": ansible.release.__version__,
        "nft": _first_line(["nft", "--version"]),
        "iptables": _first_line(["iptables", "--version"]),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
