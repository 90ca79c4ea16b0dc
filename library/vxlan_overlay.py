#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: vxlan_overlay
short_description: One host's side of a unicast VXLAN overlay, with its macvlan shim
description:
  - Creates a VXLAN device with the overlay's VNI, UDP port and local underlay
    address, learning off and no multicast group. Every peer gets one unicast
    flood entry C(00:00:00:00:00:00 dst <peer>) in the device's FDB; entries
    for peers no longer listed are removed.
  - Creates a macvlan shim (mode bridge, parent the VXLAN device) holding the
    host's own overlay address and the anycast gateway, so the host reaches
    the tasks that Docker's macvlan network puts on the same parent.
  - Shim addresses can move (a new slot, subnet or gateway) in one run. The
    host address stays the primary, and a removal never takes the gateway
    along (see docs/modules/vxlan_overlay.md). All IPv4 addresses on the
    shim but /32s (the mesh's VIPs) are the module's.
  - Reads the live state once with C(ip -j -d link), C(ip -j addr) and
    C(bridge -j fdb), then applies only the difference.
  - With O(encrypted=true) and O(check_kernel=true), a run that would change
    something first probes the kernel (vxlan, xfrm, esp4,
    C(rfc4106(gcm(aes))), nftables secpath match, in a throwaway network
    namespace). If anything is missing the module fails before changing
    anything, naming what is missing. The SAs themselves are M(xfrm_tunnel)'s job.
  - Before creating the device, VNIs of Docker's own overlay networks (read
    from the Engine API when its socket exists) and of other VXLAN devices on
    the host are checked for a collision.
author: Swarmfabric contributors
options:
  name:
    description: Overlay name, used in messages.
    type: str
    required: true
  device:
    description: Name of the VXLAN device, for example C(sf-appnet).
    type: str
    required: true
  shim:
    description: Name of the macvlan shim. Defaults to O(device) with C(-h) appended.
    type: str
  vni:
    description: VXLAN network identifier. Changing it recreates the device.
    type: int
  port:
    description: UDP destination port. Changing it recreates the device.
    type: int
    default: 4789
  local:
    description: This host's underlay IPv4 address, the VXLAN source. Changing it recreates the device.
    type: str
  peers:
    description: Underlay IPv4 addresses of the other hosts on this overlay.
    type: list
    elements: str
    default: []
  mtu:
    description:
      - C(auto) derives the MTU from the MTU of the underlay device that holds
        O(local) (minus 50 for VXLAN, minus ESP overhead when O(encrypted)), or an integer.
    type: raw
    default: auto
  encrypted:
    description: Whether the overlay is encrypted; decides the MTU overhead and triggers the capability probe.
    type: bool
    default: false
  check_kernel:
    description:
      - Probe the kernel for encryption before changing an encrypted overlay.
      - Set it to C(false) when M(fabric_capabilities) ran just before (the fabric role does).
    type: bool
    default: true
  address:
    description: The host's own overlay address (no prefix length), put on the shim.
    type: str
  gateway:
    description: The overlay's anycast gateway address, put on every host's shim.
    type: str
  prefixlen:
    description: Prefix length of the overlay subnet.
    type: int
  state:
    description: Whether the overlay device (and its shim) exists.
    type: str
    default: present
    choices: [present, absent]
attributes:
  diff_mode:
    support: full
    description: Before and after show device settings, FDB peers and shim addresses.
notes:
  - Run the module once per overlay per host; it makes all FDB changes in that one call.
  - O(socket) serves only the check that no Docker overlay network uses the VNI;
    it is skipped when the socket does not exist.
requirements:
  - iproute2 (ip, bridge) and util-linux (unshare) on the managed host
extends_documentation_fragment:
  - swarmfabric
  - swarmfabric.docker
"""

EXAMPLES = r"""
- name: Overlay appnet on this host
  vxlan_overlay:
    peers: [172.30.0.12, 172.30.0.13]
    name: appnet
    device: sf-appnet
    vni: 300
    port: 4789
    local: 172.30.0.11
    mtu: auto
    address: 10.20.17.1
    gateway: 10.20.0.1
    prefixlen: 16
"""

RETURN = r"""
changed:
  description: Whether anything was (or, in check mode, would be) changed.
  returned: always
  type: bool
actions:
  description: What was (or would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: ["create vxlan sf-appnet vni 300 port 4789", "add fdb peer 172.30.0.12"]
overlay:
  description: The desired state of the device after the run.
  returned: when state is present
  type: dict
  sample: {device: sf-appnet, vni: 300, port: 4789, local: 172.30.0.11, mtu: 1450, peers: [172.30.0.12],
           shim: sf-appnet-h, addresses: [10.20.0.1/16, 10.20.17.1/16]}
diff:
  description: Before and after, when diff mode is on.
  returned: when diff mode is on
  type: dict
"""

import ipaddress
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric import iproute
from ansible.module_utils.swarmfabric.docker_api import DockerAPI, DockerAPIError
from ansible.module_utils.swarmfabric.kernelcaps import require_encryption
from ansible.module_utils.swarmfabric.module import Change, Runner
from ansible.module_utils.swarmfabric.mtu import resolve_mtu

DOCKER_VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"


def read_live(run, device, shim):
    links = {link["ifname"]: link for link in run.json(iproute.link_show_argv())}
    addrs = {entry["ifname"]: entry for entry in run.json(["ip", "-j", "addr", "show"])}
    fdb = run.json(iproute.fdb_show_argv(device)) if device in links else []
    return links, addrs, fdb


def underlay_mtu(links, addrs, local):
    for name, entry in addrs.items():
        if any(a.get("local") == local for a in entry.get("addr_info", [])):
            return name, links[name]["mtu"]
    return None, None


def vni_users(links, device, vni, port):
    """Other VXLAN devices on this host with the same VNI and port."""
    return sorted(
        name for name, link in links.items()
        if name != device and (iproute.vxlan_info(link) or {}).get("vni") == vni
        and (iproute.vxlan_info(link) or {}).get("port") == port
    )


def docker_vni_users(socket_path, vni):
    if not os.path.exists(socket_path):
        return []
    networks = DockerAPI(socket_path).get("/networks", query={"filters": {"driver": ["overlay"]}}) or []
    users = []
    for net in networks:
        vnis = (net.get("Options") or {}).get(DOCKER_VNI_OPTION, "")
        if str(vni) in [v.strip() for v in vnis.split(",")]:
            users.append(net.get("Name"))
    return sorted(users)


def device_state(link, mtu=None):
    if link is None:
        return None
    info = iproute.vxlan_info(link) or {}
    return {
        "kind": "vxlan" if info else (link.get("linkinfo") or {}).get("info_kind"),
        "vni": info.get("vni"), "port": info.get("port"), "local": info.get("local"),
        "learning": info.get("learning"), "group": info.get("group"),
        "mtu": link.get("mtu") if mtu is None else mtu, "up": "UP" in link.get("flags", []),
    }


def plan_changes(p, live_links, live_addrs, live_fdb, mtu):
    """(actions, commands) to take the live state to the desired one, in order."""
    device, shim = p["device"], p["shim"]
    actions, cmds = [], []
    cur = device_state(live_links.get(device))
    want = {"kind": "vxlan", "vni": p["vni"], "port": p["port"], "local": p["local"], "learning": False,
            "group": None}
    recreate = cur is not None and any(cur[k] != v for k, v in want.items())
    if cur is None or recreate:
        if recreate:
            actions.append(f"recreate {device}: {', '.join(k for k, v in want.items() if cur[k] != v)} changed")
            cmds.append(iproute.link_del_argv(device))
        actions.append(f"create vxlan {device} vni {p['vni']} port {p['port']} local {p['local']} mtu {mtu}")
        cmds.append(iproute.vxlan_add_argv(device, p["vni"], p["port"], p["local"], mtu))
        cmds.append(iproute.link_set_argv(device, up=True))
        live_peers = []
    else:
        if cur["mtu"] != mtu or not cur["up"]:
            actions.append(f"set {device} mtu {mtu} up")
            cmds.append(iproute.link_set_argv(device, mtu=mtu, up=True))
        live_peers = iproute.fdb_peers(live_fdb)
    for peer in sorted(set(p["peers"]) - set(live_peers)):
        actions.append(f"add fdb peer {peer}")
        cmds.append(iproute.fdb_argv("append", device, peer))
    for peer in sorted(set(live_peers) - set(p["peers"])):
        actions.append(f"remove fdb peer {peer}")
        cmds.append(iproute.fdb_argv("del", device, peer))

    if not p["addresses"]:
        return actions, cmds
    shim_link = live_links.get(shim)
    mac = iproute.macvlan_info(shim_link) if shim_link else None
    shim_fresh = cur is None or recreate or mac is None or mac != {"mode": "bridge", "parent": device}
    if shim_fresh:
        # Deleting the VXLAN device already took a shim that hangs off it.
        if shim_link is not None and not (recreate and mac and mac["parent"] == device):
            cmds.append(iproute.link_del_argv(shim))
        actions.append(f"create macvlan shim {shim} on {device}")
        cmds.append(iproute.macvlan_add_argv(shim, device, mtu))
        cmds.append(iproute.link_set_argv(shim, up=True))
        live_cidrs = []
    else:
        if shim_link["mtu"] != mtu or "UP" not in shim_link.get("flags", []):
            actions.append(f"set {shim} mtu {mtu} up")
            cmds.append(iproute.link_set_argv(shim, mtu=mtu, up=True))
        live_cidrs = owned(iproute.ipv4_addresses(live_addrs.get(shim, {})))
    for verb, cidr in plan_addresses(live_cidrs, p["addresses"]):
        actions.append(f"add address {cidr} on {shim}" if verb == "add" else f"remove address {cidr} from {shim}")
        cmds.append(iproute.addr_argv(verb, shim, cidr))
    return actions, cmds


def plan_addresses(live, want):
    """("add"|"del", cidr) steps from the shim's live addresses (kernel order,
    primaries first) to want, whose first address must end up primary.

    The kernel makes the first address of a subnet its primary and, with
    promote_secondaries off, deletes the subnet's secondaries along with it.
    So a secondary is never deleted by accident here: either want[0] already
    is its subnet's primary (or the subnet is empty) and only additions and
    deletions of other addresses remain, or that subnet is cleared
    secondaries first and refilled in order (a moved host address, e.g. a
    new slot). Additions go before the remaining removals.
    """
    steps = []
    if want:
        net = ipaddress.ip_interface(want[0]).network
        same = [c for c in live if ipaddress.ip_interface(c).network == net]
        if same and same[0] != want[0]:
            steps += [("del", c) for c in reversed(same)]
            live = [c for c in live if c not in same]
    steps += [("add", c) for c in want if c not in live]
    steps += [("del", c) for c in reversed(live) if c not in want]
    return steps


def owned(cidrs):
    """The shim addresses this module manages: all but /32s, so an old
    subnet's addresses go too. The mesh puts service VIPs on the shim as /32s
    and owns them."""
    return [c for c in cidrs if not c.endswith("/32")]


def apply(run, cmds, shim):
    """Run the plan in order. A shim address whose removal fails counts as
    removed when a re-read shows it gone (the kernel took it along with its
    primary, or someone else removed it); any other failure stops the run."""
    for argv in cmds:
        try:
            run.run(argv)
        except iproute.IpRouteError:
            if argv[:3] != ["ip", "addr", "del"]:
                raise
            entries = run.json(iproute.addr_show_argv(shim), missing_ok=True)
            if argv[3] in iproute.ipv4_addresses(entries[0] if entries else {}):
                raise


def snapshot(link, fdb, shim_addrs):
    if link is None:
        return {}
    state = device_state(link)
    state["peers"] = iproute.fdb_peers(fdb)
    state["addresses"] = shim_addrs
    return state


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            device=dict(type="str", required=True),
            shim=dict(type="str"),
            vni=dict(type="int"),
            port=dict(type="int", default=4789),
            local=dict(type="str"),
            peers=dict(type="list", elements="str", default=[]),
            mtu=dict(type="raw", default="auto"),
            encrypted=dict(type="bool", default=False),
            check_kernel=dict(type="bool", default=True),
            address=dict(type="str"),
            gateway=dict(type="str"),
            prefixlen=dict(type="int"),
            socket=dict(type="path", default="/var/run/docker.sock"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ("vni", "local"))],
        required_by={"address": "prefixlen", "gateway": "prefixlen"},
        supports_check_mode=True,
    )
    change = Change(module)
    p = dict(module.params)
    p["shim"] = p["shim"] or f"{p['device']}-h"
    what = f"overlay {p['name']}"
    if len(p["shim"]) > 15:
        change.fail(f"configure {what}", f"shim name {p['shim']} is over 15 characters")
    p["addresses"] = [f"{a}/{p['prefixlen']}" for a in (p["address"], p["gateway"]) if a]
    run = Runner(module)
    result = {}
    try:
        links, addrs, fdb = read_live(run, p["device"], p["shim"])
        shim_addrs = owned(iproute.ipv4_addresses(addrs.get(p["shim"], {})))
        change.before = snapshot(links.get(p["device"]), fdb, shim_addrs)

        if p["state"] == "absent":
            actions, cmds = [], []
            for dev in (p["shim"], p["device"]):
                if dev in links:
                    actions.append(f"delete {dev}")
                    cmds.append(iproute.link_del_argv(dev))
            change.after = {}
        else:
            if p["device"] not in links:
                clash = vni_users(links, p["device"], p["vni"], p["port"])
                docker = docker_vni_users(p["socket"], p["vni"])
                if clash or docker:
                    users = [f"VXLAN device {c}" for c in clash] + [f"Docker overlay network {d}" for d in docker]
                    change.fail(f"create {what}", (
                        f"VNI {p['vni']} is already used by {', '.join(users)} "
                        "(the kernel refuses a second device with the same VNI and port, 'VNI already exists'). "
                        "Docker's overlay driver takes VNIs from 4096 up, so choose a VNI below 4096 for "
                        "swarm.overlays, or remove the other network."
                    ))
            underlay, under_mtu = underlay_mtu(links, addrs, p["local"])
            if underlay is None:
                change.fail(f"configure {what}", f"local address {p['local']} is on no interface")
            try:
                mtu = resolve_mtu(p["mtu"], under_mtu, p["encrypted"])
            except ValueError as exc:
                change.fail(f"configure {what}", exc)
            actions, cmds = plan_changes(p, links, addrs, fdb, mtu)
            if cmds and p["encrypted"] and p["check_kernel"]:
                require_encryption(change, p["name"])
            result = {"overlay": {"device": p["device"], "vni": p["vni"], "port": p["port"], "local": p["local"],
                                  "mtu": mtu, "underlay": underlay, "peers": sorted(p["peers"]),
                                  "shim": p["shim"], "addresses": p["addresses"]}}
            change.after = dict(change.before or {}, kind="vxlan", vni=p["vni"], port=p["port"], local=p["local"],
                                learning=False, group=None, mtu=mtu, up=True, peers=sorted(p["peers"]),
                                addresses=p["addresses"])
        change.actions = actions
        if cmds:
            change.write(apply, run, cmds, p["shim"])
    except (iproute.IpRouteError, DockerAPIError) as exc:
        change.fail(f"configure {what}", exc)
    change.exit(changed=bool(cmds), **result)


if __name__ == "__main__":
    main()
