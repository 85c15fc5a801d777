#!/usr/bin/env bash
# `npm run bench`: installs what the baselines need (rsync, from Debian's packages) and
# runs bench/runBenchmarks.ts with Node 24. Not part of `npm test`: tests check
# behaviour, benchmarks measure it.
set -euo pipefail
# The benchmarks need no Kubernetes binaries.
export OFFSITE_SKIP_BINARIES=1
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/ensure-deps.sh"
if ! command -v rsync >/dev/null; then
  echo "[bench] installing rsync (Debian package) for the baselines" >&2
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get install -y rsync >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y rsync >/dev/null; }
fi
exec node bench/runBenchmarks.ts "$@"
