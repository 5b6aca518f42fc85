//! Prometheus exposition through `metrics-exporter-prometheus`, with a
//! recorder owned by the runtime rather than installed globally: two
//! routers in one process (the tests) keep separate figures, and nothing
//! else in the process can write into ours.

use metrics::{Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Histogram buckets in seconds: from sub-millisecond ingest to deliveries
/// that waited through retries.
const BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

const METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// HELP lines for every series we export.
const DESCRIPTIONS: &[(&str, Option<Unit>, &str)] = &[
    (
        "router_requests_total",
        None,
        "Webhook requests per route and outcome (accepted, duplicate, filtered, rejected).",
    ),
    ("router_rejected_total", None, "Rejected webhook requests per route and reason."),
    (
        "router_deliveries_total",
        None,
        "Delivery attempts per route, sink and outcome (delivered, skipped, retry, failed).",
    ),
    (
        "router_ingest_duration_seconds",
        Some(Unit::Seconds),
        "Time to answer a webhook request (durable write included).",
    ),
    ("router_delivery_latency_seconds", Some(Unit::Seconds), "Time from an event's receipt to its delivery."),
    ("router_unmatched_requests_total", None, "Requests to a path no route serves."),
    ("router_reloads_total", None, "Route-file reloads applied."),
    ("router_reload_failures_total", None, "Route-file reloads refused (the previous config kept serving)."),
    ("router_pruned_events_total", None, "Events removed by retention."),
    ("router_log_size_bytes", Some(Unit::Bytes), "Size of the data directory on disk."),
    ("router_queue_depth", None, "Deliveries pending or waiting for a retry."),
    ("router_routes", None, "Routes in the current config."),
];

pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Exporter {
    pub fn new() -> Self {
        let recorder =
            PrometheusBuilder::new().set_buckets(BUCKETS).expect("the bucket list is not empty").build_recorder();
        for (name, unit, help) in DESCRIPTIONS {
            recorder.describe_counter((*name).into(), *unit, (*help).into());
        }
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    fn key(name: &str, labels: &[(&str, &str)]) -> Key {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(k.to_string(), v.to_string())).collect();
        Key::from_parts(name.to_string(), labels)
    }

    /// A histogram handle to record into on the hot path.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> metrics::Histogram {
        self.recorder.register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// Sets a counter to the value our own atomics hold.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.recorder.register_counter(&Self::key(name, labels), &METADATA).absolute(value);
    }

    pub fn gauge(&self, name: &str, value: f64) {
        self.recorder.register_gauge(&Self::key(name, &[]), &METADATA).set(value);
    }

    /// Folds recorded histogram samples into their buckets; without it they
    /// pile up between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }
}
