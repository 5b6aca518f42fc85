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

/// What a series is: its `# TYPE` and so which `describe_*` its HELP goes to.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every series of ours, with its HELP. One prefix that cannot clash with
/// another exporter's (`router_` is Traefik's and others'); the process
/// series (`process_*`) keep the names every Prometheus user knows.
const DESCRIPTIONS: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        "webhook_router_requests_total",
        Kind::Counter,
        None,
        "Webhook requests per route and outcome (accepted, duplicate, filtered, rejected); rejected ones by reason.",
    ),
    (
        "webhook_router_deliveries_total",
        Kind::Counter,
        None,
        "Delivery attempts per route, sink and outcome (delivered, skipped, retry, failed).",
    ),
    (
        "webhook_router_ingest_duration_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time to answer a webhook request (durable write included).",
    ),
    (
        "webhook_router_delivery_latency_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time from an event's receipt to its delivery.",
    ),
    ("webhook_router_unmatched_requests_total", Kind::Counter, None, "Requests to a path no route serves."),
    ("webhook_router_reloads_total", Kind::Counter, None, "Route-file reloads applied."),
    (
        "webhook_router_reload_failures_total",
        Kind::Counter,
        None,
        "Route-file reloads refused (the previous config kept serving).",
    ),
    (
        "webhook_router_config_last_reload_successful",
        Kind::Gauge,
        None,
        "1 if the last load of the route files was applied, 0 if it was refused.",
    ),
    (
        "webhook_router_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "When the running route files were loaded (Unix time).",
    ),
    ("webhook_router_pruned_events_total", Kind::Counter, None, "Events removed by retention."),
    ("webhook_router_log_size_bytes", Kind::Gauge, Some(Unit::Bytes), "Size of the data directory on disk."),
    ("webhook_router_queue_depth", Kind::Gauge, None, "Deliveries pending or waiting for a retry."),
    ("webhook_router_routes", Kind::Gauge, None, "Routes in the current config."),
    ("webhook_router_build_info", Kind::Gauge, None, "Always 1; the labels say which build runs."),
];

pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// CPU, memory, open files of this process (`process_*`).
    process: metrics_process::Collector,
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
        for (name, kind, unit, help) in DESCRIPTIONS {
            let (name, help) = ((*name).into(), (*help).into());
            match kind {
                Kind::Counter => recorder.describe_counter(name, *unit, help),
                Kind::Gauge => recorder.describe_gauge(name, *unit, help),
                Kind::Histogram => recorder.describe_histogram(name, *unit, help),
            }
        }
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&recorder, || process.describe());
        let handle = recorder.handle();
        let exporter = Self { recorder, handle, process };
        exporter.gauge("webhook_router_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        exporter
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

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.recorder.register_gauge(&Self::key(name, labels), &METADATA).set(value);
    }

    /// Folds recorded histogram samples into their buckets; without it they
    /// pile up between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The exposition, with the process figures read just now.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.recorder, || self.process.collect());
        self.handle.render()
    }
}
