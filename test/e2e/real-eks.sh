#!/usr/bin/env bash
# Smoke test against a real EKS cluster where the operator is already installed (docs/real-eks.md).
# It runs only when asked to and when it can reach both AWS and the cluster:
#   TMO_REAL_EKS=1 KUBECONFIG=~/.kube/config AWS_PROFILE=… bash test/e2e/real-eks.sh
# Otherwise it prints "skipped" and exits 0. It makes real Traffic Mirror sessions (billed per
# ENI-hour) for a few minutes and deletes them again, also when interrupted.
#
# Settings: TMO_NAMESPACE (traffic-mirror-system), TMO_RELEASE (tmo), TMO_SMOKE_NAMESPACE
# (tmo-smoke), TMO_SMOKE_NODE (a worker node to mirror; default: the first node that is not a
# collector), TMO_TIMEOUT (300s).
set -euo pipefail

log() { printf '[real-eks] %s\n' "$*"; }

if [ "${TMO_REAL_EKS:-}" != 1 ]; then
  log "skipped: set TMO_REAL_EKS=1 (and KUBECONFIG and AWS credentials) to run against a real cluster"
  exit 0
fi
if [ -z "${KUBECONFIG:-}" ]; then
  log "skipped: KUBECONFIG is not set"
  exit 0
fi
for c in aws kubectl; do
  command -v "$c" >/dev/null 2>&1 || { log "skipped: $c is not installed"; exit 0; }
done
if ! aws sts get-caller-identity >/dev/null 2>&1; then
  log "skipped: no AWS credentials (aws sts get-caller-identity failed)"
  exit 0
fi
kubectl version >/dev/null 2>&1 || { log "skipped: the cluster in KUBECONFIG does not answer"; exit 0; }

NS=${TMO_NAMESPACE:-traffic-mirror-system}
SMOKE_NS=${TMO_SMOKE_NAMESPACE:-tmo-smoke}
TIMEOUT=${TMO_TIMEOUT:-300s}
COLLECTOR_LABEL=traffic-mirror.twtech.io/collector

log "checking the installation in $NS"
kubectl -n "$NS" get deployment -l app.kubernetes.io/component=operator -o name | grep -q . \
  || { log "no operator Deployment in $NS: install the chart first (docs/real-eks.md)"; exit 1; }
kubectl -n "$NS" wait --for=condition=Available deployment -l app.kubernetes.io/component=operator --timeout="$TIMEOUT"
collectors=$(kubectl get nodes -l "$COLLECTOR_LABEL=true" -o name | wc -l)
[ "$collectors" -gt 0 ] || { log "no node is labelled $COLLECTOR_LABEL=true"; exit 1; }
NODE=${TMO_SMOKE_NODE:-$(kubectl get nodes -l "!$COLLECTOR_LABEL" -o jsonpath='{.items[0].metadata.name}')}
[ -n "$NODE" ] || { log "no worker node without the collector label to mirror"; exit 1; }
CLUSTER=$(kubectl -n "$NS" get deployment -l app.kubernetes.io/component=operator \
  -o jsonpath='{.items[0].spec.template.spec.containers[0].env[?(@.name=="TMO_CLUSTER_NAME")].value}')
log "cluster $CLUSTER; mirroring the pod traffic of one test pod on $NODE to the collector"

cleanup() {
  local rc=$?
  log "cleaning up"
  kubectl -n "$SMOKE_NS" delete trafficmirrorpolicy tmo-smoke --ignore-not-found --timeout="$TIMEOUT" >/dev/null || true
  kubectl delete trafficmirrortarget tmo-smoke --ignore-not-found --timeout="$TIMEOUT" >/dev/null || true
  kubectl delete namespace "$SMOKE_NS" --ignore-not-found --wait=false >/dev/null || true
  exit "$rc"
}
trap cleanup EXIT

kubectl create namespace "$SMOKE_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: trafficmirror.twtech.io/v1alpha1
kind: TrafficMirrorTarget
metadata:
  name: tmo-smoke
spec:
  collector:
    nodeSelector:
      $COLLECTOR_LABEL: "true"
  allowedNamespaces:
    from: List
    names: ["$SMOKE_NS"]
  allowNodeSources: false
---
apiVersion: v1
kind: Pod
metadata:
  name: tmo-smoke-web
  namespace: $SMOKE_NS
  labels:
    app: tmo-smoke
spec:
  nodeName: $NODE
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: { type: RuntimeDefault }
  containers:
    - name: web
      image: public.ecr.aws/docker/library/busybox:stable
      command: ["sh", "-c", "while true; do wget -q -O /dev/null -T 2 http://example.com || true; sleep 5; done"]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: { drop: ["ALL"] }
---
apiVersion: trafficmirror.twtech.io/v1alpha1
kind: TrafficMirrorPolicy
metadata:
  name: tmo-smoke
  namespace: $SMOKE_NS
spec:
  podSelector:
    matchLabels:
      app: tmo-smoke
  targetRef:
    name: tmo-smoke
  packetLength: 128
YAML
kubectl -n "$SMOKE_NS" wait --for=condition=Ready pod/tmo-smoke-web --timeout="$TIMEOUT"
kubectl wait --for=condition=Ready trafficmirrortarget/tmo-smoke --timeout="$TIMEOUT"
kubectl -n "$SMOKE_NS" wait --for=condition=Ready trafficmirrorpolicy/tmo-smoke --timeout="$TIMEOUT"
kubectl -n "$SMOKE_NS" get trafficmirrorpolicy tmo-smoke -o wide

sessions=$(aws ec2 describe-traffic-mirror-sessions \
  --filters "Name=tag:traffic-mirror.twtech.io/cluster,Values=$CLUSTER" \
  --query 'length(TrafficMirrorSessions)' --output text)
log "$sessions sessions tagged for $CLUSTER in AWS"
[ "$sessions" -gt 0 ] || { log "expected at least one session in AWS"; exit 1; }

log "deleting the policy: the operator must delete its sessions"
kubectl -n "$SMOKE_NS" delete trafficmirrorpolicy tmo-smoke --timeout="$TIMEOUT" >/dev/null
owned=$(aws ec2 describe-traffic-mirror-sessions \
  --filters "Name=tag:traffic-mirror.twtech.io/cluster,Values=$CLUSTER" \
            "Name=tag:traffic-mirror.twtech.io/owners,Values=$SMOKE_NS/tmo-smoke" \
  --query 'length(TrafficMirrorSessions)' --output text)
[ "$owned" = 0 ] || { log "expected the policy's sessions to be gone, found $owned"; exit 1; }
log "passed"
