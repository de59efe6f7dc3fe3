#!/usr/bin/env bash
# `make image`: the operator image, built without Docker and without a base image (buildah from
# scratch), written as an OCI archive to .cache/image/tokenwarden.oci.tar (IMAGE_ARCHIVE).
#
# What goes in, and nothing else (no shell, no package manager):
#   /usr/local/bin/node                 Node 24, the binary of the npm package `node` (package-lock.json)
#   /lib/x86_64-linux-gnu/..., /lib64/ld-linux-x86-64.so.2
#                                       the glibc, libstdc++ and libgcc_s it links (ldd), from this machine
#   /etc/ssl/certs/ca-certificates.crt  a CA bundle (Node reads it with --use-openssl-ca or NODE_EXTRA_CA_CERTS;
#                                       the operator itself trusts the cluster's CA from its kubeconfig)
#   /etc/passwd, /etc/group             user and group 65532 `nonroot`, the user the image runs as
#   /app/package.json, /app/src/        the operator's sources (Node 24 runs them by type stripping),
#                                       without src/cli/ (the kubectl plugin, `make plugin`)
#   /app/node_modules/                  production dependencies only (npm ci --omit=dev), without `node`,
#                                       type declarations, source maps and markdown (49 MB nothing reads)
#   /tmp                                empty (the Deployment mounts an emptyDir there)
# Every file is root's and read-only to 65532. Timestamps are fixed (--timestamp 0), so the same
# inputs give the same layer.
#
# The storage buildah uses is its own (.cache/image/storage), removed at the end; nothing is pulled.
#   IMG=tokenwarden:dev        the image name recorded in the archive (and imported into containerd)
#   IMAGE_ARCHIVE=<path>       where the archive goes
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
IMG=${IMG:-tokenwarden:dev}
IMAGE_ARCHIVE=${IMAGE_ARCHIVE:-$root/.cache/image/tokenwarden.oci.tar}
log() { echo "[image] $*" >&2; }

missing=()
command -v buildah >/dev/null || missing+=(buildah)
[ -r /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  echo "make image needs the Debian packages: ${missing[*]} (apt-get install ${missing[*]}; .ci/run installs them as root)" >&2
  exit 1
fi
[ "$(id -u)" = 0 ] || { echo "make image runs buildah as root (its storage and the from-scratch layer need it)" >&2; exit 1; }

node_bin=$(readlink -f node_modules/node/bin/node 2>/dev/null || true)
[ -x "$node_bin" ] || { echo "make image: node_modules/node/bin/node missing; run npm ci first" >&2; exit 1; }

work=$root/.cache/image
stage=$work/rootfs
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
rm -rf "$stage" "$work/storage" "$work/run"
mkdir -p "$stage"/{usr/local/bin,etc/ssl/certs,app,tmp} "$(dirname "$IMAGE_ARCHIVE")"
cleanup() {
  buildah "${storage[@]}" rm --all >/dev/null 2>&1 || true
  rm -rf "$stage" "$work/storage" "$work/run"
}
trap cleanup EXIT

# Node and the shared libraries it links, at the paths the dynamic loader looks them up.
cp "$node_bin" "$stage/usr/local/bin/node"
for lib in $(ldd "$node_bin" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
  real=$(readlink -f "$lib")
  mkdir -p "$stage$(dirname "$lib")"
  cp "$real" "$stage$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$stage/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$stage/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$stage/etc/group"

# The operator: production dependencies as package-lock.json pins them (--ignore-scripts: the one
# install script is the `node` package's, and the image has its own Node), then its sources.
cp package.json package-lock.json "$stage/app/"
(cd "$stage/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
rm -rf "$stage/app/node_modules/node" "$stage/app/node_modules/.bin/node" "$stage/app/node_modules/.package-lock.json" "$stage/app/package-lock.json"
find "$stage/app/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' \) -delete
cp -r src "$stage/app/src"
rm -rf "$stage/app/src/cli"
chmod -R u=rwX,go=rX "$stage"
chmod 1777 "$stage/tmp"

# The staged root filesystem must run on its own, as 65532: Node with only the libraries copied
# above, and every module of the operator resolvable from /app (a missing library or production
# dependency fails here, not in a Pod).
(cd / && env -i NODE_ENV=production /usr/sbin/chroot --userspec=65532:65532 "$stage" /usr/local/bin/node --input-type=module -e "
  process.chdir('/app');
  for (const m of ['config', 'controller/logger', 'controller/leader-election', 'kube/client', 'kube/kubeconfig',
    'observability/metrics', 'observability/server', 'operator']) await import('/app/src/' + m + '.ts');
  console.log('[image] the staged root filesystem loads the operator: node', process.version, 'as uid', process.getuid());
") >&2 || { echo "make image: the staged image cannot load the operator (above)" >&2; exit 1; }

ctr=$(buildah "${storage[@]}" from scratch)
buildah "${storage[@]}" copy --chown 0:0 "$ctr" "$stage/" / >/dev/null
buildah "${storage[@]}" config \
  --user 65532:65532 \
  --workingdir /app \
  --env NODE_ENV=production \
  --entrypoint '["/usr/local/bin/node", "src/main.ts"]' \
  --cmd '' \
  --port 8080 --port 8081 \
  --created-by 'tools/image.sh (make image)' \
  --label org.opencontainers.image.title=tokenwarden \
  --label org.opencontainers.image.source=https://github.com/tokenwarden/tokenwarden \
  "$ctr"
buildah "${storage[@]}" commit --quiet --timestamp 0 --format oci "$ctr" "$IMG" >/dev/null
rm -f "$IMAGE_ARCHIVE"
buildah "${storage[@]}" push --quiet "$IMG" "oci-archive:$IMAGE_ARCHIVE:$IMG"
size=$(du -m "$IMAGE_ARCHIVE" | cut -f1)
log "$IMG: $IMAGE_ARCHIVE (${size} MB)"
echo "$IMAGE_ARCHIVE"
