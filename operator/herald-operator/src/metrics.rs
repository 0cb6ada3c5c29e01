//! The operator's Prometheus metrics. Per-pipeline series are labelled by namespace and name
//! (bounded by the number of resources) and removed when a pipeline goes away.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct OperatorMetrics {
    pub reconciliations: IntCounterVec,
    pub duration: Histogram,
    pub errors: IntCounterVec,
    pub ready: IntGaugeVec,
    pub topic_partitions: IntGaugeVec,
    pub consumer_desired_replicas: IntGaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub scale_events: IntCounterVec,
    /// Failed reconciles requeued with backoff.
    pub retries: IntCounter,
    /// Status writes (a status is written only when it changed).
    pub status_writes: IntCounter,
    /// Lag probes, by outcome.
    pub probes: IntCounterVec,
}

impl OperatorMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let pipeline = &["namespace", "pipeline"];
        let m = Self {
            reconciliations: IntCounterVec::new(
                Opts::new("herald_operator_reconciliations_total", "Reconciles by outcome: ok or error."),
                &["outcome"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new("herald_operator_reconcile_duration_seconds", "Time one reconcile took.")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )?,
            errors: IntCounterVec::new(
                Opts::new("herald_operator_reconcile_errors_total", "Failed reconciles by error category."),
                &["error"],
            )?,
            ready: IntGaugeVec::new(
                Opts::new("herald_operator_pipeline_ready", "1 when the pipeline is Ready."),
                pipeline,
            )?,
            topic_partitions: IntGaugeVec::new(
                Opts::new("herald_operator_topic_partitions", "Partitions of the pipeline's topic (the consumer cap)."),
                pipeline,
            )?,
            consumer_desired_replicas: IntGaugeVec::new(
                Opts::new(
                    "herald_operator_consumer_desired_replicas",
                    "Consumers the operator wants for the pipeline.",
                ),
                pipeline,
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "herald_operator_consumer_lag",
                    "Total lag of the pipeline's consumer group, read from Kafka.",
                ),
                pipeline,
            )?,
            scale_events: IntCounterVec::new(
                Opts::new("herald_operator_scale_events_total", "Consumer count changes, by direction (up or down)."),
                &["direction"],
            )?,
            retries: IntCounter::new(
                "herald_operator_reconcile_retries_total",
                "Failed reconciles requeued with per-pipeline exponential backoff (1 s doubling to 5 min).",
            )?,
            status_writes: IntCounter::new(
                "herald_operator_status_writes_total",
                "Pipeline status writes; a status is written only when it changed.",
            )?,
            probes: IntCounterVec::new(
                Opts::new(
                    "herald_operator_lag_probes_total",
                    "Lag probes of pipelines by the background prober, by outcome: ok, error or missing (no topic).",
                ),
                &["outcome"],
            )?,
        };
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.status_writes.clone()))?;
        registry.register(Box::new(m.probes.clone()))?;
        registry.register(Box::new(m.reconciliations.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        registry.register(Box::new(m.scale_events.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.ready.clone()))?;
        registry.register(Box::new(m.topic_partitions.clone()))?;
        registry.register(Box::new(m.consumer_desired_replicas.clone()))?;
        Ok(m)
    }

    pub fn forget(&self, namespace: &str, pipeline: &str) {
        for vec in [&self.ready, &self.topic_partitions, &self.consumer_desired_replicas, &self.consumer_lag] {
            let _ = vec.remove_label_values(&[namespace, pipeline]);
        }
    }
}
