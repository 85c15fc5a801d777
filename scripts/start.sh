#!/usr/bin/env bash
# `npm start`: the main job. Without a cluster it starts the embedded local control
# plane; `npm start -- --kubeconfig PATH` uses an existing cluster instead.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ensure-deps.sh"
exec node scripts/start.ts "$@"
