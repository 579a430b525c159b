#!/usr/bin/env bash
# Builds the real test peers (Kubernetes control plane, etcd, kwok, KEDA) from their Go
# modules at the versions pinned in go/*/go.mod, into a cache directory outside the clone
# keyed by those versions and go.sum files, so a warm machine skips the build.
#
#   tests/peers/build.sh          build if needed, print the peers directory
#
# The printed directory holds bin/ (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, keda-operator, keda-adapter), keda-crds.yaml and
# kwok-stages.yaml. Point the tests at it with SPILLWAY_PEERS_DIR. Needs Go >= 1.26 and
# the Go module proxy; nothing else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

key="k8s-${KUBERNETES}-etcd-${ETCD}-kwok-${KWOK}-keda-${KEDA}-$(cat "$here"/go/*/go.mod "$here"/go/*/go.sum | sha256sum | cut -c1-12)"
root=${SPILLWAY_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spillway-peers}
out="$root/$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the test peers" >&2; exit 1; }
mkdir -p "$out/bin"
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
log() { echo "peers: $*" >&2; }
took() { log "$1 built in $(( $(date +%s) - $2 )) s"; }

build_kubernetes() {
  local start; start=$(date +%s)
  local minor=${KUBERNETES#v}; minor=${minor#*.}; minor=${minor%%.*}
  local stamp=""
  # Without the version stamps the binaries report v0.0.0 and version-checking clients misbehave.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $pkg.gitVersion=$KUBERNETES -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$here/go/kubernetes" && go build -trimpath -tags selinux,notest -ldflags "-s -w $stamp" \
    -o "$out/bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  took kubernetes "$start"
}

build_etcd() {
  local start; start=$(date +%s)
  (cd "$here/go/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3)
  took etcd "$start"
}

build_kwok() {
  local start; start=$(date +%s)
  (cd "$here/go/kwok" && go build -trimpath -ldflags "-s -w" -o "$out/bin/kwok" sigs.k8s.io/kwok/cmd/kwok)
  local src; src=$(cd "$here/go/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  # kwok plays these stages instead of a kubelet: nodes become Ready, pods Running and Ready.
  : > "$out/kwok-stages.yaml"
  for stage in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    { echo "---"; cat "$src/kustomize/stage/$stage"; } >> "$out/kwok-stages.yaml"
  done
  took kwok "$start"
}

build_keda() {
  local start; start=$(date +%s)
  local flags="-s -w -X github.com/kedacore/keda/v2/version.Version=${KEDA#v}"
  (cd "$here/go/keda" && go build -trimpath -ldflags "$flags" -o "$out/bin/keda-operator" github.com/kedacore/keda/v2/cmd/operator \
    && go build -trimpath -ldflags "$flags" -o "$out/bin/keda-adapter" github.com/kedacore/keda/v2/cmd/adapter)
  local src; src=$(cd "$here/go/keda" && go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)
  "$out/bin/kubectl" kustomize "$src/config/crd" > "$out/keda-crds.yaml"
  took keda "$start"
}

build_etcd
build_kwok
build_kubernetes
build_keda
"$out/bin/kube-apiserver" --version >&2
touch "$out/.complete"
echo "$out"
