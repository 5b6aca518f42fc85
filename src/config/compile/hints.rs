//! Hints: YAML and Rhai errors turned into diagnostics with a
//! suggestion of what to write instead.

use super::*;

/// Turns a YAML/serde error into a diagnostic, with "did you mean" for unknown keys.
pub(super) fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> Diagnostic {
    // serde-saphyr knows where most errors are; the few it does not (an
    // empty document's) are placed at 0:0, which the printer shows as the file.
    let pos = e.location().map(|l| Pos::from_location(&l)).unwrap_or_default();
    let full = e.without_snippet().to_string();
    // The rendered message may carry its own position; ours is the one printed.
    let message = match full.split_once(": ") {
        Some((head, rest)) if head.contains("line") && head.contains("column") => rest.to_string(),
        _ => full,
    };
    // One line per diagnostic: the library's multi-line messages are
    // joined, and a trailing "at line L, column C" dropped (ours is printed).
    let mut message = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    if let Some(at) = message.rfind(" at line ") {
        if message[at..].contains(", column ") {
            message.truncate(at);
        }
    }
    let message = plain_yaml_message(message);
    let d = Diagnostic::error(path, pos, message.clone());
    match yaml_hint(&message, source_line(text, pos)) {
        Some(h) => d.with_hint(h),
        None => d,
    }
}

/// The YAML library's message in an operator's words: no API names or
/// debug output, and never the offending value itself (it may be a secret
/// written as a number: `token: 998877665544`).
pub(super) fn plain_yaml_message(message: String) -> String {
    if message.starts_with("multiple YAML documents") {
        return "a route file holds one YAML document; a second one starts here (split the file in two)".into();
    }
    if let Some(budget) = message.strip_prefix("budget breached: ") {
        return match budget.strip_prefix("Depth { depth: ").and_then(|d| d.strip_suffix(" }")) {
            Some(depth) => format!("nested more than {} levels deep", depth.parse::<u32>().map_or(64, |d| d - 1)),
            None => "the file is too large or too deeply nested to load".into(),
        };
    }
    for kind in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(kind) {
            // `integer `998877665544`, expected a string` → `integer, expected a string`
            if let (Some(open), Some(close)) = (rest.find(" `"), rest.find("`,")) {
                if open < close {
                    return format!("{kind}{}{}", &rest[..open], &rest[close + 1..]);
                }
            }
        }
    }
    message
}

pub(super) fn source_line(text: &str, at: Pos) -> &str {
    text.lines().nth(at.line.saturating_sub(1) as usize).unwrap_or("")
}

/// What to write instead, for the YAML and shape errors operators hit most.
pub(super) fn yaml_hint(message: &str, line: &str) -> Option<String> {
    // serde's message lists the keys that were expected: the nearest one
    // is the likely typo, else the list is the hint.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`')?;
        let list = expected.split_once("expected one of ").map_or("", |(_, l)| l);
        let candidates: Vec<&str> =
            list.split(',').map(|c| c.trim().trim_matches('`')).filter(|c| !c.is_empty()).collect();
        return Some(match nearest(field, candidates.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("valid keys here: {}", candidates.join(", ")),
        });
    }
    // `{ token: ${T} }` is a flow mapping holding a second `{`: YAML reads
    // `${T}` as a nested mapping. It is the commonest mistake in route
    // files, and the library's message does not say so.
    if line.contains("${") && line.contains('{') && line.matches('{').count() > line.matches("${").count() {
        return Some("inside a { ... } mapping, quote values that use variables: token: \"${MY_TOKEN}\"".into());
    }
    // Shape mistakes: a scalar where a list or a mapping goes.
    if message.contains("expected sequence") {
        return Some("this value must be a list: [a, b], or one `- item` per line".into());
    }
    if message.contains("expected mapping") || message.contains("expected struct") {
        return Some("this value must be a mapping of `key: value` lines".into());
    }
    None
}

/// What to write instead, for the Rhai compile errors operators hit most.
pub(super) fn rhai_hint(message: &str, kind: script::Kind) -> Option<String> {
    // Scripts see a fixed set of inputs; a near miss (`paylod`) is a typo.
    if let Some(name) = message.strip_prefix("Undefined variable: ") {
        let inputs = script::INPUTS.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ");
        return Some(match nearest(name, script::INPUTS.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? scripts see {inputs}"),
            None => format!("scripts see {inputs}; declare other names with `let`"),
        });
    }
    // Any other error in a `when:` is usually a statement written where
    // one expression goes.
    (kind == script::Kind::Condition).then(|| {
        "`when:` is one Rhai expression over `payload`, `event` and `doc`, e.g. `payload.data.severity == \"HIGH\"`"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::super::problems;

    #[test]
    fn an_unknown_key_gets_a_did_you_mean() {
        let got = problems("route: r\npth: /r\n");
        assert!(got[0].starts_with("2:1: ") && got[0].contains("unknown field `pth`"), "{got:?}");
    }

    #[test]
    fn a_yaml_syntax_error_is_placed() {
        let got = problems("route: r\npath: [/r\n");
        assert_eq!(got.len(), 1, "{got:?}");
    }
}
