"""Reading the allocation record kept in the swarm (docs/architecture.md, "Allocations").

The record is a versioned swarm config ``swarmfabric-<swarm>-allocations-<serial>``
labelled ``io.swarmfabric.allocations=<swarm>`` and ``io.swarmfabric.serial=<serial>``,
whose data is the record as JSON. swarm_allocations reads and writes it;
host_state reads it in the plan's one round trip per host.

Standard library only: this runs on managed hosts.
"""

import base64
import binascii
import json

from .docker_api import DockerAPIError

SWARM_LABEL = "io.swarmfabric.allocations"
SERIAL_LABEL = "io.swarmfabric.serial"


def serial_of(config):
    text = ((config.get("Spec") or {}).get("Labels") or {}).get(SERIAL_LABEL, "")
    return int(text) if str(text).isdigit() else 0


class RecordReader:
    """The record of swarm ``swarm`` through the Engine API ``api``."""

    def __init__(self, api, swarm):
        self.api, self.swarm = api, swarm

    def node_state(self):
        """(this node's swarm state, whether it can read the record: a manager of an active swarm)."""
        try:
            swarm = (self.api.get("/info") or {}).get("Swarm") or {}
        except DockerAPIError as exc:
            if exc.status is not None:
                raise
            # No engine answers (before the engine layer installed or started it): no record here.
            return "no-engine", False
        state = swarm.get("LocalNodeState") or "inactive"
        return state, state == "active" and bool(swarm.get("ControlAvailable"))

    def versions(self):
        """Our swarm's versions, oldest first."""
        found = self.api.get("/configs", query={"filters": {"label": [f"{SWARM_LABEL}={self.swarm}"]}}) or []
        return sorted(found, key=lambda c: (serial_of(c), (c.get("Spec") or {}).get("Name", "")))

    def read(self, config):
        full = self.api.get(f"/configs/{config['ID']}")
        try:
            value = json.loads(base64.b64decode((full.get("Spec") or {}).get("Data") or "", validate=True))
        except (ValueError, binascii.Error):
            value = None
        if not isinstance(value, dict):
            raise DockerAPIError(f"config {(full.get('Spec') or {}).get('Name')} does not hold a JSON record")
        return value

    def query(self):
        """(result, versions): the result swarm_allocations state=query returns (readable, node_state,
        record, serial, name) and the versions found, oldest first. A DockerAPIError is the caller's."""
        node_state, readable = self.node_state()
        out = {"readable": readable, "node_state": node_state, "record": {}, "serial": 0, "name": ""}
        if not readable:
            return out, []
        versions = self.versions()
        newest = versions[-1] if versions else None
        if newest:
            out.update(record=self.read(newest), serial=serial_of(newest),
                       name=(newest.get("Spec") or {}).get("Name", ""))
        return out, versions
