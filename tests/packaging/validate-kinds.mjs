// Validates the custom-resource objects in the YAML files given against their published CRD
// schemas: the Prometheus-operator kinds (ServiceMonitor, PodMonitor, PrometheusRule) from
// @kubernetes-models/prometheus-operator, and the Strimzi kinds (Kafka, KafkaNodePool,
// KafkaTopic, KafkaUser) from @kubernetes-models/strimzi-kafka-operator, both pinned in
// tests/tools.sh. Other documents (core kinds, NotificationPipelines) are skipped: other checks
// cover them. Run from the directory the packages are installed in (tests/packaging/check.sh
// copies this file there).
// Usage: node validate-kinds.mjs FILE...
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { Kafka } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/Kafka";
import { KafkaNodePool } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/KafkaNodePool";
import { KafkaTopic } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/KafkaTopic";
import { KafkaUser } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/KafkaUser";

const kinds = {
  "monitoring.coreos.com/v1": { ServiceMonitor, PodMonitor, PrometheusRule },
  "kafka.strimzi.io/v1beta2": { Kafka, KafkaNodePool, KafkaTopic, KafkaUser },
};
let checked = 0;
let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    const group = doc && kinds[doc.apiVersion];
    if (!group) continue;
    const Kind = group[doc.kind];
    if (!Kind) {
      console.error(`${file}: no schema for ${doc.apiVersion} ${doc.kind}`);
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
console.log(`custom resources valid: ${checked}, invalid: ${failed}`);
process.exit(failed > 0 ? 1 : checked === 0 ? 2 : 0);
