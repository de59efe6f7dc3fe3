#!/usr/bin/env bash
# A real node joined to the local control plane (`make node-up` / `make node-down`): containerd
# (its own root, state and socket), runc, CNI bridge, kubelet and kube-scheduler, the last two built
# from the control plane's own Go module (test/controlplane/build.sh --node), so the node's version
# is always the control plane's. Everything lives under $TOKENWARDEN_DEV_DIR/node (default .dev/node).
#
#   node.sh up      the control plane must be up with --node (`make node-up` does both)
#   node.sh down    stops the kubelet, every container, containerd and the scheduler, then unmounts,
#                   removes cgroups, the bridge and the iptables rules; fails if anything is left
#   node.sh load ARCHIVE NAME   imports an OCI archive into the node's containerd as NAME
#   node.sh check   exits 1 with a one-line message naming the Debian packages that are missing
#
# Without kube-proxy, one iptables rule stands in for it: a Pod's connection to the `kubernetes`
# Service (10.0.0.1:443, what the kubelet puts in KUBERNETES_SERVICE_HOST/PORT) is sent to the API
# server on 127.0.0.1 (route_localnet on the node's bridge only, and a rule dropping any other
# packet from the bridge to 127.0.0.0/8, as kube-proxy does). No other Service routes. The node's IP
# is the bridge's address (10.244.0.1), not loopback, so the API server may reach the kubelet
# (`kubectl logs`); the kubelet authenticates it by client certificate and authorizes by webhook.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dev=${TOKENWARDEN_DEV_DIR:-$root/.dev}
state=$dev/node
cp_state=$dev/controlplane/state.json
NODE_NAME=tokenwarden-node
BRIDGE=twcni0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
SERVICE_IP=10.0.0.1
CHAIN=TOKENWARDEN-NODE
CGROUP_ROOT=tokenwarden-node
PAUSE_IMAGE=tokenwarden.local/pause:1
sock=$state/containerd/containerd.sock
log() { echo "[node] $*" >&2; }
die() { echo "[node] $*" >&2; exit 1; }

check() {
  local missing=()
  command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
  command -v containerd-shim-runc-v2 >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v iptables >/dev/null || missing+=(iptables)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "the test node needs the Debian packages: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')(apt-get install them as root; .ci/run does)" >&2
    return 1
  fi
  [ "$(id -u)" = 0 ] || { echo "the test node runs containerd and a kubelet, which need root" >&2; return 1; }
}

# pid of a process we started, if it still runs the same binary with our state folder in its argv
owned_pid() { # name
  local pid
  pid=$(cat "$state/$1.pid" 2>/dev/null) || return 1
  [ -r "/proc/$pid/cmdline" ] && tr '\0' '\n' < "/proc/$pid/cmdline" | grep -qF -- "$state" && echo "$pid"
}
start() { # name binary args...
  local name=$1; shift
  setsid "$@" >>"$state/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$state/$name.pid"
}
stop() { # name [timeout]
  local pid i
  pid=$(owned_pid "$1") || { rm -f "$state/$1.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < ${2:-100}; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$state/$1.pid"
}
cpjson() { node -e "const s = JSON.parse(require('fs').readFileSync('$cp_state', 'utf8')); console.log($1)"; }
kubectl_() { "$bins/kubectl" --kubeconfig "$(cpjson s.kubeconfigPath)" "$@"; }

up() {
  check || exit 1
  [ -r "$cp_state" ] || die "no control plane in $dev; start it with: node test/controlplane/launcher.ts up --node"
  [ "$(cpjson 's.node === true')" = true ] || die "the control plane in $dev was started without --node"
  if owned_pid kubelet >/dev/null; then log "already up"; return 0; fi
  bins=$(bash "$root/test/controlplane/build.sh" --node)
  ip link show "$BRIDGE" >/dev/null 2>&1 && die "the bridge $BRIDGE exists: another test node runs on this machine (or run: $0 down)"
  local t0=$SECONDS
  rm -rf "$state"
  mkdir -p "$state"/{logs,containerd/root,containerd/state,cni/net.d,cni/ipam,kubelet,pod-logs,certs,volume-plugins}
  local pki apiport server
  pki=$(cpjson 's.stateDir')/pki
  server=$(cpjson s.server)
  apiport=$(cpjson s.ports.apiserver)

  # --- network: the bridge (node IP), Pods to the API server, nothing else -------------------
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  sysctl -qw "net.ipv4.conf.$BRIDGE.route_localnet=1"
  iptables -w -t nat -N "$CHAIN"
  iptables -w -t nat -A "$CHAIN" -d "$SERVICE_IP/32" -p tcp --dport 443 -j DNAT --to-destination "127.0.0.1:$apiport"
  iptables -w -t nat -I PREROUTING -i "$BRIDGE" -j "$CHAIN"
  iptables -w -I INPUT -i "$BRIDGE" -d 127.0.0.0/8 -m conntrack ! --ctstate DNAT -j DROP
  cat > "$state/cni/net.d/10-tokenwarden.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tokenwarden-node",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$state/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
}
EOF

  # --- containerd ------------------------------------------------------------------------------
  cat > "$state/containerd/config.toml" <<EOF
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here may not lower oom_score_adj; without this runc fails with "can't get final child's PID from pipe: EOF"
  restrict_oom_score_adj = true
  # the Pods' network namespaces are mounted under our state folder, so down finds every one
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state under ours too (its default is /run/containerd/runc)
        Root = "$state/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
EOF
  start containerd containerd --config "$state/containerd/config.toml"
  local i
  for ((i = 0; i < 100; i++)); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.2; done
  ctr -a "$sock" version >/dev/null 2>&1 || die "containerd did not start; see $state/logs/containerd.log"

  # --- the sandbox image: the pause binary alone, from scratch --------------------------------
  local work=$state/pause-image
  local -a bstore=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
  mkdir -p "$work/rootfs"
  cp "$bins/pause" "$work/rootfs/pause"
  local ctr_id
  ctr_id=$(buildah "${bstore[@]}" from scratch)
  buildah "${bstore[@]}" copy --chown 0:0 "$ctr_id" "$work/rootfs/pause" /pause >/dev/null
  buildah "${bstore[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr_id"
  buildah "${bstore[@]}" commit --quiet --timestamp 0 --format oci "$ctr_id" "$PAUSE_IMAGE" >/dev/null
  buildah "${bstore[@]}" push --quiet "$PAUSE_IMAGE" "oci-archive:$work/pause.tar:$PAUSE_IMAGE"
  buildah "${bstore[@]}" rm --all >/dev/null
  load "$work/pause.tar" "$PAUSE_IMAGE"
  rm -rf "$work"

  # --- kube-scheduler --------------------------------------------------------------------------
  kubeconfig_for scheduler system:kube-scheduler > "$state/scheduler.kubeconfig"
  start kube-scheduler "$bins/kube-scheduler" --kubeconfig="$state/scheduler.kubeconfig" \
    --authentication-kubeconfig="$state/scheduler.kubeconfig" --authorization-kubeconfig="$state/scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$(free_port)" --v=1

  # --- kubelet ---------------------------------------------------------------------------------
  # Its cgroups live under /tokenwarden-node in every hierarchy (cgroup v1 here), so down removes
  # exactly those. cpuset needs its cpus and mems copied from the parent before anything joins.
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h" ] || continue
    mkdir -p "$h$CGROUP_ROOT"
    if [ -f "${h}cpuset.cpus" ]; then
      cat "${h}cpuset.cpus" > "$h$CGROUP_ROOT/cpuset.cpus"
      cat "${h}cpuset.mems" > "$h$CGROUP_ROOT/cpuset.mems"
    fi
  done
  kubeconfig_for kubelet "system:node:$NODE_NAME" > "$state/kubelet.kubeconfig"
  local kport
  kport=$(free_port)
  cat > "$state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $kport
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
# This machine has cgroup v1 and may have swap.
failCgroupV1: false
failSwapOn: false
podLogsDir: $state/pod-logs
volumePluginDir: $state/volume-plugins
resolvConf: /etc/resolv.conf
maxPods: 30
serializeImagePulls: false
# A shared development machine: never evict the test's Pods for the host's disk or memory.
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
enforceNodeAllocatable: [pods]
registerNode: true
rotateCertificates: false
EOF
  start kubelet "$bins/kubelet" --config="$state/kubelet.yaml" --kubeconfig="$state/kubelet.kubeconfig" \
    --root-dir="$state/kubelet" --cert-dir="$state/certs" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
  for ((i = 0; i < 240; i++)); do
    [ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
    owned_pid kubelet >/dev/null || die "the kubelet exited; last lines of $state/logs/kubelet.log:$(echo; tail -15 "$state/logs/kubelet.log")"
    sleep 0.5
  done
  [ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ] \
    || die "node $NODE_NAME not Ready after 120 s; see $state/logs/kubelet.log"
  log "node $NODE_NAME Ready in $((SECONDS - t0))s ($("$bins/kubelet" --version)); logs in $state/logs, Pod logs in $state/pod-logs"
}

kubeconfig_for() { # cert-name user
  local pki server
  pki=$(cpjson 's.stateDir')/pki
  server=$(cpjson s.server)
  cat <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority: "$pki/ca.crt"}}]
users: [{name: "$2", user: {client-certificate: "$pki/$1.crt", client-key: "$pki/$1.key"}}]
contexts: [{name: default, context: {cluster: local, user: "$2"}}]
current-context: default
EOF
}

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 10000))
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

load() { # archive name
  ctr -a "$sock" -n k8s.io images import "$1" >/dev/null
  # ctr names it by the archive's ref; the CRI looks images up by their normalized name
  local name=$2
  case $name in */*) ;; *) name=docker.io/library/$name ;; esac
  if [ "$name" != "$2" ]; then ctr -a "$sock" -n k8s.io images tag --force "$2" "$name" >/dev/null; fi
}

down() {
  local left=()
  [ -d "$state" ] || { ip link show "$BRIDGE" >/dev/null 2>&1 || { log "down: nothing was running"; return 0; }; }
  stop kubelet
  stop kube-scheduler
  if owned_pid containerd >/dev/null; then
    # every container and sandbox, killed and deleted through containerd (the kubelet is gone)
    local id
    for id in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for ((i = 0; i < 50; i++)); do
      ctr -a "$sock" -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"' | grep -q . || break
      sleep 0.2
    done
    for id in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr -a "$sock" -n k8s.io containers ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # shims whose containerd is gone (they carry our socket in their argv)
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  # mounts: Pod volumes, network namespaces, container root filesystems; deepest first
  local m
  for ((i = 0; i < 3; i++)); do
    for m in $(awk -v s="$state" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  # cgroups: deepest first, in every hierarchy
  local h
  for h in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # the folders containerd 1.6 keeps at fixed paths (shim sockets), removed only when empty
  rmdir /run/containerd/s /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null || true
  # the kubelet's symlinks to our Pod logs
  find /var/log/containers -maxdepth 1 -lname "$state/*" -delete 2>/dev/null || true
  # network
  iptables -w -t nat -D PREROUTING -i "$BRIDGE" -j "$CHAIN" 2>/dev/null || true
  iptables -w -t nat -F "$CHAIN" 2>/dev/null && iptables -w -t nat -X "$CHAIN" 2>/dev/null || true
  while iptables -w -D INPUT -i "$BRIDGE" -d 127.0.0.0/8 -m conntrack ! --ctstate DNAT -j DROP 2>/dev/null; do :; done
  ip link del "$BRIDGE" 2>/dev/null || true
  # what is left is a failure
  awk -v s="$state" 'index($5, s) == 1' /proc/self/mountinfo | grep -q . && left+=("mounts under $state")
  for h in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do [ -d "$h" ] && left+=("cgroup $h"); done
  pgrep -f -- "$state" >/dev/null && left+=("processes: $(pgrep -af -- "$state" | cut -c1-120 | tr '\n' ';')")
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
  if [ ${#left[@]} -gt 0 ]; then
    printf '[node] down: left behind: %s\n' "${left[@]}" >&2
    return 1
  fi
  rm -rf "$state"
  log "down: no process, container, mount, cgroup, bridge or iptables rule left"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  check) check ;;
  load) [ $# -eq 3 ] || die "usage: $0 load ARCHIVE NAME"; owned_pid containerd >/dev/null || die "the node is not up"; load "$2" "$3" ;;
  *) echo "usage: $0 up|down|check|load ARCHIVE NAME" >&2; exit 2 ;;
esac
