#!/usr/bin/env bash
# Builds the control-plane binaries the integration tests need, from Go modules,
# because no container image or release binary can be fetched on our machines.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok                                                              (sigs.k8s.io/kwok)
#   helm                                                              (helm.sh/helm/v4)
# and for the real test node (test/cluster/node/):
#   kubelet, kube-proxy                                               (k8s.io/kubernetes, same wrapper)
#   crictl                                                            (sigs.k8s.io/cri-tools)
#   coredns                                                           (github.com/coredns/coredns)
#
# The subtle part: k8s.io/kubernetes (and etcd's server module) replace their
# staging modules with local paths, and Go ignores a dependency's replace
# directives, so `go install k8s.io/kubernetes/cmd/...@v` fails. We build from a
# small wrapper module whose replace list is generated from upstream's go.mod.
#
# Binaries land in $OFFSITE_CACHE_DIR/bin/<component>-<version>/ (default
# ~/.cache/offsite), outside the repo, and are rebuilt only when versions.env
# changes. Prints the directory holding all binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${OFFSITE_CACHE_DIR:-$HOME/.cache/offsite}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
export GOPATH=${GOPATH:-$(go env GOPATH)}
jobs=${OFFSITE_BUILD_JOBS:-2}

log() { printf '[build-binaries] %s\n' "$*" >&2; }

command -v go >/dev/null || { log "Go is required to build the test control plane (https://go.dev/dl); none on PATH."; exit 1; }

k8s_dir="$cache/bin/kubernetes-$KUBERNETES_VERSION"
etcd_dir="$cache/bin/etcd-$ETCD_VERSION"
kwok_dir="$cache/bin/kwok-$KWOK_VERSION"
helm_dir="$cache/bin/helm-$HELM_VERSION"
node_dir="$cache/bin/kubernetes-node-$KUBERNETES_VERSION"
crictl_dir="$cache/bin/crictl-$CRICTL_VERSION"
coredns_dir="$cache/bin/coredns-$COREDNS_VERSION"
all_dir="$cache/bin/all-k8s$KUBERNETES_VERSION-etcd$ETCD_VERSION-kwok$KWOK_VERSION-helm$HELM_VERSION-crictl$CRICTL_VERSION-coredns$COREDNS_VERSION"

# Builds into a temporary directory and renames it into place, so a build
# killed half way never leaves a directory that looks complete.
build_into() {
  local dest=$1; shift
  local tmp="$dest.partial.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  "$@" "$tmp"
  rm -rf "$dest"; mv "$tmp" "$dest"
}

k8s_work="$cache/src/kubernetes-$KUBERNETES_VERSION"

# The wrapper module, shared by the control-plane and the node binaries (one Go build cache).
prepare_kubernetes_module() {
  local work=$k8s_work v=${KUBERNETES_VERSION#v}
  [ -f "$work/.ready-$KUBERNETES_VERSION-2" ] && return 0
  mkdir -p "$work"
  local upstream_mod
  upstream_mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module offsite.dev/testcluster/kubernetes"
    grep -E '^go [0-9]' "$upstream_mod"
    grep -E '^godebug ' "$upstream_mod" || true
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    # Every `k8s.io/x => ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.<minor>.<patch>`.
    grep -E '=> \./staging/' "$upstream_mod" | awk -v ver="v0.${v#1.}" '{print "replace " $1 " => " $1 " " ver}'
  } > "$work/go.mod"
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  (cd "$work" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$work" && go mod tidy)
  touch "$work/.ready-$KUBERNETES_VERSION-2"
}

kubernetes_ldflags() {
  local minor ldflags="-s -w"
  minor=$(echo "${KUBERNETES_VERSION#v}" | cut -d. -f2)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$ldflags"
}

build_kubernetes() {
  local out=$1
  prepare_kubernetes_module
  log "building Kubernetes $KUBERNETES_VERSION (cold: ~10-20 min on 2 cores)"
  (cd "$k8s_work" && go build -p "$jobs" -trimpath -ldflags "$(kubernetes_ldflags)" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
}

# kubelet and kube-proxy build without cgo (as upstream's release builds do): ~4 min cold,
# well under a minute once the control plane's packages are in the Go build cache.
build_kubernetes_node() {
  local out=$1
  prepare_kubernetes_module
  log "building kubelet and kube-proxy $KUBERNETES_VERSION"
  (cd "$k8s_work" && go build -p "$jobs" -trimpath -ldflags "$(kubernetes_ldflags)" -o "$out/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
}

build_etcd() {
  local out=$1 work="$cache/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  cat > "$work/go.mod" <<MOD
module offsite.dev/testcluster/etcd

go 1.24

require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
MOD
  cat > "$work/main.go" <<'GO'
// etcd built as a plain module: the etcd repo's own main module replaces its
// sub-modules with local paths, which `go install` refuses.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$work" && go mod tidy)
  log "building etcd $ETCD_VERSION"
  (cd "$work" && go build -p "$jobs" -trimpath -ldflags "-s -w" -o "$out/etcd" .)
}

build_go_install() {
  local pkg=$1 out=$2
  log "building $pkg"
  GOBIN="$out" go install -trimpath -ldflags "-s -w" "$pkg"
}
build_kwok() { build_go_install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "$1"; }
build_helm() {
  local out=$1 v=${HELM_VERSION#v}
  log "building helm $HELM_VERSION"
  # Without the version ldflags Helm assumes an ancient Kubernetes; we also pass --kube-version when templating.
  GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  : "$v"
}
build_crictl() {
  log "building crictl $CRICTL_VERSION"
  GOBIN="$1" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}
# CoreDNS's module has no replace directives: a plain go install, static (CGO_ENABLED=0),
# so its image is the binary alone.
build_coredns() { build_go_install "github.com/coredns/coredns@$COREDNS_VERSION" "$1"; }

[ -x "$k8s_dir/kube-apiserver" ] || build_into "$k8s_dir" build_kubernetes
[ -x "$etcd_dir/etcd" ] || build_into "$etcd_dir" build_etcd
[ -x "$kwok_dir/kwok" ] || build_into "$kwok_dir" build_kwok
[ -x "$helm_dir/helm" ] || build_into "$helm_dir" build_helm
[ -x "$node_dir/kubelet" ] || build_into "$node_dir" build_kubernetes_node
[ -x "$crictl_dir/crictl" ] || build_into "$crictl_dir" build_crictl
[ -x "$coredns_dir/coredns" ] || build_into "$coredns_dir" build_coredns

# One directory of links, in the layout envtest's KUBEBUILDER_ASSETS uses.
mkdir -p "$all_dir"
for f in "$k8s_dir"/* "$etcd_dir"/* "$kwok_dir"/* "$helm_dir"/* "$node_dir"/* "$crictl_dir"/* "$coredns_dir"/*; do
  ln -sf "$f" "$all_dir/$(basename "$f")"
done
echo "$all_dir"
