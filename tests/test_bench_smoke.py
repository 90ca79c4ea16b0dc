"""bench/run --quick as a smoke check: it runs end to end and writes a
well-formed results file whose ratios and verdicts are computed. Timing
targets are never asserted here: these are benchmarks, not timed tests."""

import json
import operator
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEYS = {"name", "measured", "baseline", "ratio", "target", "met"}
OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("bench/run makes a network namespace: needs root")
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run([str(ROOT / "bench" / "run"), "--quick", "--repeat", "1", "--output", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "figure" in proc.stdout and "ratio" in proc.stdout  # the table was printed
    return json.loads(out.read_text())


def test_machine_facts(results):
    machine = results["machine"]
    assert machine["cpu_count"] == os.cpu_count()
    assert machine["kernel"] == os.uname().release
    assert machine["nft"].startswith("nftables v")
    assert machine["mode"] == "quick"
    for key in ("cpu_model", "controller_python", "module_python", "ansible_core"):
        assert machine[key], key


def test_every_row_has_the_contract_keys(results):
    rows = results["results"]
    assert rows
    for row in rows:
        assert KEYS <= set(row), row


def test_ratios_and_verdicts_are_computed(results):
    for row in results["results"]:
        if row["measured"] is not None and row["baseline"]:
            assert row["ratio"] == pytest.approx(row["measured"] / row["baseline"]), row
        else:
            assert row["ratio"] is None, row
        if row["ratio"] is None or row["target"] is None:
            assert row["met"] is None, row
        else:
            assert row["met"] is OPS[row["target_op"]](round(row["ratio"], 6), row["target"]), row


def test_quick_mode_measures_the_mesh_and_skips_the_lab(results):
    rows = {row["section"]: row for row in results["results"]}
    for section in ("1a", "1b", "1c", "1d", "3a", "3b"):
        assert rows[section]["status"] == "measured", rows[section]
        assert isinstance(rows[section]["measured"], float) and rows[section]["baseline"] > 0
    for section in ("1a", "1b", "1c", "1d"):  # seconds; an exponent (3a, 3b) may be any sign when noisy
        assert rows[section]["measured"] > 0
    assert rows["1b"]["detail"]["changed"] == [False]  # the no-op really is one
    assert rows["1c"]["note"] == "applied as a delta"
    for section in ("2a", "2b"):
        assert rows[section]["status"] == "skipped" and rows[section]["measured"] is None


def test_kernel_lab_rows_are_never_invented(results):
    for row in results["results"]:
        if row["status"] == "not measured here":
            assert row["measured"] is None and row["met"] is None
        if "computed" in row["name"]:
            assert row["status"] == "computed"


def test_no_namespace_left_behind(results):
    made = next(row for row in results["results"] if row["section"] == "1a")["detail"]["netns"]
    assert made.startswith("sf-bench-")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    assert made not in names
