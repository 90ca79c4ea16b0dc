"""The scripted daemon that swarm_service's field tests share: one macvlan
network (appnet), one service with Docker's own defaults added, every task
running. Each test file adds its field with ``container``."""

from conftest import Docker

GEN0 = {"Name": "appnet", "Id": "id-appnet", "Scope": "swarm", "ConfigOnly": False, "Driver": "macvlan",
        "ConfigFrom": {"Network": "appnet-config"}}
RUNNING = [{"Status": {"State": "running"}}]


def params(name, **extra):
    return {"name": name, "image": "swarmfabric/task:1", "replicas": 1, "networks": ["appnet"], **extra}


def existing(name, container=None):
    """The service ``name`` as the daemon lists it; ``container`` adds ContainerSpec fields."""
    spec = {"Name": name, "Labels": {},
            "TaskTemplate": {"ContainerSpec": {"Image": "swarmfabric/task:1@sha256:abc", "Hosts": [],
                                               "Isolation": "default", **(container or {})},
                             "Networks": [{"Target": "id-appnet"}], "ForceUpdate": 0},
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Mode": "vip", "Ports": []},
            "UpdateConfig": {"Parallelism": 1, "Delay": 5 * 10**9, "FailureAction": "pause"}}
    return {"ID": "sid", "Version": {"Index": 7}, "Spec": spec}


def daemon(services, api_version="1.41"):
    return Docker({"/networks": [GEN0], "/services": services, ("POST", "/services/create"): {"ID": "sid"},
                   "/services/sid": {"UpdateStatus": {"State": "completed"}}, "/tasks": RUNNING},
                  api_version=api_version)
