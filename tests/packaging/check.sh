#!/usr/bin/env bash
# Checks the packaging with the real tools (installed by tests/tools.sh): generated files match
# their sources, the chart lints and renders valid manifests for Kubernetes 1.30–1.33 with default
# values and with every option on (the Prometheus-operator kinds also against the closed schemas
# in tests/packaging/schemas/), the Strimzi objects of the examples and of the operator match
# Strimzi's schemas, a wrong value fails with a message, the alert rules pass their
# promtool unit tests, and yamllint, hadolint (Dockerfile) and shellcheck (scripts) find nothing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
# shellcheck source=tests/tools.sh
. tests/tools.sh

step() { printf '\n==> %s\n' "$*"; }
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

step "generated files are current (tests/packaging/generate.sh)"
tests/packaging/generate.sh "$scratch/gen"
for f in charts/herald/crds/notificationpipelines.herald.dev.yaml \
         charts/herald/files/herald-dashboard.json \
         deploy/monitoring/herald-dashboard.json \
         deploy/monitoring/herald.rules.yaml \
         deploy/operator/00-namespace.yaml \
         deploy/operator/herald-operator.yaml \
         tests/packaging/rendered/all-on.yaml \
         tests/packaging/rendered/watch-namespace.yaml; do
  if ! diff -u "$f" "$scratch/gen/$f"; then
    echo "$f is out of date: run tests/packaging/generate.sh" >&2
    exit 1
  fi
done

step "helm lint --strict (default values, every option on)"
helm lint --strict charts/herald
helm lint --strict charts/herald -f tests/packaging/all-on.yaml

step "rendered manifests validate (kubernetes-validate --strict, 1.30-1.33)"
helm template herald charts/herald -n herald-system > "$scratch/default.yaml"
helm template herald charts/herald -n herald-system -f tests/packaging/all-on.yaml > "$scratch/all-on.yaml"
for version in 1.30.0 1.31.0 1.32.0 1.33.0; do
  for manifest in "$scratch/default.yaml" "$scratch/all-on.yaml" deploy/operator/*.yaml deploy/crds/*.yaml; do
    # Prometheus-operator kinds have no built-in schema; everything else must validate.
    if ! out="$(kubernetes-validate --strict --quiet -k "$version" "$manifest" 2>&1)"; then
      echo "$out" >&2
      exit 1
    fi
    if echo "$out" | grep -v 'monitoring.coreos.com' | grep -q .; then
      echo "$out" >&2
      exit 1
    fi
  done
  echo "Kubernetes $version: ok"
done

step "custom resources validate against their published schemas (Prometheus operator, Strimzi)"
# The chart's monitoring objects, the Strimzi objects the e2e suite applies (deploy/examples/) and
# the KafkaTopic and KafkaUsers the operator writes for the example pipelines (rendered by
# operator/herald-operator/tests/strimzi_objects.rs, which fails when that file is stale).
cp tests/packaging/validate-kinds.mjs "$HERALD_NODE/"
node "$HERALD_NODE/validate-kinds.mjs" "$scratch/all-on.yaml" deploy/examples/*.yaml \
  tests/packaging/rendered/strimzi-objects.yaml
sed 's/^  replicas: 1$/  replicas: one/' deploy/examples/strimzi-kafka.yaml > "$scratch/bad-kafka.yaml"
if node "$HERALD_NODE/validate-kinds.mjs" "$scratch/bad-kafka.yaml" >/dev/null 2>&1; then
  echo "a KafkaNodePool with replicas: one passed the Strimzi schema" >&2
  exit 1
fi
# The same objects against the closed schemas kept in tests/packaging/schemas/ (every field the
# chart may render, nothing else): the published schemas above accept unknown fields, these do
# not, so a misspelt field fails here.
mkdir -p "$scratch/kinds"
python3 - "$scratch/all-on.yaml" "$scratch/kinds" <<'PY'
import json, sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc.get("apiVersion") == "monitoring.coreos.com/v1":
        with open(f"{sys.argv[2]}/{doc['kind']}-{doc['metadata']['name']}.json", "w") as out:
            json.dump(doc, out)
PY
for kind in ServiceMonitor PodMonitor PrometheusRule; do
  check-jsonschema --schemafile "tests/packaging/schemas/$kind.json" "$scratch/kinds/$kind"-*.json
done
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["spec"]["endpoints"][0]["honorLabel"]=True; json.dump(d,open(sys.argv[2],"w"))' \
  "$scratch/kinds/ServiceMonitor-herald.json" "$scratch/misspelt.json"
if check-jsonschema --schemafile tests/packaging/schemas/ServiceMonitor.json "$scratch/misspelt.json" >/dev/null 2>&1; then
  echo "a misspelt ServiceMonitor field (honorLabel) passed the kept schema" >&2
  exit 1
fi

step "a wrong value fails helm install with a message (values.schema.json)"
for bad in replicaCount=0 logFormat=xml metrics.podMonitor.enabld=true image.pullPolicy=Sometimes; do
  if helm template herald charts/herald --set "$bad" >/dev/null 2>"$scratch/err"; then
    echo "--set $bad was accepted" >&2
    exit 1
  fi
  grep -q "at '/" "$scratch/err" || { cat "$scratch/err" >&2; exit 1; }
done
echo "rejected: replicaCount=0 logFormat=xml metrics.podMonitor.enabld=true image.pullPolicy=Sometimes"

step "alert rules (promtool)"
promtool check rules deploy/monitoring/herald.rules.yaml
(cd deploy/monitoring && promtool test rules herald.rules.test.yaml)

step "yamllint"
yamllint --strict deploy charts/herald tests/packaging .yamllint

step "hadolint Dockerfile"
hadolint Dockerfile

step "the kind e2e suite checks for its tools and skips cleanly without them (tests/e2e/run.sh)"
# Fake PATHs: stubs for the tools that are "there", nothing else; the suite must name exactly what
# is missing and exit 0 before it runs anything.
mkdir -p "$scratch/stubs" "$scratch/empty"
for tool in docker kubectl helm curl; do
  printf '#!/bin/sh\nexit 0\n' >"$scratch/stubs/$tool"
  chmod +x "$scratch/stubs/$tool"
done
expect_skip() {
  local path="$1" want="$2" got
  got="$(PATH="$path" "$BASH" tests/e2e/run.sh 2>&1)" || { echo "tests/e2e/run.sh failed: $got" >&2; exit 1; }
  [ "$got" = "SKIPPED: not available here: $want" ] || { echo "tests/e2e/run.sh said: $got (want: $want)" >&2; exit 1; }
}
expect_skip "$scratch/stubs" "kind"
expect_skip "$scratch/empty" "docker,kind,kubectl,helm,curl"
printf '#!/bin/sh\nexit 1\n' >"$scratch/stubs/docker"
expect_skip "$scratch/stubs" "kind,a running Docker engine"
echo "skips: without kind; without any tool; with a Docker client but no engine"

step "shellcheck"
shellcheck -x .ci/run tests/*.sh tests/packaging/*.sh tests/e2e/*.sh
