#!/bin/sh
# List what Swarmfabric made that is still on this host, one object a line;
# nothing printed means nothing of ours is left (playbooks/teardown.yml).
# Usage: swarmfabric-leftovers.sh "<vxlan ports>" "<underlay addresses of the swarm's nodes>"
# Read-only: IPVS is read only when ip_vs is loaded (ipvsadm would load it).
set -u
ports=$1
addresses=$2

# Devices: every VXLAN device and shim of the fabric is named sf-<overlay>[-h].
ip -o link show | awk -F': ' '{split($2, n, "@"); if (n[1] ~ /^sf-/) print "link " n[1]}'

# nftables: the engine, fabric and mesh tables.
nft list tables 2>/dev/null | awk '$3 ~ /^swarmfabric/ {print "nft table " $2 " " $3}'

# iptables: the mesh's chains (SF-*) and the jumps into them.
if command -v iptables-save >/dev/null 2>&1; then
  iptables-save 2>/dev/null | awk '/^\*/ {t = substr($0, 2)} /^:SF-/ {print "iptables chain " t " " substr($1, 2)}'
fi

# IPVS: fwmark services in our range (top byte 0x5F).
if [ -e /proc/net/ip_vs ] && command -v ipvsadm >/dev/null 2>&1; then
  ipvsadm -Sn | awk '$1 == "-A" && $2 == "-f" && $3 >= 1593835520 && $3 <= 1610612735 {print "ipvs service fwmark " $3}'
fi

# xfrm: ESP SAs between two of the swarm's nodes, and policies on the overlays' VXLAN ports.
ip xfrm state list 2>/dev/null | awk -v addrs=" $addresses " '
  /^src / {src = $2; dst = $4}
  /^\tproto esp spi/ {if (index(addrs, " " src " ") && index(addrs, " " dst " ")) print "xfrm state " src " -> " dst " spi " $4}'
for port in $ports; do
  ip xfrm policy list 2>/dev/null | awk -v port="$port" '
    /^src / && $0 ~ ("proto udp .*dport " port "( |$)") {sub(/ +$/, ""); print "xfrm policy " $0}'
done

# Docker: membership, and the fabric's config-only networks.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  [ "$state" = inactive ] || echo "swarm membership $state"
  docker network ls --filter label=io.swarmfabric.overlay --format 'docker network {{.Name}}'
fi

# Files: programs, state, the boot guard and the units. An empty directory
# that is a mount point is the host's (the kernel lab mounts /etc/swarmfabric).
for f in /etc/swarmfabric /usr/local/libexec/swarmfabric /run/swarmfabric /var/lib/swarmfabric \
         /etc/systemd/system/swarmfabric-* \
         /etc/systemd/system/sysinit.target.wants/swarmfabric-*; do
  if [ -d "$f" ] && [ -z "$(ls -A "$f")" ] && mountpoint -q "$f" 2>/dev/null; then
    continue
  fi
  if [ -e "$f" ] || [ -L "$f" ]; then echo "file $f"; fi
done
exit 0
