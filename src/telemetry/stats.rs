//! Live statistics, per route (ingest outcomes, rejections by reason,
//! events per minute, ingest latency) and per (route, sink) pair
//! (deliveries, retries, latency from receipt to delivery). Per-sink
//! figures are sums over pairs, so each fact is counted once.
//!
//! The request path only touches atomics and one short per-route lock for
//! the latency sketch. Counts start at zero when the process starts; the
//! event log, not these, is the durable record.

use super::prometheus::Exporter;
use metrics_util::storage::Summary;
use serde::Serialize;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How one webhook request ended, for counting.
#[derive(Debug, Clone, Copy)]
pub enum RequestVerdict {
    Accepted,
    Duplicate,
    /// An event type the route does not want (or a subscription challenge).
    Filtered,
    Rejected(Reject),
}

impl RequestVerdict {
    /// The `outcome` label, and the verdict `router tap` shows.
    pub fn name(self) -> &'static str {
        match self {
            RequestVerdict::Accepted => OUTCOMES[0],
            RequestVerdict::Duplicate => OUTCOMES[1],
            RequestVerdict::Filtered => OUTCOMES[2],
            RequestVerdict::Rejected(_) => "rejected",
        }
    }
}

/// Why a request was refused; the `reason` label of rejected requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Unauthorized,
    Invalid,
    TooLarge,
    Timeout,
    BadBody,
    MethodNotAllowed,
    Unavailable,
}

impl Reject {
    pub const ALL: [Reject; 7] = [
        Reject::Unauthorized,
        Reject::Invalid,
        Reject::TooLarge,
        Reject::Timeout,
        Reject::BadBody,
        Reject::MethodNotAllowed,
        Reject::Unavailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reject::Unauthorized => "unauthorized",
            Reject::Invalid => "invalid",
            Reject::TooLarge => "too_large",
            Reject::Timeout => "timeout",
            Reject::BadBody => "bad_body",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::Unavailable => "unavailable",
        }
    }
}

/// One delivery attempt's result, for counting.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryVerdict {
    /// Delivered; `latency` runs from the event's receipt to now.
    Ok { latency: Duration },
    /// Deliberately not sent (stale, or dropped by a script): a success.
    Skipped,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed for good (until an operator retries it).
    Failed,
}

impl DeliveryVerdict {
    /// The `outcome` label, and the verdict `router tap` shows.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryVerdict::Ok { .. } => "delivered",
            DeliveryVerdict::Skipped => "skipped",
            DeliveryVerdict::Retry => "retry",
            DeliveryVerdict::Failed => "failed",
        }
    }
}

/// The per-route counters of accepted, duplicate and filtered requests.
const OUTCOMES: [&str; 3] = ["accepted", "duplicate", "filtered"];
/// The per-minute chart covers the last hour.
pub const MINUTES: usize = 60;

/// A count that belongs to one period (a UTC day, a minute) and restarts at
/// the next. Two writers crossing a period boundary at once may lose a
/// count; this is for charts, not billing.
#[derive(Debug, Default)]
struct Window {
    period: AtomicU64,
    count: AtomicU64,
}

impl Window {
    fn add(&self, period: u64) {
        if self.period.load(Relaxed) != period {
            self.period.store(period, Relaxed);
            self.count.store(0, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
    }

    fn get(&self, period: u64) -> u64 {
        if self.period.load(Relaxed) == period {
            self.count.load(Relaxed)
        } else {
            0
        }
    }
}

/// Latency quantiles for the admin API (a DDSketch, 1 % relative error)
/// plus the Prometheus histogram of the same values.
struct Latency {
    sketch: Mutex<Summary>,
    histogram: metrics::Histogram,
}

impl Latency {
    fn new(histogram: metrics::Histogram) -> Self {
        Self { sketch: Mutex::new(new_sketch()), histogram }
    }

    fn record(&self, d: Duration) {
        self.histogram.record(d.as_secs_f64());
        self.sketch.lock().unwrap_or_else(|p| p.into_inner()).add(d.as_secs_f64() * 1000.0);
    }
}

fn new_sketch() -> Summary {
    Summary::new(0.01, 4096, 1e-3)
}

/// p50/p99 in milliseconds over `count` samples since start.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Quantiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl Quantiles {
    fn of(s: &Summary) -> Self {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        Self { count: s.count() as u64, p50: s.quantile(0.5).map(round), p99: s.quantile(0.99).map(round) }
    }
}

struct RouteStats {
    outcomes: [AtomicU64; 3],
    rejected: [AtomicU64; 7],
    today: Window,
    minutes: [Window; MINUTES],
    ingest: Latency,
}

struct PairStats {
    delivered: AtomicU64,
    skipped: AtomicU64,
    retries: AtomicU64,
    /// Attempts that failed for good (the Prometheus counter: it only grows).
    failed: AtomicU64,
    /// Of those, how many an operator requeued since: `/stats` counts a
    /// delivery's final state, so a failure retried into a success is not
    /// still reported as failed.
    requeued: AtomicU64,
    latency: Latency,
}

/// Name → counters, created on first use; reads take the shared lock.
struct Registry<K, T>(RwLock<HashMap<K, Arc<T>>>);

impl<K: Hash + Eq + Clone, T> Registry<K, T> {
    fn get<Q>(&self, key: &Q, make: impl FnOnce() -> T) -> Arc<T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(found) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return found.clone();
        }
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_owned()).or_insert_with(|| Arc::new(make())).clone()
    }

    fn all(&self) -> Vec<(K, Arc<T>)> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl<K, T> Default for Registry<K, T> {
    fn default() -> Self {
        Self(RwLock::new(HashMap::new()))
    }
}

/// Everything counted since the process started.
pub struct Stats {
    started_ms: i64,
    routes: Registry<String, RouteStats>,
    pairs: Registry<(String, String), PairStats>,
    /// Requests to a path no route serves.
    pub unmatched: AtomicU64,
    /// Events removed by retention.
    pub pruned: AtomicU64,
    pub exporter: Exporter,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started_ms: crate::event::now_ms(),
            routes: Registry::default(),
            pairs: Registry::default(),
            unmatched: AtomicU64::new(0),
            pruned: AtomicU64::new(0),
            exporter: Exporter::new(),
        }
    }
}

/// One route's figures, as the admin API reports them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RouteReport {
    /// Every POST that reached the route (accepted + duplicates + filtered + rejected).
    pub received: u64,
    /// Received since midnight UTC.
    pub today: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub filtered: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    pub delivered: u64,
    pub skipped: u64,
    /// Deliveries whose final state is failed (requeued ones no longer count).
    pub failed: u64,
    pub retries: u64,
    /// (delivered + skipped) / (delivered + skipped + failed); null before any outcome.
    pub success_rate: Option<f64>,
    /// From the first byte of the request to the answer.
    pub ingest_ms: Quantiles,
    /// From receipt to delivery, retries included.
    pub delivery_ms: Quantiles,
    /// Requests received in each of the last 60 minutes, oldest first.
    pub per_minute: Vec<u64>,
}

/// One sink's figures (summed over the routes that deliver to it).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SinkReport {
    pub delivered: u64,
    pub skipped: u64,
    pub failed: u64,
    pub retries: u64,
    pub success_rate: Option<f64>,
    pub delivery_ms: Quantiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub since: String,
    pub uptime_seconds: u64,
    pub unmatched: u64,
    pub pruned: u64,
    pub routes: BTreeMap<String, RouteReport>,
    pub sinks: BTreeMap<String, SinkReport>,
}

fn now_minute_and_day() -> (u64, u64) {
    let secs = (crate::event::now_ms().max(0) / 1000) as u64;
    (secs / 60, secs / 86_400)
}

fn success_rate(ok: u64, failed: u64) -> Option<f64> {
    let total = ok + failed;
    (total > 0).then(|| (ok as f64 / total as f64 * 10_000.0).round() / 10_000.0)
}

impl Stats {
    fn route(&self, name: &str) -> Arc<RouteStats> {
        self.routes.get(name, || RouteStats {
            outcomes: Default::default(),
            rejected: Default::default(),
            today: Window::default(),
            minutes: std::array::from_fn(|_| Window::default()),
            ingest: Latency::new(self.exporter.histogram("webhook_router_ingest_duration_seconds", &[("route", name)])),
        })
    }

    fn pair(&self, route: &str, sink: &str) -> Arc<PairStats> {
        self.pairs.get(&(route.to_string(), sink.to_string()), || PairStats {
            delivered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            latency: Latency::new(
                self.exporter.histogram("webhook_router_delivery_latency_seconds", &[("route", route), ("sink", sink)]),
            ),
        })
    }

    /// Counts one request to `route` that took `took` to answer.
    pub fn request(&self, route: &str, what: RequestVerdict, took: Duration) {
        let r = self.route(route);
        match what {
            RequestVerdict::Accepted => r.outcomes[0].fetch_add(1, Relaxed),
            RequestVerdict::Duplicate => r.outcomes[1].fetch_add(1, Relaxed),
            RequestVerdict::Filtered => r.outcomes[2].fetch_add(1, Relaxed),
            RequestVerdict::Rejected(why) => r.rejected[why as usize].fetch_add(1, Relaxed),
        };
        let (minute, day) = now_minute_and_day();
        r.today.add(day);
        r.minutes[minute as usize % MINUTES].add(minute);
        r.ingest.record(took);
    }

    /// Counts one delivery attempt's result.
    pub fn delivery(&self, route: &str, sink: &str, what: DeliveryVerdict) {
        let p = self.pair(route, sink);
        match what {
            DeliveryVerdict::Ok { latency } => {
                p.delivered.fetch_add(1, Relaxed);
                p.latency.record(latency);
            }
            DeliveryVerdict::Skipped => _ = p.skipped.fetch_add(1, Relaxed),
            DeliveryVerdict::Retry => _ = p.retries.fetch_add(1, Relaxed),
            DeliveryVerdict::Failed => _ = p.failed.fetch_add(1, Relaxed),
        }
    }

    /// An operator put a failed delivery back in the queue. Only a failure
    /// counted by this process (it failed at or after `since`) is taken back.
    pub fn requeued(&self, route: &str, sink: &str, failed_ms: i64) {
        if failed_ms >= self.started_ms {
            let p = self.pair(route, sink);
            p.requeued.fetch_add(1, Relaxed);
        }
    }

    /// Every route in `configured` (even without traffic yet) and every
    /// route and sink seen since start.
    pub fn report<'a>(&self, configured: impl IntoIterator<Item = &'a str>) -> Report {
        for name in configured {
            self.route(name);
        }
        let (minute, day) = now_minute_and_day();
        let mut routes: BTreeMap<String, RouteReport> = BTreeMap::new();
        let mut route_latency: HashMap<String, Summary> = HashMap::new();
        for (name, r) in self.routes.all() {
            let [accepted, duplicates, filtered] = [0, 1, 2].map(|i| r.outcomes[i].load(Relaxed));
            let rejected_by_reason: BTreeMap<_, _> =
                Reject::ALL.iter().map(|&why| (why.name(), r.rejected[why as usize].load(Relaxed))).collect();
            let rejected = rejected_by_reason.values().sum();
            let per_minute = (0..MINUTES as u64)
                .map(|ago| {
                    let m = minute - (MINUTES as u64 - 1 - ago);
                    r.minutes[m as usize % MINUTES].get(m)
                })
                .collect();
            let ingest_ms = Quantiles::of(&r.ingest.sketch.lock().unwrap_or_else(|p| p.into_inner()));
            routes.insert(
                name,
                RouteReport {
                    received: accepted + duplicates + filtered + rejected,
                    today: r.today.get(day),
                    accepted,
                    duplicates,
                    filtered,
                    rejected,
                    rejected_by_reason,
                    ingest_ms,
                    per_minute,
                    ..RouteReport::default()
                },
            );
        }
        let mut sinks: BTreeMap<String, SinkReport> = BTreeMap::new();
        let mut sink_latency: HashMap<String, Summary> = HashMap::new();
        for ((route, sink), p) in self.pairs.all() {
            let [delivered, skipped, retries, failed, requeued] =
                [&p.delivered, &p.skipped, &p.retries, &p.failed, &p.requeued].map(|c| c.load(Relaxed));
            let failed = failed.saturating_sub(requeued);
            let sketch = p.latency.sketch.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let r = routes.entry(route.clone()).or_default();
            let s = sinks.entry(sink.clone()).or_default();
            r.delivered += delivered;
            s.delivered += delivered;
            r.skipped += skipped;
            s.skipped += skipped;
            r.retries += retries;
            s.retries += retries;
            r.failed += failed;
            s.failed += failed;
            for (merged, key) in [(&mut route_latency, route), (&mut sink_latency, sink)] {
                // Same parameters everywhere, so merging cannot fail.
                let _ = merged.entry(key).or_insert_with(new_sketch).merge(&sketch);
            }
        }
        for (name, r) in routes.iter_mut() {
            r.success_rate = success_rate(r.delivered + r.skipped, r.failed);
            r.delivery_ms = route_latency.get(name).map(Quantiles::of).unwrap_or_default();
        }
        for (name, s) in sinks.iter_mut() {
            s.success_rate = success_rate(s.delivered + s.skipped, s.failed);
            s.delivery_ms = sink_latency.get(name).map(Quantiles::of).unwrap_or_default();
        }
        Report {
            since: crate::event::format_ms(self.started_ms),
            uptime_seconds: ((crate::event::now_ms() - self.started_ms).max(0) / 1000) as u64,
            unmatched: self.unmatched.load(Relaxed),
            pruned: self.pruned.load(Relaxed),
            routes,
            sinks,
        }
    }

    /// The Prometheus text exposition: counters set from the atomics above,
    /// histograms as recorded, and the counters and gauges the caller keeps
    /// or measured (reloads, log size, queue depth).
    pub fn render_prometheus(&self, counters: &[(&str, u64)], gauges: &[(&str, f64)]) -> String {
        let e = &self.exporter;
        for (route, r) in self.routes.all() {
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                e.counter(
                    "webhook_router_requests_total",
                    &[("route", &route), ("outcome", outcome)],
                    r.outcomes[i].load(Relaxed),
                );
            }
            // Rejections are requests too: one counter, the reason a label
            // (summing by outcome gives all rejected).
            for why in Reject::ALL {
                let n = r.rejected[why as usize].load(Relaxed);
                let labels = [("route", route.as_str()), ("outcome", "rejected"), ("reason", why.name())];
                e.counter("webhook_router_requests_total", &labels, n);
            }
        }
        for ((route, sink), p) in self.pairs.all() {
            for (outcome, c) in
                [("delivered", &p.delivered), ("skipped", &p.skipped), ("retry", &p.retries), ("failed", &p.failed)]
            {
                e.counter(
                    "webhook_router_deliveries_total",
                    &[("route", &route), ("sink", &sink), ("outcome", outcome)],
                    c.load(Relaxed),
                );
            }
        }
        e.counter("webhook_router_unmatched_requests_total", &[], self.unmatched.load(Relaxed));
        for (name, value) in counters {
            e.counter(name, &[], *value);
        }
        e.counter("webhook_router_pruned_events_total", &[], self.pruned.load(Relaxed));
        for (name, value) in gauges {
            e.gauge(name, &[], *value);
        }
        e.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_restart_each_period() {
        let w = Window::default();
        w.add(7);
        w.add(7);
        assert_eq!(w.get(7), 2);
        assert_eq!(w.get(8), 0);
        w.add(8);
        assert_eq!(w.get(8), 1);
        assert_eq!(w.get(7), 0);
    }

    #[test]
    fn report_sums_pairs_per_route_and_sink() {
        let s = Stats::default();
        s.request("a", RequestVerdict::Accepted, Duration::from_millis(2));
        s.request("a", RequestVerdict::Rejected(Reject::Unauthorized), Duration::from_millis(1));
        s.delivery("a", "db", DeliveryVerdict::Ok { latency: Duration::from_millis(10) });
        s.delivery("a", "make", DeliveryVerdict::Failed);
        s.delivery("b", "db", DeliveryVerdict::Ok { latency: Duration::from_millis(30) });
        let r = s.report(["a", "b", "c"]);
        let a = &r.routes["a"];
        assert_eq!((a.received, a.accepted, a.rejected, a.today), (2, 1, 1, 2));
        assert_eq!(a.rejected_by_reason["unauthorized"], 1);
        assert_eq!((a.delivered, a.failed, a.success_rate), (1, 1, Some(0.5)));
        assert_eq!(a.per_minute.iter().sum::<u64>(), 2);
        assert_eq!(r.routes["c"].received, 0);
        assert_eq!(r.sinks["db"].delivered, 2);
        assert_eq!(r.sinks["db"].delivery_ms.count, 2);
        for ms in 1..=100 {
            s.delivery("c", "hook", DeliveryVerdict::Ok { latency: Duration::from_millis(ms) });
        }
        let q = s.report([]).sinks["hook"].delivery_ms.clone();
        let (p50, p99) = (q.p50.unwrap(), q.p99.unwrap());
        assert!((49.0..52.0).contains(&p50) && (98.0..101.0).contains(&p99), "{q:?}");
        let text =
            s.render_prometheus(&[("webhook_router_reload_failures_total", 2)], &[("webhook_router_queue_depth", 3.0)]);
        assert!(text.contains(r#"webhook_router_requests_total{route="a",outcome="accepted"} 1"#), "{text}");
        assert!(
            text.contains(r#"webhook_router_deliveries_total{route="a",sink="make",outcome="failed"} 1"#),
            "{text}"
        );
        assert!(text.contains("webhook_router_queue_depth 3"), "{text}");
        assert!(text.contains("webhook_router_reload_failures_total 2"), "{text}");
        assert!(text.contains("webhook_router_delivery_latency_seconds_bucket"), "{text}");
    }
}
