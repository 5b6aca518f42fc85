//! Loading `routes.d`: the one entry point shared by `serve`, `check` and
//! hot reload. Reading files is the only I/O; compiling is pure and collects
//! every problem rather than stopping at the first.

mod compile;
pub mod diagnostic;
pub mod env;
pub mod raw;

pub use diagnostic::{Diagnostic, Diagnostics, Pos, Severity};

use crate::route::table::RouteTable;
use crate::route::{Route, View};
use crate::sink::Sink;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The compiled, validated config: all the runtime ever sees.
#[derive(Debug)]
pub struct Config {
    pub routes: Vec<Arc<Route>>,
    pub views: Vec<Arc<View>>,
    pub sinks: BTreeMap<String, Arc<Sink>>,
    pub table: RouteTable,
    /// The files it came from.
    pub files: Vec<PathBuf>,
    /// Verify secrets that are defaults written in the route files (their
    /// variable unset: the shipped trial secret): such a config is served
    /// on loopback only.
    pub trial_secrets: Vec<TrialSecret>,
}

/// A verify secret taken from `${VAR:-default}` with `VAR` unset.
#[derive(Debug, Clone)]
pub struct TrialSecret {
    /// The variable to set.
    pub variable: String,
    pub file: PathBuf,
    pub at: Pos,
}

impl Config {
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// A successful load: the config and its warnings.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Diagnostics,
}

/// Loads every route file under `paths` (directories or single files).
/// On failure the diagnostics hold every problem found, warnings included.
pub fn load(paths: &[PathBuf], env: &dyn env::EnvSource) -> Result<Loaded, Diagnostics> {
    let mut sources = Vec::new();
    let mut diags = Diagnostics::default();
    for file in route_files(paths, &mut diags) {
        match std::fs::read(&file).map(String::from_utf8) {
            Ok(Ok(text)) => sources.push((file, text)),
            Ok(Err(e)) => diags.push(not_utf8(&file, e.as_bytes(), e.utf8_error().valid_up_to())),
            Err(e) => diags.push(Diagnostic::error(&file, Pos::UNKNOWN, format!("cannot read: {e}"))),
        }
    }
    // No route file may take the loader down: a defect in it (or in a
    // library under it) becomes a problem report, not a dead reload task.
    let dirs: Vec<PathBuf> = paths.to_vec();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile::compile(&sources, env, diags))).unwrap_or_else(
        |_| {
            let mut diags = Diagnostics::default();
            let at = dirs.first().map_or(Path::new("."), |p| p.as_path());
            diags.push(Diagnostic::error(
                at,
                Pos::UNKNOWN,
                "the route loader failed unexpectedly on these files (a defect: please report it with the files)",
            ));
            Err(diags)
        },
    )
}

/// A file that is not UTF-8, located at its first bad byte.
pub fn not_utf8(file: &Path, bytes: &[u8], valid_up_to: usize) -> Diagnostic {
    let good = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line = good.matches('\n').count() as u64 + 1;
    let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    let byte = bytes.get(valid_up_to).copied().unwrap_or(0);
    Diagnostic::error(
        file,
        Pos { line, column },
        format!("not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8"),
    )
}

/// The route files of the given paths, sorted: `*.yaml` and `*.yml`,
/// ignoring dotfiles and editor leftovers (`~`, `.swp`, `#...#`).
pub fn route_files(paths: &[PathBuf], diags: &mut Diagnostics) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_file() {
            out.push(path.clone());
            continue;
        }
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_route_file(p) && p.is_file())
                    .collect();
                files.sort();
                out.extend(files);
            }
            Err(e) => diags.push(Diagnostic::error(path, Pos::UNKNOWN, format!("cannot read directory: {e}"))),
        }
    }
    out
}

fn is_route_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    !name.starts_with('.')
        && !name.starts_with('#')
        && !name.ends_with('~')
        && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_file_names() {
        assert!(is_route_file(Path::new("d/whop.yaml")));
        assert!(is_route_file(Path::new("d/sinks.yml")));
        assert!(!is_route_file(Path::new("d/.whop.yaml.swp")));
        assert!(!is_route_file(Path::new("d/.hidden.yaml")));
        assert!(!is_route_file(Path::new("d/whop.yaml~")));
        assert!(!is_route_file(Path::new("d/README.md")));
    }
}
