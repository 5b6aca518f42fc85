//! `router`: parses the command line and maps results to exit codes
//! (0 ok, 1 problems found, 2 could not run).

use clap::Parser;
use std::process::ExitCode;
use webhook_router::cli::{self, Cli};

/// The hot path allocates many small JSON nodes per event; under load
/// glibc's malloc spent ~30% of the router's CPU on that churn (measured
/// with sled, 2026-12-01), mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's option enum (the -sys crate
/// names no constant for it; a test checks it is the right one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Milliseconds before mimalloc returns freed pages to the OS (its
/// default: 1,000, and ten times that for whole arenas). Bursts free a
/// round's documents and a group's buffers at once; held for seconds, they
/// kept the store-sink run's peak RSS at 45-48 MiB, at 10 ms it is 35 MiB
/// with the same throughput (0 costs ~10 %). docs/benchmarks.md.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

#[tokio::main]
async fn main() -> ExitCode {
    // SAFETY: sets a process-wide allocator option; any thread may call it.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    let cli = Cli::parse();
    webhook_router::tls::install_provider();
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("router: {e:#}");
            ExitCode::from(cli::EXIT_CANNOT_RUN)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_mimallocs() {
        // 1,000 ms is mimalloc 3's default for `purge_delay` and for no
        // option next to it: a renumbered enum fails here, not silently.
        // SAFETY: reads an allocator option.
        let (delay, before, after) = unsafe {
            (
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY - 1),
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY + 1),
            )
        };
        assert_eq!(delay, 1000);
        assert_ne!(before, 1000);
        assert_ne!(after, 1000);
    }
}
