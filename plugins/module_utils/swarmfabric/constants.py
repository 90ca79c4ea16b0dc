# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The routing mesh's marks, timeouts and ports, in one place.

Standard library only (nothing at all, in fact): the plan, the mesh view,
mesh_ruleset on the managed hosts and the tests all read these, so that a
mark or a default is written once. docs/mesh.md explains each value.
"""

# --- packet marks (fwmarks) ------------------------------------------------
# Every mark of ours has this top byte, so that it never meets Docker's small
# ingress marks and only our IPVS services are ever read or changed.
FWMARK_BASE = 0x5F000000
FWMARK_MASK = 0xFF000000
# The low 16 bits come from the service name (plan.allocate_fwmarks).
FWMARK_BITS = 16
# Bits 16..21 number the distinct (protocol, target) endpoints of a service.
FWMARK_ENDPOINT_SHIFT = 16
FWMARK_ENDPOINT_MAX = 63
# Bit 22: the endpoint has no backend here; the packet is refused (TCP RST,
# ICMP port unreachable) in the input hook instead of being dropped.
REFUSE_BIT = 0x00400000
# Bit 23: the endpoint serves only this node's own tasks (a `mode: host`
# port, or `traffic_policy: local`): no masquerade, the client's address stays.
LOCAL_BIT = 0x00800000

# --- conntrack marks ---------------------------------------------------------
# Every connection the mesh DNATs: the FORWARD accept (SF-MESH-FWD) matches it.
MESH_CT_BIT = 0x00004000
# Connections whose source the mesh masquerades (traffic_policy cluster).
MASQ_CT_BIT = 0x00002000

# --- timeouts (seconds) --------------------------------------------------------
# IPVS idle timeouts (`ipvsadm --set tcp tcpfin udp`). tcp outlives Linux's
# default net.ipv4.tcp_keepalive_time (7200 s): a connection that sends
# keepalives, with the kernel's defaults, is never forgotten while idle.
# Docker and kube-proxy leave it at the kernel's 900 s (moby#31208).
IPVS_TIMEOUTS = {"tcp": 7500, "tcpfin": 120, "udp": 300}
# What a freshly loaded ip_vs has (the kernel's, not ours).
IPVS_KERNEL_TIMEOUTS = {"tcp": 900, "tcpfin": 120, "udp": 300}
IPVS_TIMEOUT_KEYS = ("tcp", "tcpfin", "udp")
# The nftables mesh's own conntrack timeout policy (ct timeout object) for
# the established TCP connections it DNATs: kube-proxy's 24 h
# (conntrack.tcpEstablishedTimeout), which outlives any keepalive interval,
# pinned for mesh connections so that a host-wide lower setting does not cut
# idle connections through the mesh.
CONNTRACK_TIMEOUTS = {"tcp_established": 86400}
# The kernel's (and nft's) own default; nft lists only values that differ.
KERNEL_CONNTRACK_TIMEOUTS = {"tcp_established": 432000}
CONNTRACK_TIMEOUT_OBJECT = "mesh-tcp"

# --- the health responder --------------------------------------------------------
# HTTP port of each node's health endpoint (GET /<published port>), the port
# kube-proxy's node health check uses, so load balancer rules written for
# Kubernetes nodes fit.
HEALTH_PORT = 10256

TRAFFIC_POLICIES = ("cluster", "local")

# --- names on the hosts --------------------------------------------------------
# Every device of ours: sf-<overlay> (VXLAN) and sf-<overlay>-h (host shim).
DEVICE_PREFIX = "sf-"
# There while ip_vs is loaded (reading it never loads the module).
PROC_IPVS = "/proc/net/ip_vs"
# Docker's label of a swarm task's container: its service's name.
DOCKER_SERVICE_LABEL = "com.docker.swarm.service.name"
