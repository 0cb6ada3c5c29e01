// Validates the Prometheus-operator objects (ServiceMonitor, PodMonitor, PrometheusRule) in the
// YAML files given against the prometheus-operator CRD schemas as published in
// @kubernetes-models/prometheus-operator (pinned in tests/tools.sh). Run from the directory the
// package is installed in (tests/packaging/check.sh copies this file there).
// Usage: node validate-prometheus-kinds.mjs FILE...
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const kinds = { ServiceMonitor, PodMonitor, PrometheusRule };
let checked = 0;
let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc || doc.apiVersion !== "monitoring.coreos.com/v1") continue;
    const Kind = kinds[doc.kind];
    if (!Kind) {
      console.error(`${file}: no schema for ${doc.kind}`);
      failed++;
      continue;
    }
    try {
      new Kind(doc).validate();
      checked++;
    } catch (e) {
      console.error(`${file}: ${doc.kind} ${doc.metadata?.name}: ${e.message}`);
      failed++;
    }
  }
}
console.log(`prometheus-operator objects valid: ${checked}, invalid: ${failed}`);
process.exit(failed > 0 ? 1 : 0);
