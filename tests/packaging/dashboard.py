#!/usr/bin/env python3
"""Writes Herald's Grafana dashboard (charts/herald/files/herald-dashboard.json); the chart ships it
and deploy/monitoring/ keeps a copy. Edit the panels here, then run this script."""
import json
import pathlib
import sys

SEL = 'namespace=~"$namespace", pipeline=~"$pipeline"'


def panel(pid, title, targets, x, y, unit="short", w=12, h=8, description=""):
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


PANELS = [
    ("Sends by outcome", [(f'sum by (outcome) (rate(herald_producer_notifications_total{{{SEL}}}[$__rate_interval]))', "{{outcome}}")], "reqps",
     "POST /send answers: sent (acknowledged by Kafka), rejected (4xx), failed (503)."),
    ("Records handled by outcome", [(f'sum by (outcome) (rate(herald_consumer_records_total{{{SEL}}}[$__rate_interval]))', "{{outcome}}")], "ops",
     "Consumed records: stored, duplicate (redelivered), invalid (skipped), marker (read markers applied)."),
    ("Open event streams", [(f'sum(herald_consumer_streams{{{SEL}}})', "streams")], "short",
     "GET /notifications/{userID}/stream connections open on the consumers (a stream passed through another consumer counts on both)."),
    ("Read markers applied", [(f'sum(rate(herald_consumer_records_total{{{SEL}, outcome="marker"}}[$__rate_interval]))', "markers")], "ops",
     "POST /notifications/{userID}/read records applied by the consumers (each consumer holding the user's partition counts it once)."),
    ("Processed offset per partition", [(f'max by (partition) (herald_consumer_processed_offset{{{SEL}}})', "partition {{partition}}")], "short", ""),
    ("Lag per partition", [(f'max by (partition) (herald_consumer_lag{{{SEL}}})', "partition {{partition}}")], "short",
     "Records between the committed offset and the log end."),
    ("Consumers vs partitions vs desired", [
        (f'count(up{{{SEL}, component="consumer"}} == 1)', "consumers up"),
        (f'max(herald_operator_topic_partitions{{{SEL}}})', "partitions (cap)"),
        (f'max(herald_operator_consumer_desired_replicas{{{SEL}}})', "desired"),
    ], "short", "More consumers than partitions sit idle."),
    ("End-to-end latency (sentAt → stored)", [
        (f'histogram_quantile(0.5, sum by (le) (rate(herald_consumer_end_to_end_latency_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50"),
        (f'histogram_quantile(0.99, sum by (le) (rate(herald_consumer_end_to_end_latency_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99"),
    ], "s", ""),
    ("Skipped records and fields", [
        (f'sum(rate(herald_consumer_records_total{{{SEL}, outcome="invalid"}}[$__rate_interval]))', "invalid"),
        (f'sum(rate(herald_consumer_records_total{{{SEL}, outcome="unknown"}}[$__rate_interval]))', "unknown kind"),
        (f'sum by (kind) (rate(herald_consumer_unknown_fields_total{{{SEL}}}[$__rate_interval]))', "unknown fields: {{kind}}"),
    ], "ops",
     "Invalid: records on the topic that are not Herald records (dead-lettered when a dead-letter topic is set). Unknown kind / unknown fields: records of a newer producer that these consumers skip (the record contract's version rule) — expected during a rolling update, a sign of consumers left behind when it lasts."),
    ("Rebalances", [
        (f'sum(increase(herald_consumer_rebalances_total{{{SEL}}}[$__rate_interval]))', "rebalance callbacks"),
        (f'sum(increase(herald_consumer_assignments_lost_total{{{SEL}}}[$__rate_interval]))', "assignments lost"),
    ], "short", "Assignments lost: a member missed its session or poll deadline (a CPU-throttled pod); what it stored since its last commit is redelivered."),
    ("Offset gaps", [(f'sum by (outcome) (increase(herald_consumer_offset_gaps_total{{{SEL}}}[$__rate_interval]))', "{{outcome}}")], "short",
     "Records that came after a gap in their partition's offsets: refetched (read again from the first missing offset), absent (still missing after two re-reads: compaction, transaction markers, retention). Refetched without absent: a fetch skipped records and the re-read found them."),
    ("Reads forwarded to the partition's holder", [(f'sum by (outcome) (rate(herald_consumer_forwarded_requests_total{{{SEL}}}[$__rate_interval]))', "{{outcome}}")], "reqps", ""),
    ("Partition moves", [
        (f'sum by (outcome) (increase(herald_consumer_handoffs_total{{{SEL}}}[$__rate_interval]))', "handed off: {{outcome}}"),
        (f'sum(herald_consumer_handoffs_in_progress{{{SEL}}})', "handoffs in progress"),
    ], "short",
     "A partition the group moves is still answered by its old owner until the new one serves it: served (the new owner took over), timeout (it did not within --handoff-timeout; reads of that partition answered 503 until it did)."),
    ("Standbys", [
        (f'sum(herald_consumer_standby_partitions{{{SEL}}})', "standby partitions"),
        (f'max by (partition) (herald_consumer_standby_lag{{{SEL}}})', "lag of partition {{partition}}"),
    ], "short",
     "With spec.consumer.standbyReplicas: 1, each partition is kept current on a second consumer, which answers while its owner is gone. A standby far behind cannot answer in time when it is needed."),
    ("Reads retried, streams refused", [
        (f'sum(rate(herald_consumer_read_retries_total{{{SEL}}}[$__rate_interval]))', "reads that asked again"),
        (f'sum(rate(herald_consumer_streams_refused_total{{{SEL}}}[$__rate_interval]))', "streams refused"),
    ], "ops",
     "Reads that asked another holder of the partition (or looked at the group again) because one could not answer: normal while partitions move. Streams refused: a consumer had --max-streams open."),
    ("Restore and store", [
        (f'sum(rate(herald_consumer_restore_records_total{{{SEL}}}[$__rate_interval]))', "restored records/s"),
        (f'sum(herald_consumer_store_bytes{{{SEL}}}) / 1048576', "store MiB"),
    ], "short", ""),
    ("Operator reconcile errors", [(f'sum by (error) (rate(herald_operator_reconcile_errors_total[$__rate_interval]))', "{{error}}")], "ops",
     "Failed reconciles of all pipelines, by step."),
    ("Operator reconciles", [
        ('sum by (outcome) (rate(herald_operator_reconciliations_total[$__rate_interval]))', "{{outcome}}"),
        ('histogram_quantile(0.99, sum by (le) (rate(herald_operator_reconcile_duration_seconds_bucket[$__rate_interval])))', "p99 duration (s)"),
    ], "short", ""),
]


def variable(name, query):
    return {
        "name": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "refresh": 2,
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard():
    panels = [
        panel(i + 1, title, targets, (i % 2) * 12, (i // 2) * 8, unit, description=desc)
        for i, (title, targets, unit, desc) in enumerate(PANELS)
    ]
    return {
        "uid": "herald-pipelines",
        "title": "Herald pipelines",
        "tags": ["herald", "kafka"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}},
                variable("namespace", "label_values(herald_operator_pipeline_ready, namespace)"),
                variable("pipeline", 'label_values(herald_operator_pipeline_ready{namespace=~"$namespace"}, pipeline)'),
            ]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2]
    text = json.dumps(dashboard(), indent=2) + "\n"
    for path in ["charts/herald/files/herald-dashboard.json", "deploy/monitoring/herald-dashboard.json"]:
        (root / path).write_text(text)
