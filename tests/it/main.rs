//! One integration-test binary: every test starts the real router on a
//! loopback port with a temp data directory and talks HTTP to it.

mod admin;
mod browser;
mod cli;
mod crash;
mod delivery;
mod examples;
mod ingest;
mod otel;
mod package;
mod postgres;
mod postgres_check;
mod postgres_delivery;
mod regressions;
mod reload;
mod scripts;
mod signatures;
mod storage;
mod systemd;
mod tap;
mod util;
mod views;
