//! Problems found while loading routes: one `Diagnostic` per problem, with the
//! file, line and column an operator must edit, and a hint when we can guess
//! the fix. `router check`, `router serve` and hot reload all print these.

use std::fmt;
use std::path::{Path, PathBuf};

/// Whether a problem stops the config from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Loads, but an operator should look (`--strict` turns these into errors).
    Warning,
    /// The config is rejected.
    Error,
}

/// One problem in one file, at a 1-based line and column (0 = whole file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub severity: Severity,
    pub message: String,
    /// What to write instead, when we can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &Path, at: Pos, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: at.line,
            column: at.column,
            severity: Severity::Error,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(file: &Path, at: Pos, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(file, at, message) }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `path:line:col: error: message`, then an indented `hint:` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {level}: {}", self.file.display(), self.line, self.column, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A position in a YAML file (1-based; 0 when unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    pub fn of<T>(spanned: &super::raw::Spanned<T>) -> Pos {
        Pos::from_location(&spanned.referenced)
    }

    pub fn from_location(loc: &serde_saphyr::Location) -> Pos {
        Pos { line: loc.line(), column: loc.column() }
    }
}

/// Every problem of one load, errors and warnings, in file order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// Sorts by place and drops repeats: one problem reached several ways
    /// (a script file that three rules use) is reported once.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        self.0.dedup_by(|a, b| (&a.file, a.line, a.column, &a.message) == (&b.file, b.line, b.column, &b.message));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to
/// be a plausible typo (used for "did you mean" hints).
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_suggests_typos_only() {
        let keys = ["route", "path", "verify", "events", "rules"];
        assert_eq!(nearest("pth", keys), Some("path"));
        assert_eq!(nearest("evnets", keys), Some("events"));
        assert_eq!(nearest("completely_else", keys), None);
    }

    #[test]
    fn display_has_position_and_hint() {
        let d = Diagnostic::error(Path::new("r.yaml"), Pos { line: 3, column: 5 }, "bad").with_hint("write good");
        assert_eq!(d.to_string(), "r.yaml:3:5: error: bad\n  hint: write good");
    }
}
