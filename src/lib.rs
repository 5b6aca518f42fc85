//! A declarative webhook router: route files in `routes.d/` describe where
//! webhooks arrive, how they are verified, and where their events go.
//!
//! # Layout
//!
//! One request's path through the crate:
//!
//! - [`server`] accepts connections and runs the ingest pipeline
//!   (`server::ingest`), with views beside it; [`admin`] is the
//!   operator's listener (API, Prometheus metrics, dashboard).
//! - [`config`] loads and compiles `routes.d` into a [`config::Config`]
//!   (routes in [`route`], expressions in [`mapping`], auth in [`verify`],
//!   sinks in [`sink`]); `router check` runs the same loader.
//! - [`storage`] is the interface to the event log (`storage::EventLog`)
//!   and its embedded backend, a segment log that makes an accepted event
//!   and its deliveries durable before the 2xx (group commit).
//! - [`dispatch`] claims due deliveries from the log, hands them to
//!   [`sink`]s, and records the next state [`delivery`] decides, running
//!   rules' `when:` and `script:` ([`script`], sandboxed Rhai) on the way.
//! - [`runtime`] holds what they share: the config snapshot, the data dir
//!   and the scheduler's [`clock`];
//!   [`reload`] swaps the snapshot when the routes directory changes;
//!   [`recovery`] gets a working store back after a disk fault;
//!   [`retention`] prunes settled events past their keep period.
//! - [`cli`] is the command line; [`telemetry`] logging, counters and
//!   latency figures.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod event;
pub mod mapping;
pub mod payload;
pub mod pg;
pub mod random;
pub mod recovery;
pub mod reload;
pub mod retention;
pub mod route;
pub mod runtime;
pub mod script;
pub mod server;
pub mod sink;
pub mod storage;
pub mod systemd;
pub mod telemetry;
pub mod tls;
pub mod verify;
