#!/bin/sh
# The kernel and daemon state the toolkit writes, in a stable order, for a
# before/after comparison (side_effect.yml): links, addresses, routes, the
# fabric's FDB, the whole nftables ruleset without counters, xfrm, and the
# swarm's nodes, services, networks and configs with their versions, and our
# files. No counters, ages or logs.
set -u
# (a bridge's timers tick: left out)
ip -d link show | sed -E 's/[a-z_]+_timer +[0-9.]+//g'
ip -4 addr show
ip route show table all
for dev in $(ip -o link show | awk -F': ' '{split($2, n, "@"); if (n[1] ~ /^sf-/) print n[1]}'); do
  echo "fdb $dev"; bridge fdb show dev "$dev"
done
nft -s list ruleset
ip xfrm state
ip xfrm policy
docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{.Swarm.ControlAvailable}}'
if [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ]; then
  docker node inspect --format '{{.ID}} {{.Version.Index}} {{json .Spec}}' $(docker node ls -q)
  services=$(docker service ls -q)
  [ -z "$services" ] || docker service inspect --format '{{.ID}} {{.Version.Index}} {{json .Spec}}' $services
  docker config ls --format '{{.ID}} {{.Name}}'
fi
docker network ls --format '{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}'
find /etc/swarmfabric /run/swarmfabric /usr/local/libexec/swarmfabric -type f ! -name '*.log' -exec md5sum {} + 2>/dev/null | sort
exit 0
