#!/usr/bin/env bash
# Herald end to end on a kind cluster: Strimzi and a one-node KRaft Kafka, the Herald image built
# and loaded, the chart installed, an example pipeline applied and driven through sends, reads,
# lag-driven scaling and deletion, and a pipeline on the TLS listener with SCRAM KafkaUsers.
#
#   tests/e2e/run.sh            # creates (and afterwards deletes) the kind cluster herald-e2e
#   KEEP_CLUSTER=1 tests/e2e/run.sh
#
# Needs only docker (with a running engine), kind, kubectl, helm and curl on the PATH; where one
# is missing it prints "SKIPPED: <what is missing>" and exits 0. Pinned: Strimzi 0.45.0 on a
# Kubernetes 1.32.2 kind node (Strimzi 0.45 crash-loops on Kubernetes 1.33 and later).
set -Eeuo pipefail
# Only builtins until the tools are known to be there.
repo="$(cd "${BASH_SOURCE[0]%/*}/../.." && pwd)"
cd "$repo"

CLUSTER="${CLUSTER:-herald-e2e}"
STRIMZI_VERSION="0.45.0"
# kind v0.27.0's node image for Kubernetes 1.32.2.
KIND_NODE_IMAGE="kindest/node:v1.32.2@sha256:f226345927d7e348497136874b6d207e0b32cc52154ad8323129352923a3142f"
IMAGE="ghcr.io/herald-dev/herald:e2e"
NS="apps"
PIPELINE="social"

missing=()
for tool in docker kind kubectl helm curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  (IFS=','; echo "SKIPPED: not available here: ${missing[*]}")
  exit 0
fi

step() { printf '\n==> %s\n' "$*"; }

# On any failure: what a person debugging it would look at first.
report() {
  set +e
  kubectl get npipe -A -o yaml >&2
  kubectl get all,pdb,kafkatopic,kafkauser -A -o wide >&2
  kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 60 >&2
  kubectl logs -n herald-system deploy/herald --tail=200 >&2
  for ns in "$NS" kafka; do
    for pod in $(kubectl get pods -n "$ns" -l app.kubernetes.io/managed-by=herald-operator -o name 2>/dev/null); do
      echo "--- $ns/$pod" >&2
      kubectl logs -n "$ns" "$pod" --tail=50 >&2
    done
  done
}
on_error() {
  local status=$?
  echo "FAILED (exit $status) at line ${BASH_LINENO[0]}: $BASH_COMMAND" >&2
  report
  exit "$status"
}
trap on_error ERR
fail() {
  trap - ERR
  echo "FAILED: $*" >&2
  report
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

# Port-forwards to Services, by local port (their pids in $forwards, one file per port: bash 3,
# as macOS ships it, has no associative arrays). `kubectl port-forward svc/...` picks one pod and
# dies with it, so every forward is restarted after a rollout.
forwards="$(mktemp -d)"
forward() {
  local ns="$1" service="$2" local_port="$3" port="$4"
  stop_forward "$local_port"
  kubectl port-forward -n "$ns" "svc/$service" "$local_port:$port" >/dev/null 2>&1 &
  echo $! >"$forwards/$local_port"
  until_ok 60 "a port-forward to $ns/$service" curl -sf "localhost:$local_port/readyz"
}
# /metrics has its own port, which no Service exposes (Prometheus scrapes the pods): forward to
# one pod of the Deployment.
forward_metrics() {
  local ns="$1" deployment="$2" local_port="$3" port="$4"
  stop_forward "$local_port"
  kubectl port-forward -n "$ns" "deploy/$deployment" "$local_port:$port" >/dev/null 2>&1 &
  echo $! >"$forwards/$local_port"
  until_ok 60 "a port-forward to the metrics of $ns/$deployment" curl -sf "localhost:$local_port/metrics"
}
stop_forward() {
  if [ -f "$forwards/$1" ]; then
    kill "$(cat "$forwards/$1")" 2>/dev/null || true
    rm -f "$forwards/$1"
  fi
}
cleanup() {
  local pidfile
  for pidfile in "$forwards"/*; do
    [ -f "$pidfile" ] && stop_forward "${pidfile##*/}"
  done
  rm -rf "$forwards"
  [ -n "${KEEP_CLUSTER:-}" ] || kind delete cluster --name "$CLUSTER"
}
trap cleanup EXIT

# An example with one topic replica (the cluster has one broker), applied as is otherwise.
apply_example() {
  local file="$1" ns="$2"
  kubectl patch --local -f "$file" --type merge -p '{"spec":{"topic":{"replicas":1}}}' -o yaml |
    kubectl apply -n "$ns" -f -
}

rollout() {
  kubectl rollout status -n "$1" "deploy/$2" --timeout=300s
}

step "kind cluster $CLUSTER (${KIND_NODE_IMAGE%@*})"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER"

step "Strimzi $STRIMZI_VERSION in namespace kafka, and a one-node KRaft Kafka"
kubectl create namespace kafka --dry-run=client -o yaml | kubectl apply -f -
# The release YAML binds its RBAC to namespace myproject; install it into kafka as Strimzi's
# documentation does, by rewriting the namespace.
curl -sfL "https://github.com/strimzi/strimzi-kafka-operator/releases/download/${STRIMZI_VERSION}/strimzi-cluster-operator-${STRIMZI_VERSION}.yaml" |
  sed 's/namespace: myproject/namespace: kafka/' | kubectl apply -n kafka -f -
kubectl wait -n kafka deploy/strimzi-cluster-operator --for=condition=Available --timeout=300s
kubectl apply -f deploy/examples/strimzi-kafka.yaml
kubectl wait -n kafka kafka/my-cluster --for=condition=Ready --timeout=600s

step "build and load $IMAGE"
# No provenance attestation: kind load cannot import an image index from the containerd store.
docker build --provenance=false -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "helm install herald"
helm upgrade --install herald charts/herald --namespace herald-system --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --wait --timeout 5m

step "apply the minimal pipeline and wait for Ready"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
apply_example deploy/examples/minimal.yaml "$NS"
kubectl wait -n "$NS" npipe/"$PIPELINE" --for=condition=Ready --timeout=600s
forward "$NS" "$PIPELINE-producer" 18080 8080
forward "$NS" "$PIPELINE-consumer" 18081 8081

step "send 1,000 notifications through the producer Service"
for i in $(seq 1 1000); do
  to=$(((i % 4) + 1))
  code="$(curl -s -o /dev/null -w '%{http_code}' -d "fromID=1&toID=$to&message=e2e+$i" localhost:18080/send)"
  [ "$code" = 200 ] || fail "send $i answered $code"
done

step "read them all back through the consumer Service"
count_all() {
  local total=0 n body
  for user in 1 2 3 4; do
    body="$(curl -sf "localhost:18081/notifications/$user")" || return 1
    # Notification ids are the only string-valued "id" fields.
    n="$(printf '%s' "$body" | grep -o '"id":"[^"]*"' | wc -l)"
    total=$((total + n))
  done
  [ "$total" -ge 1000 ]
}
# Four users keep at most 100 each by default: raise the cap for this check.
kubectl patch -n "$NS" npipe "$PIPELINE" --type merge -p '{"spec":{"consumer":{"maxNotificationsPerUser":1000}}}'
until_ok 120 "the consumer Deployment to carry the new cap" \
  sh -c "kubectl get -n $NS deploy/$PIPELINE-consumer -o yaml | grep -q '\"1000\"'"
rollout "$NS" "$PIPELINE-consumer"
forward "$NS" "$PIPELINE-consumer" 18081 8081
until_ok 300 "1,000 notifications readable" count_all

step "create lag: consumers scale up to the partition count, PartitionsSaturated appears"
# Consumers that cannot start leave every new record unconsumed: lag only more partitions could
# absorb. Recreate (for this test only) replaces every consumer at once, so no old pod keeps
# consuming; the load runs until the condition is seen, so the lag cannot drain first.
kubectl patch -n "$NS" deploy "$PIPELINE-consumer" --type merge \
  -p '{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}'
kubectl patch -n "$NS" npipe "$PIPELINE" --type merge \
  -p '{"spec":{"consumer":{"image":"registry.invalid/herald:none","lagThreshold":1}}}'
(
  i=0
  while true; do
    for _ in $(seq 1 50); do
      i=$((i + 1))
      curl -s -o /dev/null -d "fromID=1&toID=$(((i % 4) + 1))&message=lag+$i" localhost:18080/send &
    done
    wait
  done
) &
load=$!
partitions="$(kubectl get -n "$NS" npipe "$PIPELINE" -o jsonpath='{.spec.topic.partitions}')"
saturated() {
  [ "$(kubectl get -n "$NS" npipe "$PIPELINE" -o jsonpath='{.status.consumer.desiredReplicas}')" = "$partitions" ] &&
    kubectl get -n "$NS" npipe "$PIPELINE" -o jsonpath='{.status.conditions[?(@.type=="PartitionsSaturated")].status}' | grep -qx True
}
until_ok 600 "$partitions consumers and PartitionsSaturated" saturated
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
kubectl patch -n "$NS" npipe "$PIPELINE" --type json -p '[{"op":"remove","path":"/spec/consumer/image"}]'
until_ok 120 "the consumer Deployment back on the Herald image" \
  sh -c "kubectl get -n $NS deploy/$PIPELINE-consumer -o jsonpath='{.spec.template.spec.containers[0].image}' | grep -qx '$IMAGE'"
rollout "$NS" "$PIPELINE-consumer"
forward "$NS" "$PIPELINE-consumer" 18081 8081

step "metrics on their own ports, not on the API ports"
forward_metrics "$NS" "$PIPELINE-producer" 19090 9090
forward_metrics "$NS" "$PIPELINE-consumer" 19091 9091
curl -sf localhost:19090/metrics | grep -q '^herald_producer_notifications_total{outcome="sent"}' || fail "producer metrics"
curl -sf localhost:19091/metrics | grep -q '^herald_consumer_records_total' || fail "consumer metrics"
[ "$(curl -s -o /dev/null -w '%{http_code}' localhost:18080/metrics)" = 404 ] || fail "/metrics on the producer's API port"
stop_forward 19090
stop_forward 19091
kubectl port-forward -n herald-system svc/herald-metrics 18090:8080 >/dev/null 2>&1 &
echo $! >"$forwards/18090"
until_ok 60 "operator metrics" curl -sf localhost:18090/metrics
curl -sf localhost:18090/metrics | grep -q "^herald_operator_pipeline_ready{namespace=\"$NS\",pipeline=\"$PIPELINE\"} 1" || fail "operator metrics"
stop_forward 18090

step "NetworkPolicies, the peer token and AuthConfigured of the open pipeline"
for component in producer consumer; do
  kubectl get -n "$NS" networkpolicy "$PIPELINE-$component" >/dev/null || fail "no NetworkPolicy $PIPELINE-$component"
done
kubectl get -n "$NS" secret "$PIPELINE-peer-token" -o jsonpath='{.immutable}' | grep -qx true || fail "peer token"
[ "$(kubectl get -n "$NS" npipe "$PIPELINE" -o jsonpath='{.status.conditions[?(@.type=="AuthConfigured")].reason}')" = Open ] ||
  fail "AuthConfigured is not Open"

step "a pipeline on the TLS listener with SCRAM and a service token: KafkaUsers, Ready, 401 without the token, a notification through with it"
api_token="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
kubectl create secret generic alerts-api-token -n kafka --from-literal=token="$api_token" --dry-run=client -o yaml |
  kubectl apply -f -
apply_example deploy/examples/secured.yaml kafka
until_ok 300 "the KafkaUsers alerts-producer and alerts-consumer" \
  kubectl wait -n kafka kafkauser/alerts-producer kafkauser/alerts-consumer --for=condition=Ready --timeout=5s
kubectl wait -n kafka npipe/alerts --for=condition=Ready --timeout=600s
forward kafka alerts-producer 18180 8080
forward kafka alerts-consumer 18181 8081
[ "$(kubectl get -n kafka npipe alerts -o jsonpath='{.status.conditions[?(@.type=="AuthConfigured")].status}')" = True ] ||
  fail "AuthConfigured is not True"
[ "$(curl -s -o /dev/null -w '%{http_code}' -d 'fromID=1&toID=2&message=x' localhost:18180/send)" = 401 ] ||
  fail "a send without the token was not refused"
[ "$(curl -s -o /dev/null -w '%{http_code}' localhost:18181/notifications/2)" = 401 ] ||
  fail "a read without the token was not refused"
auth=(-H "Authorization: Bearer $api_token")
secured="$(curl -sf "${auth[@]}" -d 'fromID=1&toID=2&message=over+TLS+and+SCRAM' localhost:18180/send)" || fail "secured send"
secured_id="$(printf '%s' "$secured" | grep -o '"id":"[^"]*"' | head -n 1 | cut -d'"' -f4)"
[ -n "$secured_id" ] || fail "no id in $secured"
until_ok 120 "the secured notification readable" \
  sh -c "curl -sf -H 'Authorization: Bearer $api_token' localhost:18181/notifications/2 | grep -q '$secured_id'"
stop_forward 18180
stop_forward 18181
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
