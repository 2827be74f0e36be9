#!/usr/bin/env bash
# `make image`: builds config/image/Dockerfile, unchanged, with podman and no registry. The two Node
# base images its FROM lines name are made here first, from Debian packages and the pinned Node:
#   node:$NODE_VERSION-bookworm-slim  Debian 12 minbase (mmdebstrap) + the node binary of make tools
#   node:$NODE_VERSION-bookworm       the above + npm and a C compiler (build stages only)
# Both are kept in podman's store under the names docker.io/library/node:... resolves to, so the
# Dockerfile's FROM lines find them with --pull=never, and are rebuilt only when missing.
# Docker users build from the public bases instead: docker build -f config/image/Dockerfile .
#
#   make image                        # localhost/traffic-mirror-operator:dev
#   TMO_IMAGE=localhost/tmo:x make image
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../tools/versions.env
. "$ROOT/test/tools/versions.env"
export PATH="$ROOT/.tools/bin:$PATH"
IMAGE=${TMO_IMAGE:-localhost/traffic-mirror-operator:dev}
CACHE=${TMO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/traffic-mirror-operator/tools}
SLIM=docker.io/library/node:$NODE_VERSION-bookworm-slim
FULL=docker.io/library/node:$NODE_VERSION-bookworm

# runc, not crun (podman's default), which refuses hybrid cgroup hierarchies.
podman() { command podman --runtime "$(command -v runc)" "$@"; }
log() { printf '[image] %s\n' "$*" >&2; }

for c in podman mmdebstrap node runc; do
  command -v "$c" >/dev/null 2>&1 || {
    log "$c is missing: run bash test/tools/install.sh image (as root: it installs Debian's podman and mmdebstrap)"
    exit 1
  }
done

# One build of the bases at a time per machine (podman's store is shared by every clone).
exec 8>"$CACHE/.image-lock"
flock 8

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! podman image exists "$SLIM"; then
  log "making $SLIM (mmdebstrap minbase from this machine's apt sources, node $NODE_VERSION)"
  # The apt sources of this machine (the mirror it is allowed to reach); a snapshot mirror's
  # Release files may be past their Valid-Until date.
  mapfile -t sources < <(
    . /etc/os-release
    echo "deb http://deb.debian.org/debian $VERSION_CODENAME main"
    echo "deb http://deb.debian.org/debian $VERSION_CODENAME-updates main"
    echo "deb http://deb.debian.org/debian-security $VERSION_CODENAME-security main"
  )
  mmdebstrap --quiet --variant=minbase --format=tar \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="copy-in $(readlink -f "$(command -v node)") /usr/local/bin" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$work/slim.tar" "${sources[@]}"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=$NODE_VERSION" --change 'CMD ["node"]' \
    "$work/slim.tar" "$SLIM" >/dev/null
  podman image rm -f "$FULL" >/dev/null 2>&1 || true
fi

# The build image's contents, by revision: one with another revision (or none) is made again.
FULL_REV=2
if [ "$(podman image inspect "$FULL" --format '{{index .Labels "tmo.base.revision"}}' 2>/dev/null)" != "$FULL_REV" ]; then
  log "making $FULL (adds npm $NPM_VERSION and a C compiler)"
  mkdir -p "$work/full"
  (cd "$work/full" && npm pack --silent "npm@$NPM_VERSION" >/dev/null && mv "npm-$NPM_VERSION.tgz" npm.tgz)
  # This machine's CA bundle: its egress may re-sign TLS, and `npm ci` in the build stage must
  # trust registry.npmjs.org through it. Only the build stage uses this image.
  cp /etc/ssl/certs/ca-certificates.crt "$work/full/ca-certificates.crt"
  cat >"$work/full/Containerfile" <<EOF
FROM $SLIM
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ADD npm.tgz /usr/local/lib/node_modules/
RUN mv /usr/local/lib/node_modules/package /usr/local/lib/node_modules/npm \\
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && npm --version
# A C compiler for the collector's addon stage, as the public node:bookworm image has one.
RUN apt-get -o Acquire::Check-Valid-Until=false update \\
 && apt-get install -y --no-install-recommends gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/* && cc --version
ENV NPM_CONFIG_CAFILE=/etc/ssl/certs/ca-certificates.crt
LABEL tmo.base.revision=$FULL_REV
EOF
  podman build --quiet --pull=never --network=host -t "$FULL" "$work/full" >/dev/null
fi

log "building $IMAGE from config/image/Dockerfile"
old=$(podman image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
podman build --quiet --pull=never --network=host --build-arg "NODE_VERSION=$NODE_VERSION" \
  -f "$ROOT/config/image/Dockerfile" -t "$IMAGE" "$ROOT" >/dev/null
# The image this one replaces, now untagged, would only take disk space.
if [ -n "$old" ] && [ "$old" != "$(podman image inspect "$IMAGE" --format '{{.Id}}')" ]; then
  podman image rm "$old" >/dev/null 2>&1 || true
fi
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
log "$IMAGE: $((size / 1000000)) MB ($size bytes)"
