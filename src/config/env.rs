//! `${VAR}` interpolation in route files, so secrets and URLs live in the
//! environment, not in git.
//!
//! - `${VAR}`: required; unset is a config error naming the variable.
//! - `${VAR?}`: optional; unset becomes the empty string (the field is then
//!   treated as absent where that makes sense, e.g. an optional URL).
//! - `${VAR:-default}`: `default` when unset or empty; the default may itself
//!   use variables (`${COHORT_URL:-${PAYMENTS_URL}}`, seed 002's fallbacks).
//! - `$${` writes a literal `${`.

/// Where variables come from: the process environment in production, a map
/// in tests (so tests never mutate the global environment).
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable `{0}` is not set")]
    Unset(String),
    #[error("unterminated `${{` (missing `}}`)")]
    Unterminated,
    #[error("`${{{0}}}` is not a valid variable name")]
    BadName(String),
    #[error("defaults nested more than {MAX_NESTING} deep (`${{A:-${{B:-...}}}}`)")]
    TooDeep,
}

/// How deep `${A:-${B:-...}}` defaults may nest. Real files use one or two
/// levels; 10,000 took seconds to expand (each level rescans the rest).
pub const MAX_NESTING: usize = 8;

impl EnvError {
    pub fn hint(&self) -> Option<String> {
        match self {
            EnvError::Unset(name) => Some(format!(
                "export {name}=..., or write ${{{name}:-default}} for a default or ${{{name}?}} if it may be unset"
            )),
            EnvError::Unterminated => Some("close it: ${NAME}".into()),
            EnvError::BadName(_) => Some("names are letters, digits and `_`, e.g. ${WHOP_WEBHOOK_SECRET}".into()),
            EnvError::TooDeep => Some(format!("use at most {MAX_NESTING} fallbacks: ${{A:-${{B:-default}}}}")),
        }
    }
}

/// Replaces every `${...}` in `input`; the first problem wins.
pub fn interpolate(input: &str, env: &dyn EnvSource) -> Result<String, EnvError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = closing_brace(after)?;
            out.push_str(&expand(&after[..end], env)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The variables of `input` whose `${VAR:-default}` default is what
/// interpolation used (the variable is unset or empty): for a secret, that
/// means its value is written in the route file for anyone to read.
pub fn defaulted(input: &str, env: &dyn EnvSource) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = input;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            rest = &rest[at + 2..];
            continue;
        }
        let after = &rest[at + 2..];
        let Ok(end) = closing_brace(after) else { break };
        if let Some((name, _)) = after[..end].split_once(":-") {
            let name = name.trim_end_matches('?');
            if env.var(name).is_none_or(|v| v.is_empty()) {
                out.push(name.to_string());
            }
        }
        rest = &after[end + 1..];
    }
    out
}

/// The `}` closing a `${`, skipping nested `${...}` in a default.
fn closing_brace(s: &str) -> Result<usize, EnvError> {
    let mut depth = 1;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            depth += 1;
            if depth > MAX_NESTING {
                return Err(EnvError::TooDeep);
            }
            i += 2;
            continue;
        }
        if bytes[i] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Ok(i);
            }
        }
        i += 1;
    }
    Err(EnvError::Unterminated)
}

fn expand(expr: &str, env: &dyn EnvSource) -> Result<String, EnvError> {
    let (name, fallback) = match expr.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (expr, None),
    };
    let (name, optional) = match name.strip_suffix('?') {
        Some(n) => (n, true),
        None => (name, false),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(EnvError::BadName(expr.to_string()));
    }
    match (env.var(name), fallback) {
        (Some(v), Some(d)) if v.is_empty() => interpolate(d, env),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => interpolate(d, env),
        (None, None) if optional => Ok(String::new()),
        (None, None) => Err(EnvError::Unset(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([("A".into(), "alpha".into()), ("EMPTY".into(), String::new())])
    }

    #[test]
    fn forms() {
        let e = env();
        assert_eq!(interpolate("x-${A}-y", &e).unwrap(), "x-alpha-y");
        assert_eq!(interpolate("${B?}", &e).unwrap(), "");
        assert_eq!(interpolate("${B:-dflt}", &e).unwrap(), "dflt");
        assert_eq!(interpolate("${EMPTY:-dflt}", &e).unwrap(), "dflt");
        assert_eq!(interpolate("$.data.id", &e).unwrap(), "$.data.id");
        assert_eq!(interpolate("$${A}", &e).unwrap(), "${A}");
        assert_eq!(interpolate("${B:-${A}}/x", &e).unwrap(), "alpha/x");
        assert_eq!(interpolate("${A:-${B}}", &e).unwrap(), "alpha");
        assert_eq!(interpolate("${B:-${C}}", &e), Err(EnvError::Unset("C".into())));
    }

    #[test]
    fn defaults_used() {
        let e = env();
        assert_eq!(defaulted("${B:-trial}", &e), vec!["B"]);
        assert_eq!(defaulted("${EMPTY:-trial}-${A:-x}", &e), vec!["EMPTY"]);
        assert!(defaulted("${A:-x} ${B} $${C:-y}", &e).is_empty());
    }

    #[test]
    fn errors() {
        let e = env();
        assert_eq!(interpolate("${B}", &e), Err(EnvError::Unset("B".into())));
        assert_eq!(interpolate("${A", &e), Err(EnvError::Unterminated));
        assert_eq!(interpolate("${A B}", &e), Err(EnvError::BadName("A B".into())));
        // 10,000 nested defaults took 4.5 s; past the bound it is an error at once.
        let nested = |n: usize| format!("{}x{}", "${V:-".repeat(n), "}".repeat(n));
        assert_eq!(interpolate(&nested(MAX_NESTING), &e).unwrap(), "x");
        assert_eq!(interpolate(&nested(MAX_NESTING + 1), &e), Err(EnvError::TooDeep));
        assert_eq!(interpolate(&nested(10_000), &e), Err(EnvError::TooDeep));
    }
}
