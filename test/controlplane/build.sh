#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go modules beside this
# script, once. The binaries are cached under a folder keyed by the modules' go.sum, so a version
# bump rebuilds and everything else starts in seconds. Prints the folder holding the binaries.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
key=$(cat "$here/kube/go.mod" "$here/kube/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" | sha256sum | cut -c1-12)
kube_version=$(awk '/^require k8s.io\/kubernetes/ {print $3}' "$here/kube/go.mod")
etcd_version=$(awk '/^require go.etcd.io\/etcd\/server\/v3/ {print $3}' "$here/etcd/go.mod")
cache=${TOKENWARDEN_CONTROLPLANE_CACHE:-$root/.cache/controlplane}
out="$cache/kubernetes-$kube_version-etcd-$etcd_version-$key"
binaries=(etcd kube-apiserver kube-controller-manager kubectl)

complete=1
for b in "${binaries[@]}"; do [ -x "$out/$b" ] || complete=0; done
if [ "$complete" = 1 ]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: the Go toolchain is needed to build the control plane" >&2; exit 1; }
mkdir -p "$out.partial"
log() { echo "[controlplane] $*" >&2; }
build() { # module-dir package binary
  local started=$SECONDS
  log "building $3 (first run only; several minutes on 2 cores)..."
  # A heartbeat so a long compile never looks like a hang.
  ( while sleep 30; do log "  still building $3 ($((SECONDS - started))s)"; done ) &
  local beat=$!
  (cd "$here/$1" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.partial/$3" "$2") || { kill $beat; exit 1; }
  kill $beat 2>/dev/null; wait $beat 2>/dev/null || true
  log "built $3 in $((SECONDS - started))s"
}
total=$SECONDS
build etcd go.etcd.io/etcd/server/v3 etcd
build kube k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build kube k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
build kube k8s.io/kubernetes/cmd/kubectl kubectl
rm -rf "$out" && mv "$out.partial" "$out"
log "control plane built in $((SECONDS - total))s: $out"
echo "$out"
