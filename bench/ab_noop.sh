#!/usr/bin/env bash
# A/B of row 2a between two checkouts on the same converged lab:
#   bench/ab_noop.sh OLD_CHECKOUT NEW_CHECKOUT [RUNS]
# Alternates a ping round and a no-op site.yml of each checkout, RUNS times
# (default 3), and prints the wall times. Needs the lab up (./swarmfabric lab).
set -euo pipefail
old=$(readlink -f "$1") new=$(readlink -f "$2") runs=${3:-3}
venv=$(dirname "$(readlink -f "$0")")/../.venv/bin
hosts=node1:node2:node3:node4:node5
for i in $(seq "$runs"); do
  for tree in "$old" "$new"; do
    cd "$tree"
    export ANSIBLE_CONFIG=$tree/ansible.cfg
    ping=$( { /usr/bin/time -f %e "$venv/ansible" -i inventory/lab "$hosts" -m ping >/dev/null; } 2>&1 )
    site=$( { /usr/bin/time -f %e "$venv/ansible-playbook" -i inventory/lab site.yml >/dev/null; } 2>&1 )
    echo "run $i $tree ping ${ping}s site ${site}s"
  done
done
