#!/usr/bin/env bash
# `npm test`: the one test command, and exactly what CI runs (.ci/run).
# Static checks first (cheap, and they catch what tests would report less clearly),
# then every unit and integration test in one node --test run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ensure-deps.sh"

step() { printf '\n== %s\n' "$*" >&2; }
step "types (tsc)";               tsc --noEmit -p tsconfig.json
step "lint (eslint)";             eslint --max-warnings=0 .
step "format (prettier --check)"; prettier --check . >/dev/null || { prettier --check . ; echo "run: npm run format" >&2; exit 1; }
step "generated CRDs are current"; node crds/generate.ts --check
step "chart copies are current";  node helm/syncChartFiles.ts --check
step "tests (node --test)"
# `offsite push` keeps a cache of each receiver's entries in $XDG_CACHE_HOME/offsite: the
# tests' pushes keep theirs in a directory of this run, not in the user's home.
XDG_CACHE_HOME=$(mktemp -d "${TMPDIR:-/tmp}/offsite-test-cache-XXXXXX")
export XDG_CACHE_HOME
trap 'rm -rf "$XDG_CACHE_HOME"' EXIT
# Integration suites each start their own control plane; two at a time suits 2 cores.
# test/e2e runs on the real node (root on Linux; one node at a time, they take turns).
node --test --test-concurrency=2 --test-timeout=600000 \
  "contract/**/*.test.ts" "pki/**/*.test.ts" "crds/**/*.test.ts" "operator/**/*.test.ts" "agent/**/*.test.ts" "helm/**/*.test.ts" \
  "test/*.test.ts" "test/cluster/**/*.test.ts" "test/agent/**/*.test.ts" "test/integration/**/*.test.ts" \
  "test/e2e/**/*.test.ts" "$@"
