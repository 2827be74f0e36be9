#!/usr/bin/env bash
# End-to-end on kind: build the image, create a kind cluster, load the image, helm install the
# chart, run the EC2 emulator on the host (reachable from the cluster through a relay on the kind
# network), apply a collector target and a node-level policy, and wait until the policy is Ready
# with sessions in the emulator; then delete the policy and check that its sessions are gone.
# Needs docker and kind; prints "skipped" and exits 0 without them (CI machines have no Docker).
#
#   make e2e-kind                      # or: bash test/e2e/kind.sh
#   TMO_E2E_KEEP=1 make e2e-kind       # keep the cluster afterwards (kind delete cluster --name tmo-e2e)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$ROOT/.tools/bin:$PATH"
CLUSTER=${TMO_E2E_CLUSTER:-tmo-e2e}
IMAGE=traffic-mirror-operator:e2e
NS=traffic-mirror-system
SIM_PORT=${TMO_E2E_SIM_PORT:-4599}
RELAY_PORT=${TMO_E2E_RELAY_PORT:-4600}
TIMEOUT=${TMO_E2E_TIMEOUT:-180s}

log() { printf '[e2e-kind] %s\n' "$*"; }

missing=()
for c in docker kind helm kubectl node curl; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "skipped: ${missing[*]} not installed (install Docker and kind, then run make tools)"
  exit 0
fi
if ! docker info >/dev/null 2>&1; then
  log "skipped: the Docker daemon does not answer"
  exit 0
fi

pids=()
WORK=$(mktemp -d)
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    log "FAILED; operator logs:"
    kubectl --context "kind-$CLUSTER" -n "$NS" logs -l app.kubernetes.io/component=operator --tail=50 2>/dev/null || true
  fi
  if [ -z "${TMO_E2E_KEEP:-}" ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

log "building $IMAGE"
DOCKER_BUILDKIT=1 docker build -q -f "$ROOT/config/image/Dockerfile" -t "$IMAGE" "$ROOT" >/dev/null

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 120s >/dev/null
fi
export KUBECONFIG="$WORK/kubeconfig"
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
kind load docker-image "$IMAGE" --name "$CLUSTER" >/dev/null

# The host's address on the kind network is where pods reach the relay.
GATEWAY=$(docker network inspect kind -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' | tr ' ' '\n' | grep -E '^[0-9.]+$' | head -1)
[ -n "$GATEWAY" ] || { log "cannot find the kind network's IPv4 gateway"; exit 1; }

log "starting the EC2 emulator on 127.0.0.1:$SIM_PORT, relayed at $GATEWAY:$RELAY_PORT"
node "$ROOT/test/ec2-sim/main.ts" --port "$SIM_PORT" >"$WORK/ec2-sim.log" 2>&1 &
pids+=($!)
node "$ROOT/test/e2e/relay.ts" "$GATEWAY" "$RELAY_PORT" 127.0.0.1 "$SIM_PORT" >"$WORK/relay.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$SIM_PORT/_sim/state" >/dev/null && break; sleep 0.2; done

# kind's nodes have no AWS provider IDs: add EKS-like Node objects (tainted, nothing runs there)
# and seed the emulator with their instances and ENIs.
node "$ROOT/test/e2e/fake-eks.ts" nodes | kubectl apply -f - >/dev/null
node "$ROOT/test/e2e/fake-eks.ts" seed | curl -sf -X POST --data-binary @- "http://127.0.0.1:$SIM_PORT/_sim/seed" >/dev/null

log "installing the chart"
helm upgrade --install tmo "$ROOT/charts/traffic-mirror-operator" -n "$NS" --create-namespace \
  --set clusterName=e2e --set aws.region=us-east-1 --set aws.ec2Endpoint="http://$GATEWAY:$RELAY_PORT" \
  --set image.repository=traffic-mirror-operator --set image.tag=e2e --set image.pullPolicy=Never \
  --set operator.logLevel=debug >/dev/null
kubectl -n "$NS" rollout status deployment/tmo-traffic-mirror-operator --timeout="$TIMEOUT"

log "applying a collector target and a node-level policy"
kubectl create namespace e2e --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: trafficmirror.twtech.io/v1alpha1
kind: TrafficMirrorTarget
metadata:
  name: e2e-collector
spec:
  collector:
    nodeSelector:
      traffic-mirror.twtech.io/collector: "true"
  allowedNamespaces:
    from: List
    names: ["e2e"]
  allowNodeSources: true
---
apiVersion: trafficmirror.twtech.io/v1alpha1
kind: TrafficMirrorPolicy
metadata:
  name: e2e-nodes
  namespace: e2e
spec:
  nodeSelector:
    matchLabels:
      example.com/pool: e2e
  targetRef:
    name: e2e-collector
YAML
kubectl wait --for=condition=Ready trafficmirrortarget/e2e-collector --timeout="$TIMEOUT"
kubectl -n e2e wait --for=condition=Ready trafficmirrorpolicy/e2e-nodes --timeout="$TIMEOUT"
sessions=$(curl -sf "http://127.0.0.1:$SIM_PORT/_sim/state" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).sessions.length))')
log "policy Ready; $sessions mirror sessions in the emulator"
[ "$sessions" -gt 0 ] || { log "expected mirror sessions"; exit 1; }

log "deleting the policy: its sessions must go with it"
kubectl -n e2e delete trafficmirrorpolicy/e2e-nodes --timeout="$TIMEOUT" >/dev/null
sessions=$(curl -sf "http://127.0.0.1:$SIM_PORT/_sim/state" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).sessions.length))')
[ "$sessions" = 0 ] || { log "expected no sessions after the delete, found $sessions"; exit 1; }
kubectl delete trafficmirrortarget/e2e-collector --timeout="$TIMEOUT" >/dev/null
helm uninstall tmo -n "$NS" >/dev/null
log "passed"
