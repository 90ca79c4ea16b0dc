#!/bin/sh
# A PATH shim for one of the mesh's tools ({tool}, really {real}); the tests
# that prove the mesh apply atomic install one per tool (tests/integration
# sf_mesh_helpers.Shim, molecule/kernel/tests/test_mesh_atomic.py).
# Counts every call; the calls numbered in SF_SHIM_FAIL fail without running.
n=$(( $(cat "$SF_SHIM_DIR/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$SF_SHIM_DIR/count"
echo "$n {tool} $*" >>"$SF_SHIM_DIR/log"
for f in $SF_SHIM_FAIL; do
  if [ "$f" = "$n" ]; then echo "injected failure in call $n ({tool})" >&2; exit 1; fi
done
exec {real} "$@"
