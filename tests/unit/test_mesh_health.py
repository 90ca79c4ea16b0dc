"""The mesh health responder's answers (roles/mesh/files/mesh_health.py),
from its state file, and the state the mesh view writes for it."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("mesh_health", ROOT / "roles" / "mesh" / "files" / "mesh_health.py")
mesh_health = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(mesh_health)

STATE = {"version": 1, "node": "node1", "port": 10256, "ports": {
    "tcp/8080": {"service": "web", "mode": "ingress", "traffic_policy": "cluster", "endpoints": 3},
    "tcp/7070": {"service": "web", "mode": "ingress", "traffic_policy": "local", "endpoints": 1},
    "tcp/7071": {"service": "solo", "mode": "ingress", "traffic_policy": "local", "endpoints": 0},
    "udp/5353": {"service": "dns", "mode": "ingress", "traffic_policy": "local", "endpoints": 0},
    "tcp/9090": {"service": "web", "mode": "host", "traffic_policy": "local", "endpoints": 2},
}}


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "mesh-health.json"
    path.write_text(json.dumps(STATE))
    return path, mesh_health.State(str(path))


@pytest.mark.parametrize(("path", "status", "key", "count"), [
    ("/8080", 200, "endpoints", 3),
    ("/7070", 200, "localEndpoints", 1),
    ("/7071", 503, "localEndpoints", 0),
    ("/7071/tcp", 503, "localEndpoints", 0),
    ("/5353/udp", 503, "localEndpoints", 0),
    ("/9090?probe=1", 200, "localEndpoints", 2),
])
def test_published_ports(state, path, status, key, count):
    got, body = mesh_health.answer(state[1], path)
    assert (got, body[key]) == (status, count), body
    assert body["node"] == "node1" and body["port"] == int(path.strip("/").split("/")[0].split("?")[0])


@pytest.mark.parametrize("path", ["/5353", "/1234", "/", "/x", "/8080/sctp", "/8080/tcp/x"])
def test_unknown_paths_are_404(state, path):
    assert mesh_health.answer(state[1], path)[0] == 404


def test_state_file_missing_or_broken_means_503_and_is_reread(state):
    path, reader = state
    assert mesh_health.answer(reader, "/healthz")[0] == 200
    path.write_text("{not json")
    assert mesh_health.answer(reader, "/healthz")[0] == 503
    assert mesh_health.answer(reader, "/8080")[0] == 503
    path.unlink()
    assert mesh_health.answer(reader, "/8080") == (503, {"port": 8080, "protocol": "tcp",
                                                         "error": "the mesh is not converged on this node"})
    # Rewritten (as the role does, by rename): read again.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**STATE, "ports": {"tcp/8080": {**STATE["ports"]["tcp/8080"], "endpoints": 0}}}))
    tmp.rename(path)
    assert mesh_health.answer(reader, "/8080")[0] == 503
