#!/usr/bin/env bash
# Debian packages the real test node needs (test/cluster/node/): the container runtime
# (containerd + runc), the CNI plugins (bridge, host-local, loopback, portmap in
# /usr/lib/cni), conntrack, iptables and nftables (kubelet and kube-proxy program them),
# and a C compiler with a static libc for the pause image.
#
# containerd and runc come from Debian rather than a Go build: they install in seconds,
# get Debian's security updates, and need no cgo (runc links libseccomp). containerd
# 1.6 speaks CRI v1, which kubelet 1.34 requires.
#
# Idempotent and quick when everything is there (one dpkg-query). Needs root to install;
# without it, says what is missing and returns non-zero (suites asking for a real node
# then skip with that reason).
set -euo pipefail

packages=(containerd runc containernetworking-plugins conntrack iptables nftables gcc libc6-dev)

installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for p in "${packages[@]}"; do
  grep -qx "$p install ok installed" <<<"$installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "[node-packages] missing Debian packages for the real test node: ${missing[*]} (install them as root)" >&2
  exit 1
fi
echo "[node-packages] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A machine whose package lists are missing or stale cannot resolve the names: update once.
if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/offsite-apt.log 2>&1; then
  apt-get update >>/tmp/offsite-apt.log 2>&1
  apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/offsite-apt.log 2>&1 ||
    { cat /tmp/offsite-apt.log >&2; exit 1; }
fi
# Where an init system starts the package's own containerd, it does not get in the way:
# ours runs with a private root, state and socket (test/cluster/node/realNode.ts).
