//! Per-event cost of a rule's script, compiled once: the shipped seed 001
//! engagement script (`routes.d/scripts/engagement.rhai`) on a
//! `membership.accessed` event with a stored member as `current`, against
//! the same rule's JSONPath map alone. Run: `cargo bench --bench script`.

use serde_json::{json, Value};
use std::time::Instant;
use webhook_router::config;
use webhook_router::mapping::Context;
use webhook_router::storage::EventV1;

const RUNS: u32 = 200_000;

fn main() {
    let loaded = config::load(&["routes.d".into()], &std::collections::HashMap::<String, String>::new())
        .unwrap_or_else(|d| panic!("routes.d does not load:\n{d}"));
    let route = loaded.config.route("whop-members").expect("the shipped whop-members route");
    let (_, rule) = route.rules_for("membership.accessed").next().expect("a rule for membership.accessed");
    let payload = json!({"action": "membership.accessed", "data": {"id": "membership_xxx", "user_id": "user_xxx",
        "company_id": "biz_xxx", "accessed_at": "2025-10-21T10:00:00Z"}});
    let current = json!({"user_id": "user_xxx", "status": "at_risk", "engagement_score": 40, "total_sessions": 12,
        "email": "member@example.com", "joined_at": "2025-09-01T10:00:00Z"});
    let event = EventV1 {
        id: 1,
        route: route.name.clone(),
        event_type: "membership.accessed".into(),
        event_id: Some("msg_1".into()),
        event_time: Some("2025-10-21T10:00:00Z".into()),
        received_at: "2025-10-21T10:00:00.000Z".into(),
        received_ms: 0,
        params: vec![],
        query: vec![],
        headers: vec![("webhook-id".into(), "msg_1".into())],
        deliveries: 1,
    };
    let ctx = Context { body: &payload, params: &[], query: &[], headers: &event.headers };

    let map_only = per_event(|| rule.document(&ctx));
    let scripted =
        per_event(|| rule.run_scripts(rule.document(&ctx), &payload, &event, Some(&current)).expect("script runs"));
    let out = rule.run_scripts(rule.document(&ctx), &payload, &event, Some(&current)).unwrap();
    assert_eq!(out["total_sessions"], 13, "the script ran: {out}");
    println!("engagement script, {RUNS} events (compiled once, release build):");
    println!("  map only           {map_only:>8.2} us/event");
    println!("  map + script       {scripted:>8.2} us/event");
    println!("  script's own cost  {:>8.2} us/event", scripted - map_only);
}

/// Mean microseconds per call, after a warm-up.
fn per_event(mut f: impl FnMut() -> Value) -> f64 {
    for _ in 0..RUNS / 10 {
        std::hint::black_box(f());
    }
    let start = Instant::now();
    for _ in 0..RUNS {
        std::hint::black_box(f());
    }
    start.elapsed().as_secs_f64() * 1e6 / RUNS as f64
}
