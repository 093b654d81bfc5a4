#!/usr/bin/env bash
# Runs a command while the CPU reports another cache geometry (L1d 32K 8-way, L2 2 MiB),
# to measure how candle's outputs drift across machines: the gemm crate sizes its blocking
# from /sys/devices/system/cpu/*/cache, so this changes float summation order exactly as
# another CPU model would. Needs root (a private mount namespace with bind mounts).
#   bench/other_cache_geometry.sh target/release/examples/calibrate dump /tmp/b
set -euo pipefail
fake=$(mktemp -d)
echo 32K > "$fake/l1_size"
echo 8 > "$fake/l1_ways"
echo 2048K > "$fake/l2_size"
exec unshare -m bash -c '
  for cache in /sys/devices/system/cpu/cpu[0-9]*/cache; do
    for idx in "$cache"/index*; do
      case "$(cat "$idx/level")/$(cat "$idx/type")" in
        1/Data) mount --bind "'"$fake"'/l1_size" "$idx/size"; mount --bind "'"$fake"'/l1_ways" "$idx/ways_of_associativity" ;;
        2/*) mount --bind "'"$fake"'/l2_size" "$idx/size" ;;
      esac
    done
  done
  exec "$@"' bash "$@"
