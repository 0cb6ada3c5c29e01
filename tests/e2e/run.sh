#!/usr/bin/env bash
# Herald end to end on a kind cluster: Strimzi and a one-node KRaft Kafka, the Herald image built
# and loaded, the chart installed, an example pipeline applied and driven through sends, reads,
# lag-driven scaling and deletion, and a pipeline on the TLS listener with SCRAM KafkaUsers.
#
#   tests/e2e/run.sh            # creates (and afterwards deletes) the kind cluster herald-e2e
#   KEEP_CLUSTER=1 tests/e2e/run.sh
#
# Where Docker or kind is missing it prints "SKIPPED: <what is missing>" and exits 0.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"

CLUSTER="${CLUSTER:-herald-e2e}"
STRIMZI_VERSION="0.45.0"
IMAGE="ghcr.io/herald-dev/herald:e2e"
NS="apps"
PIPELINE="social"

missing=()
if ! command -v docker >/dev/null; then
  missing+=("docker")
elif ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine")
fi
command -v kind >/dev/null || missing+=("kind")
if [ "${#missing[@]}" -gt 0 ]; then
  (IFS=','; echo "SKIPPED: not available here: ${missing[*]}")
  exit 0
fi
# shellcheck source=tests/tools.sh
. tests/tools.sh

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "FAILED: $*" >&2
  kubectl get all,npipe -A -o wide >&2 || true
  kubectl logs -n herald-system deploy/herald --tail=100 >&2 || true
  exit 1
}
# Polls `$@` every 2 s until it succeeds or `$limit` seconds have passed.
until_ok() {
  local limit="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${limit}s waiting for $what"
    sleep 2
  done
}

step "kind cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 120s
fi
if [ -z "${KEEP_CLUSTER:-}" ]; then
  trap 'kind delete cluster --name "$CLUSTER"' EXIT
fi
kubectl config use-context "kind-$CLUSTER"

step "Strimzi $STRIMZI_VERSION and a one-node KRaft Kafka"
kubectl create namespace kafka --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n kafka -f "https://github.com/strimzi/strimzi-kafka-operator/releases/download/${STRIMZI_VERSION}/strimzi-cluster-operator-${STRIMZI_VERSION}.yaml"
kubectl wait -n kafka deploy/strimzi-cluster-operator --for=condition=Available --timeout=300s
kubectl apply -f deploy/examples/strimzi-kafka.yaml
kubectl wait -n kafka kafka/my-cluster --for=condition=Ready --timeout=600s

step "build and load $IMAGE"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "helm install herald"
helm upgrade --install herald charts/herald --namespace herald-system --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --wait --timeout 5m

step "apply the minimal pipeline and wait for Ready"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f deploy/examples/minimal.yaml
# One broker: the topic cannot have 3 replicas here.
kubectl patch -n "$NS" npipe "$PIPELINE" --type merge -p '{"spec":{"topic":{"replicas":1}}}'
kubectl wait -n "$NS" npipe/"$PIPELINE" --for=condition=Ready --timeout=600s

# Port-forwards to the producer and consumer Services.
kubectl port-forward -n "$NS" "svc/$PIPELINE-producer" 18080:8080 >/dev/null 2>&1 &
pf_producer=$!
kubectl port-forward -n "$NS" "svc/$PIPELINE-consumer" 18081:8081 >/dev/null 2>&1 &
pf_consumer=$!
trap 'kill "$pf_producer" "$pf_consumer" 2>/dev/null || true; [ -n "${KEEP_CLUSTER:-}" ] || kind delete cluster --name "$CLUSTER"' EXIT
until_ok 60 "the producer Service" curl -sf localhost:18080/readyz
until_ok 60 "the consumer Service" curl -sf localhost:18081/readyz

step "send 1,000 notifications through the producer Service"
for i in $(seq 1 1000); do
  to=$(( (i % 4) + 1 ))
  code="$(curl -s -o /dev/null -w '%{http_code}' -d "fromID=1&toID=$to&message=e2e+$i" localhost:18080/send)"
  [ "$code" = 200 ] || fail "send $i answered $code"
done

step "read them all back through the consumer Service"
count_all() {
  local total=0 n
  for user in 1 2 3 4; do
    n="$(curl -sf "localhost:18081/notifications/$user" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["notifications"]))')" || return 1
    total=$((total + n))
  done
  [ "$total" -ge 1000 ]
}
# Four users keep at most 100 each by default: raise the cap for this check.
kubectl patch -n "$NS" npipe "$PIPELINE" --type merge -p '{"spec":{"consumer":{"maxNotificationsPerUser":1000}}}'
kubectl rollout status -n "$NS" "deploy/$PIPELINE-consumer" --timeout=300s
until_ok 300 "1,000 notifications readable" count_all

step "create lag: consumers scale up to the partition count, PartitionsSaturated appears"
# Consumers that cannot start leave every new record unconsumed: lag that only more partitions
# could absorb.
kubectl patch -n "$NS" npipe "$PIPELINE" --type merge \
  -p '{"spec":{"consumer":{"image":"registry.invalid/herald:none","lagThreshold":1}}}'
for i in $(seq 1 5000); do
  curl -s -o /dev/null -d "fromID=1&toID=$(( (i % 4) + 1 ))&message=lag+$i" localhost:18080/send &
  if (( i % 50 == 0 )); then wait; fi
done
wait
partitions="$(kubectl get -n "$NS" npipe "$PIPELINE" -o jsonpath='{.spec.topic.partitions}')"
saturated() {
  [ "$(kubectl get -n "$NS" npipe "$PIPELINE" -o jsonpath='{.status.consumer.desiredReplicas}')" = "$partitions" ] &&
    kubectl get -n "$NS" npipe "$PIPELINE" -o jsonpath='{.status.conditions[?(@.type=="PartitionsSaturated")].status}' | grep -qx True
}
until_ok 600 "$partitions consumers and PartitionsSaturated" saturated
kubectl patch -n "$NS" npipe "$PIPELINE" --type json -p '[{"op":"remove","path":"/spec/consumer/image"}]'
kubectl rollout status -n "$NS" "deploy/$PIPELINE-consumer" --timeout=300s

step "metrics"
curl -sf localhost:18080/metrics | grep -q '^herald_producer_notifications_total{outcome="sent"}' || fail "producer metrics"
curl -sf localhost:18081/metrics | grep -q '^herald_consumer_records_total' || fail "consumer metrics"
kubectl port-forward -n herald-system svc/herald-metrics 18090:8080 >/dev/null 2>&1 &
pf_operator=$!
until_ok 60 "operator metrics" curl -sf localhost:18090/metrics
curl -sf localhost:18090/metrics | grep -q "^herald_operator_pipeline_ready{namespace=\"$NS\",pipeline=\"$PIPELINE\"} 1" || fail "operator metrics"
kill "$pf_operator" 2>/dev/null || true

step "a pipeline on the TLS listener with SCRAM: KafkaUsers, Ready, a notification through"
kubectl apply -f deploy/examples/secured.yaml
kubectl patch -n kafka npipe alerts --type merge -p '{"spec":{"topic":{"replicas":1}}}'
until_ok 300 "the KafkaUsers alerts-producer and alerts-consumer" \
  kubectl wait -n kafka kafkauser/alerts-producer kafkauser/alerts-consumer --for=condition=Ready --timeout=5s
kubectl wait -n kafka npipe/alerts --for=condition=Ready --timeout=600s
kubectl port-forward -n kafka svc/alerts-producer 18180:8080 >/dev/null 2>&1 &
pf_secured_producer=$!
kubectl port-forward -n kafka svc/alerts-consumer 18181:8081 >/dev/null 2>&1 &
pf_secured_consumer=$!
until_ok 60 "the secured producer Service" curl -sf localhost:18180/readyz
until_ok 60 "the secured consumer Service" curl -sf localhost:18181/readyz
secured_id="$(curl -sf -d 'fromID=1&toID=2&message=over+TLS+and+SCRAM' localhost:18180/send |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" || fail "secured send"
until_ok 120 "the secured notification readable" \
  sh -c "curl -sf localhost:18181/notifications/2 | grep -q '$secured_id'"
kill "$pf_secured_producer" "$pf_secured_consumer" 2>/dev/null || true
kubectl delete -n kafka npipe alerts --wait --timeout=300s

step "delete the pipeline: children and (deletionPolicy Delete) the topic go"
kubectl patch -n "$NS" npipe "$PIPELINE" --type merge -p '{"spec":{"topic":{"deletionPolicy":"Delete"}}}'
kubectl delete -n "$NS" npipe "$PIPELINE" --wait --timeout=300s
gone() {
  ! kubectl get -n "$NS" deploy,svc,pdb -l "app.kubernetes.io/instance=$PIPELINE" -o name | grep -q . &&
    ! kubectl get -n kafka kafkatopic "$NS.$PIPELINE" >/dev/null 2>&1
}
until_ok 300 "the children and the KafkaTopic deleted" gone

echo
echo "PASSED: Herald end to end on kind"
