//! `${...}` interpolation in route files, so secrets and URLs live in the
//! environment or in mounted secret files, not in git. The forms are the
//! shell's (and Vector's), so nothing has to be learnt twice:
//!
//! - `${VAR}`: required; unset is a config error naming the variable.
//! - `${VAR:-default}`: `default` when unset or empty; `${VAR-default}`:
//!   only when unset. The default may itself use variables
//!   (`${COHORT_URL:-${PAYMENTS_URL}}`, seed 002's fallbacks). Optional is
//!   `${VAR:-}` (the field is then treated as absent where that makes sense,
//!   e.g. an optional URL).
//! - `${VAR:?message}`: required and not empty, else an error with the
//!   operator's message; `${VAR?message}`: required (may be empty).
//! - `${file:PATH}`: the content of a file (Docker and Kubernetes mount
//!   secrets as files), one trailing newline trimmed; `PATH` may use
//!   variables (`${file:${SECRETS}/whop}`). Read on every load, so a reload
//!   picks up a rotated secret. Only the path ever appears in an error.
//! - `$${` writes a literal `${`.

use std::io::Read;

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
    /// `${VAR?}` with `VAR` unset: required, as in the shell; until
    /// 2026-12 it meant optional, so the hint says how to write that now.
    #[error("environment variable `{0}` is not set (`${{{0}?}}` means required)")]
    UnsetQuestion(String),
    /// `${VAR:?message}` / `${VAR?message}`: the operator's own words.
    #[error("environment variable `{name}` is not set: {message}")]
    Required { name: String, message: String },
    #[error("unterminated `${{` (missing `}}`)")]
    Unterminated,
    #[error("`${{{0}}}` is not a valid variable name")]
    BadName(String),
    #[error("defaults nested more than {MAX_NESTING} deep (`${{A:-${{B:-...}}}}`)")]
    TooDeep,
    /// A `${file:PATH}` that cannot be read; never the content.
    #[error("cannot read secret file `{path}`: {why}")]
    File { path: String, why: String },
}

/// How deep `${A:-${B:-...}}` defaults may nest. Real files use one or two
/// levels; 10,000 took seconds to expand (each level rescans the rest).
pub const MAX_NESTING: usize = 8;

/// The largest `${file:...}` read: secrets are bytes to kilobytes; a path
/// naming a disk image or `/dev/zero` must not fill memory.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

impl EnvError {
    pub fn hint(&self) -> Option<String> {
        match self {
            EnvError::Unset(name) => Some(format!(
                "export {name}=..., or write ${{{name}:-default}} for a default or ${{{name}:-}} if it may be unset"
            )),
            EnvError::UnsetQuestion(name) => Some(format!(
                "`${{{name}?}}` used to mean optional; write ${{{name}:-}} if it may be unset, or export {name}=..."
            )),
            EnvError::Required { name, .. } => Some(format!("export {name}=...")),
            EnvError::Unterminated => Some("close it: ${NAME}".into()),
            EnvError::BadName(_) => Some(
                "write ${NAME}, ${NAME:-default}, ${NAME:?message} or ${file:/run/secrets/name}; names are letters, digits and `_`".into(),
            ),
            EnvError::TooDeep => Some(format!("use at most {MAX_NESTING} fallbacks: ${{A:-${{B:-default}}}}")),
            EnvError::File { .. } => {
                Some("mount the secret there (a regular UTF-8 file, at most 64 KiB), or fix the path".into())
            }
        }
    }
}

/// One `${...}`, parsed.
enum Expansion<'a> {
    Var { name: &'a str, op: Op<'a> },
    File(&'a str),
}

/// What a `${VAR...}` does when the variable is unset (or empty, `colon`).
enum Op<'a> {
    Required,
    Default { word: &'a str, colon: bool },
    Message { word: &'a str, colon: bool },
}

fn parse(expr: &str) -> Result<Expansion<'_>, EnvError> {
    if let Some(path) = expr.strip_prefix("file:") {
        return Ok(Expansion::File(path));
    }
    let end = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
    let (name, rest) = expr.split_at(end);
    let op = match rest {
        "" => Op::Required,
        _ if rest.starts_with(":-") => Op::Default { word: &rest[2..], colon: true },
        _ if rest.starts_with('-') => Op::Default { word: &rest[1..], colon: false },
        _ if rest.starts_with(":?") => Op::Message { word: &rest[2..], colon: true },
        _ if rest.starts_with('?') => Op::Message { word: &rest[1..], colon: false },
        _ => return Err(EnvError::BadName(expr.to_string())),
    };
    if name.is_empty() {
        return Err(EnvError::BadName(expr.to_string()));
    }
    Ok(Expansion::Var { name, op })
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

/// The variables of `input` whose default is what interpolation used (the
/// variable is unset, or empty for `:-`): for a secret, that means its
/// value is written in the route file for anyone to read.
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
        if let Ok(Expansion::Var { name, op: Op::Default { colon, .. } }) = parse(&after[..end]) {
            let value = env.var(name);
            if value.as_deref().is_none_or(|v| colon && v.is_empty()) {
                out.push(name.to_string());
            }
        }
        rest = &after[end + 1..];
    }
    out
}
/// The `}` closing a `${`, skipping nested `${...}` in a default or path.
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
    let (name, op) = match parse(expr)? {
        Expansion::File(path) => return read_secret_file(&interpolate(path, env)?),
        Expansion::Var { name, op } => (name, op),
    };
    let value = env.var(name);
    let missing = |colon: bool| value.as_deref().is_none_or(|v| colon && v.is_empty());
    match op {
        Op::Default { word, colon } if missing(colon) => interpolate(word, env),
        Op::Message { word, colon } if missing(colon) => Err(match word {
            "" if value.is_none() => EnvError::UnsetQuestion(name.to_string()),
            "" => EnvError::Required { name: name.to_string(), message: "it is empty".into() },
            _ => EnvError::Required { name: name.to_string(), message: word.to_string() },
        }),
        _ => value.ok_or_else(|| EnvError::Unset(name.to_string())),
    }
}

/// The content of a secret file, one trailing newline trimmed (`echo` and
/// editors add one; no secret ends in one).
fn read_secret_file(path: &str) -> Result<String, EnvError> {
    let fail = |why: String| EnvError::File { path: path.to_string(), why };
    if path.is_empty() {
        return Err(fail("the path is empty".into()));
    }
    // A FIFO or a device would block or never end: only regular files
    // (through symlinks, as Kubernetes mounts them).
    let meta = std::fs::metadata(path).map_err(|e| fail(io_reason(&e)))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(io_reason(&e)))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(fail(format!("larger than {} KiB", MAX_SECRET_FILE / 1024)));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    let trimmed = text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(&text);
    Ok(trimmed.to_string())
}

/// The reason without the OS's "(os error 2)" noise.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied (the router's user cannot read it)".into(),
        _ => e.to_string(),
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
        assert_eq!(interpolate("${B:-}", &e).unwrap(), "");
        assert_eq!(interpolate("${B:-dflt}", &e).unwrap(), "dflt");
        assert_eq!(interpolate("${EMPTY:-dflt}", &e).unwrap(), "dflt");
        assert_eq!(interpolate("${B-dflt}", &e).unwrap(), "dflt");
        assert_eq!(interpolate("${EMPTY-dflt}", &e).unwrap(), "", "`-` defaults only when unset");
        assert_eq!(interpolate("${EMPTY}", &e).unwrap(), "", "set but empty is set");
        assert_eq!(interpolate("${A?}", &e).unwrap(), "alpha");
        assert_eq!(interpolate("${A:?needed}", &e).unwrap(), "alpha");
        assert_eq!(interpolate("${EMPTY?needed}", &e).unwrap(), "");
        assert_eq!(interpolate("$.data.id", &e).unwrap(), "$.data.id");
        assert_eq!(interpolate("$${A}", &e).unwrap(), "${A}");
        assert_eq!(interpolate("${B:-${A}}/x", &e).unwrap(), "alpha/x");
        assert_eq!(interpolate("${A:-${B}}", &e).unwrap(), "alpha");
        assert_eq!(interpolate("${B:-${C}}", &e), Err(EnvError::Unset("C".into())));
    }

    #[test]
    fn required_with_a_message() {
        let e = env();
        let required = |name: &str, message: &str| EnvError::Required { name: name.into(), message: message.into() };
        assert_eq!(interpolate("${B:?set it to the Whop secret}", &e), Err(required("B", "set it to the Whop secret")));
        assert_eq!(interpolate("${B?set it}", &e), Err(required("B", "set it")));
        assert_eq!(interpolate("${EMPTY:?set it}", &e), Err(required("EMPTY", "set it")));
        assert_eq!(interpolate("${EMPTY:?}", &e), Err(required("EMPTY", "it is empty")));
    }

    #[test]
    fn the_old_optional_form_says_what_to_write() {
        let err = interpolate("${MAKE_WEBHOOK_ADMIN_URL?}", &env()).unwrap_err();
        assert_eq!(err, EnvError::UnsetQuestion("MAKE_WEBHOOK_ADMIN_URL".into()));
        assert!(err.hint().unwrap().contains("${MAKE_WEBHOOK_ADMIN_URL:-}"), "{:?}", err.hint());
    }

    #[test]
    fn defaults_used() {
        let e = env();
        assert_eq!(defaulted("${B:-trial}", &e), vec!["B"]);
        assert_eq!(defaulted("${EMPTY:-trial}-${A:-x}", &e), vec!["EMPTY"]);
        assert_eq!(defaulted("${B-trial} ${EMPTY-x}", &e), vec!["B"]);
        assert!(defaulted("${A:-x} ${B} $${C:-y} ${file:/x}", &e).is_empty());
    }

    #[test]
    fn secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        std::fs::write(path("whop"), "ws_secret\n").unwrap();
        std::fs::write(path("crlf"), "tok\r\n").unwrap();
        std::fs::write(path("two"), "tok\n\n").unwrap();
        std::fs::write(path("bin"), [0xff, 0xfe]).unwrap();
        std::fs::write(path("big"), vec![b'x'; MAX_SECRET_FILE as usize + 1]).unwrap();
        let mut e = env();
        e.insert("DIR".into(), dir.path().to_str().unwrap().into());
        assert_eq!(interpolate(&format!("${{file:{}}}", path("whop")), &e).unwrap(), "ws_secret");
        assert_eq!(interpolate("Bearer ${file:${DIR}/crlf}", &e).unwrap(), "Bearer tok");
        assert_eq!(interpolate("${file:${DIR}/two}", &e).unwrap(), "tok\n", "only one newline is trimmed");
        let why = |name: &str| match interpolate(&format!("${{file:${{DIR}}/{name}}}"), &e) {
            Err(EnvError::File { path, why }) => {
                assert!(path.ends_with(name));
                why
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(why("missing"), "no such file");
        assert_eq!(why("bin"), "not UTF-8 text");
        assert_eq!(why("big"), "larger than 64 KiB");
        assert_eq!(why(""), "not a regular file");
        let err = interpolate("${file:/dev/zero}", &e).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn errors() {
        let e = env();
        assert_eq!(interpolate("${B}", &e), Err(EnvError::Unset("B".into())));
        assert_eq!(interpolate("${A", &e), Err(EnvError::Unterminated));
        assert_eq!(interpolate("${A B}", &e), Err(EnvError::BadName("A B".into())));
        assert_eq!(interpolate("${:-x}", &e), Err(EnvError::BadName(":-x".into())));
        // 10,000 nested defaults took 4.5 s; past the bound it is an error at once.
        let nested = |n: usize| format!("{}x{}", "${V:-".repeat(n), "}".repeat(n));
        assert_eq!(interpolate(&nested(MAX_NESTING), &e).unwrap(), "x");
        assert_eq!(interpolate(&nested(MAX_NESTING + 1), &e), Err(EnvError::TooDeep));
        assert_eq!(interpolate(&nested(10_000), &e), Err(EnvError::TooDeep));
    }
}
