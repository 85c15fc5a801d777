# Sourced by start.sh and test.sh: brings a fresh clone to a runnable state.
#  - npm packages, including the project's own Node 24 (a devDependency), when
#    node_modules is missing or older than package-lock.json;
#  - the control-plane binaries, built from Go modules into a cache outside the repo
#    (minutes when cold, instant when cached);
#  - as root on Linux, the Debian packages of the real test node (containerd, runc, CNI
#    plugins, conntrack, iptables, nftables; test/cluster/node/ensure-packages.sh), one
#    dpkg-query when they are there. Elsewhere the suites that need it say why they skip.
# Afterwards `node` on PATH is the project's Node 24, whatever the machine ships.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
export PATH="$repo_root/node_modules/.bin:$PATH"
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 24 ]; then
  echo "[setup] node on PATH is $(node --version); the project's Node 24 did not install (node_modules/.bin/node)." >&2
  exit 1
fi

if [ "$(uname -s)" = Linux ] && [ "$(id -u)" -eq 0 ] && [ -z "${OFFSITE_SKIP_NODE_PACKAGES:-}" ]; then
  bash test/cluster/node/ensure-packages.sh
fi

# A user's own binaries (envtest's KUBEBUILDER_ASSETS) skip the eager build; anything
# they lack (kwok, say) is built on first use by test/cluster/binaries.ts.
if [ -z "${OFFSITE_SKIP_BINARIES:-}" ] && [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  echo "[setup] control-plane binaries (test/cluster/build-binaries.sh)" >&2
  OFFSITE_BINARIES_DIR=$(bash test/cluster/build-binaries.sh)
  export OFFSITE_BINARIES_DIR
fi
