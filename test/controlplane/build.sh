#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl and pki (the test certificate
# writer in kube/pki) from the Go modules beside this script, once. The binaries are cached under a
# folder keyed by the modules' go.sum, so a version bump rebuilds and everything else starts in
# seconds. Prints the folder holding the binaries.
#   build.sh --dir   prints the folder without building anything (it may not exist yet).
#   build.sh --node  also builds kubelet and kube-scheduler (`make node-up`), from the same module,
#                    so the node's version is always the control plane's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# TOKENWARDEN_KUBE_MODULE=kube-v1.30 (or kube-v1.37): kube-apiserver, kube-controller-manager and
# kubectl of another Kubernetes version, from that folder's module (`make test-versions`); etcd, pki
# and pause are the same for every version.
kube_mod=${TOKENWARDEN_KUBE_MODULE:-kube}
[ -f "$here/$kube_mod/go.mod" ] || { echo "build.sh: no module test/controlplane/$kube_mod" >&2; exit 1; }
kube_version=$(awk '/^require k8s.io\/kubernetes/ {print $3}' "$here/$kube_mod/go.mod")
# The version the binaries report (kubectl version, the Node's kubeletVersion): built from the
# module proxy there is no git tree to read it from, so it is stamped from go.mod.
minor=$(echo "$kube_version" | cut -d. -f2)
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$kube_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
key=$( (cat "$here/$kube_mod/go.mod" "$here/$kube_mod/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum"; echo "$ldflags") | sha256sum | cut -c1-12)
etcd_version=$(awk '/^require go.etcd.io\/etcd\/server\/v3/ {print $3}' "$here/etcd/go.mod")
cache=${TOKENWARDEN_CONTROLPLANE_CACHE:-$root/.cache/controlplane}
out="$cache/kubernetes-$kube_version-etcd-$etcd_version-$key"
#   build.sh --helm  builds helm alone (helm/go.mod, its own key) and prints its folder.
if [ "${1:-}" = "--helm" ]; then
  helm_version=$(awk '/^require helm.sh\/helm\/v4/ {print $3}' "$here/helm/go.mod")
  helm_key=$(cat "$here/helm/go.mod" "$here/helm/go.sum" | sha256sum | cut -c1-12)
  helm_out=${TOKENWARDEN_CONTROLPLANE_CACHE:-$root/.cache/controlplane}/helm-$helm_version-$helm_key
  if [ ! -x "$helm_out/helm" ]; then
    command -v go >/dev/null || { echo "build.sh: the Go toolchain is needed to build helm" >&2; exit 1; }
    mkdir -p "$helm_out"
    exec 9>"$helm_out/.build.lock"; flock 9
    if [ ! -x "$helm_out/helm" ]; then
      echo "[controlplane] building helm $helm_version (first run only)..." >&2
      started=$SECONDS
      hv=helm.sh/helm/v4/internal/version
      (cd "$here/helm" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X $hv.version=$helm_version" -o "$helm_out/.helm.tmp" helm.sh/helm/v4/cmd/helm)
      mv -f "$helm_out/.helm.tmp" "$helm_out/helm"
      echo "[controlplane] built helm in $((SECONDS - started))s" >&2
    fi
  fi
  echo "$helm_out"; exit 0
fi
if [ "${1:-}" = "--dir" ]; then echo "$out"; exit 0; fi
node=false; if [ "${1:-}" = "--node" ]; then node=true; fi

# pki and pause are tiny and edited in place, so each is keyed by its own source rather than by
# go.sum: a change to one rebuilds it alone (a second), never the multi-minute Kubernetes binaries.
src_sum() { sha256sum < "$here/kube/$1/main.go" | cut -c1-12; }
# module-dir package binary
targets=(
  "etcd go.etcd.io/etcd/server/v3 etcd"
  "$kube_mod k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver"
  "$kube_mod k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager"
  "$kube_mod k8s.io/kubernetes/cmd/kubectl kubectl"
  "kube ./pki pki"
)
if $node; then
  targets+=(
    "$kube_mod k8s.io/kubernetes/cmd/kubelet kubelet"
    "$kube_mod k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler"
    "kube ./pause pause"
  )
fi
fresh() { # binary
  [ -x "$out/$1" ] || return 1
  case $1 in pki|pause) [ "$(cat "$out/$1.src" 2>/dev/null)" = "$(src_sum "$1")" ] || return 1 ;; esac
}
complete() { for t in "${targets[@]}"; do set -- $t; fresh "$3" || return 1; done; }
if complete; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: the Go toolchain is needed to build the control plane" >&2; exit 1; }
log() { echo "[controlplane] $*" >&2; }
mkdir -p "$cache"
# Two callers at once (make controlplane-up and a test run) would compile everything twice on two
# cores: the second one waits and then finds the binaries built. One lock per version folder, so
# building another version (make test-versions) never holds up a build of this one.
exec 9>"$cache/.$(basename "$out").lock"
if ! flock -n 9; then log "another build of the control plane is running; waiting for it..."; flock 9; fi
if complete; then echo "$out"; exit 0; fi

mkdir -p "$out"
build() { # module-dir package binary
  local started=$SECONDS
  if [ "$3" = pki ] || [ "$3" = pause ]; then log "building $3..."; else log "building $3 (first run only; several minutes on 2 cores)..."; fi
  # A heartbeat so a long compile never looks like a hang. Its sleep is killed with it: a stray
  # sleep would hold our stdout open and keep a caller reading it waiting for up to 30s.
  ( trap 'kill $s 2>/dev/null; exit 0' TERM
    while :; do sleep 30 & s=$!; wait $s; log "  still building $3 ($((SECONDS - started))s)"; done ) >/dev/null &
  local beat=$!
  # Written beside the target and renamed, so a cached binary is never half written.
  (cd "$here/$1" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$out/.$3.tmp" "$2") || { kill $beat; exit 1; }
  mv -f "$out/.$3.tmp" "$out/$3"
  kill $beat 2>/dev/null; wait $beat 2>/dev/null || true
  log "built $3 in $((SECONDS - started))s"
}
total=$SECONDS
for t in "${targets[@]}"; do
  set -- $t
  fresh "$3" && continue
  build "$1" "$2" "$3"
  case $3 in pki|pause) src_sum "$3" > "$out/$3.src" ;; esac
done
log "control plane built in $((SECONDS - total))s: $out"
echo "$out"
