#!/usr/bin/env bash
# `npm run bench`: installs what the baselines need (rsync, and lsyncd for B5, from Debian's
# packages; taskset from util-linux, to pin the peers' ends to cores) and runs
# bench/runBenchmarks.ts with Node 24. Not part of `npm test`: tests check
# behaviour, benchmarks measure it.
set -euo pipefail
# The benchmarks need no Kubernetes binaries.
export OFFSITE_SKIP_BINARIES=1
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/ensure-deps.sh"
# command:package
for needed in rsync:rsync lsyncd:lsyncd taskset:util-linux; do
  command=${needed%%:*} package=${needed#*:}
  if ! command -v "$command" >/dev/null; then
    echo "[bench] installing $package (Debian package) for $command" >&2
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get install -y "$package" >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "$package" >/dev/null; }
  fi
done
# The disk of these VMs varies threefold from one minute to the next, which drowns the
# ratios. By default every workload and every receiver lives on a private tmpfs (a mount
# namespace of the run's own, gone when it ends): the comparison then measures the
# protocols and the CPU. OFFSITE_BENCH_DISK=1 runs on the disk instead.
# As root a plain mount namespace; otherwise a user namespace too (rsync's daemon then
# cannot switch groups, so prefer root).
unshare_flags=$([ "$(id -u)" = 0 ] && echo -m || echo -rm)
if [ -z "${OFFSITE_BENCH_DISK:-}" ] && unshare "$unshare_flags" true 2>/dev/null; then
  work=$(mktemp -d /tmp/offsite-bench-XXXXXX)
  trap 'rm -rf "$work"' EXIT
  unshare "$unshare_flags" sh -c 'mount -t tmpfs -o size=14g tmpfs "$0" && exec "$@"' "$work" \
    node bench/runBenchmarks.ts --dir "$work" --storage "tmpfs (RAM)" "$@"
else
  exec node bench/runBenchmarks.ts --storage "the local disk" "$@"
fi
