//! Scripts: `when:` and `script:` (inline or a file beside the route),
//! compiled once per sandbox, and `script_limits:` read into a `Sandbox`.

use super::*;

impl FileContext<'_> {
    /// Compiles a `when:` or `script:`; a `script:` naming a `.rhai` file is
    /// read from beside the route file. Errors point into the script's file,
    /// or into the YAML for inline source.
    pub(super) fn rhai(
        &mut self,
        s: &Spanned<String>,
        kind: script::Kind,
        may_be_file: bool,
    ) -> Option<script::Compiled> {
        let text = s.value.trim_end();
        // Engines are built per distinct sandbox and shared: building one
        // registers every helper, which a route with many rules should not
        // repeat per script.
        let engine = self.engines.get(self.limits);
        // One line ending in `.rhai` is a file name; anything else is
        // source. `when:` is always an inline expression.
        if may_be_file && !text.contains('\n') && text.ends_with(".rhai") {
            let relative = Path::new(text);
            // The routes directory is the unit ops ship, review and mount:
            // a script outside it would not travel with its route.
            if relative.is_absolute() || relative.components().any(|c| c == std::path::Component::ParentDir) {
                self.error(Pos::of(s), format!("script `{text}` must be a path inside the routes directory"))
                    .with_hint("write it relative to this file, e.g. `scripts/engagement.rhai`");
                return None;
            }
            let file = self.file.parent().unwrap_or(Path::new(".")).join(relative);
            // Read at compile time, so a reload picks up an edited script and a
            // missing one is a `check` error, not a failed delivery.
            let source = match std::fs::read_to_string(&file) {
                Ok(source) => source,
                Err(e) => {
                    self.error(Pos::of(s), format!("cannot read script `{}`: {e}", file.display()))
                        .with_hint("scripts are read relative to the route file's directory");
                    return None;
                }
            };
            return script::Compiled::compile(engine, self.limits, kind, &source, script::Origin::file(&file))
                .map_err(|e| {
                    let at = Pos { line: e.line as u64, column: e.column as u64 };
                    // The error belongs to the `.rhai` file, at Rhai's own line and
                    // column: not to the YAML line that names it.
                    let mut d = Diagnostic::error(&file, at, e.message.as_str());
                    d.hint = rhai_hint(e.message.as_str(), kind);
                    self.diags.push(d);
                })
                .ok();
        }
        // Inline source: Rhai's positions are shifted to where the text
        // sits in the YAML, so the error points into the route file.
        let origin = self.inline_origin(s);
        script::Compiled::compile(engine, self.limits, kind, &s.value, origin)
            .map_err(|e| {
                let hint = rhai_hint(e.message.as_str(), kind);
                let d = self.error(Pos { line: e.line as u64, column: e.column as u64 }, e.message);
                if let Some(h) = hint {
                    d.with_hint(h);
                }
            })
            .ok()
    }

    /// Where inline Rhai text sits in the YAML: a one-line scalar starts at
    /// its position (after any quote); a block scalar (`|`) is located at its
    /// first content line, and every line starts at that indentation.
    pub(super) fn inline_origin(&self, s: &Spanned<String>) -> script::Origin {
        let at = Pos::of(s);
        let mut origin = script::Origin::file(self.file);
        if s.value.trim_end().contains('\n') {
            let first = self.text.lines().nth(at.line.saturating_sub(1) as usize).unwrap_or("");
            // YAML strips the block's indentation from the value; add it back.
            let indent = first.len() - first.trim_start().len();
            origin.line_offset = at.line.saturating_sub(1) as usize;
            origin.first_line_column = indent;
            origin.column_offset = indent;
        } else {
            // `pos_in` skips an opening quote, so column 1 of the source is
            // the first character inside it.
            let start = self.pos_in(s, 0);
            origin.line_offset = start.line as usize - 1;
            origin.first_line_column = start.column as usize - 1;
        }
        origin
    }

    /// `script_limits:`, over the defaults (`Sandbox::default`). A zero
    /// /// would make every script fail at its first step, so it is refused.
    pub(super) fn script_limits(&mut self, l: &Spanned<raw::RawScriptLimits>) -> Option<Sandbox> {
        let raw = &l.value;
        let mut limits = Sandbox::default();
        let mut ok = true;
        // Every limit is checked before returning, so all zeros are reported.
        let mut positive = |cx: &mut Self, v: &Option<Spanned<usize>>, name: &str, slot: &mut usize| {
            if let Some(v) = v {
                if v.value == 0 {
                    cx.error(Pos::of(v), format!("script_limits.{name} must be above 0"));
                    ok = false;
                }
                *slot = v.value;
            }
        };
        positive(self, &raw.call_depth, "call_depth", &mut limits.call_depth);
        positive(self, &raw.expr_depth, "expr_depth", &mut limits.expr_depth);
        positive(self, &raw.array_size, "array_size", &mut limits.array_size);
        positive(self, &raw.map_size, "map_size", &mut limits.map_size);
        // `string_size` is written as a byte size (`1MiB`): same check.
        let mut string_size = None;
        if let Some(v) = &raw.string_size {
            string_size = Some(Spanned { value: v.value.0 as usize, referenced: v.referenced, defined: v.defined });
        }
        positive(self, &string_size, "string_size", &mut limits.string_size);
        if let Some(v) = &raw.operations {
            if v.value == 0 {
                self.error(Pos::of(v), "script_limits.operations must be above 0");
                ok = false;
            }
            limits.operations = v.value;
        }
        // Wall time bounds a script that sleeps in a helper or loops under
        // the operations budget; zero would refuse every run.
        if let Some(w) = &raw.wall_time {
            match self.duration(w) {
                Some(d) if !d.is_zero() => limits.wall_time = d,
                Some(_) => {
                    self.error(Pos::of(w), "script_limits.wall_time must be above 0").with_hint("e.g. `100ms`");
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compile_text, problems};

    use super::super::{TEST_HEAD as HEAD, TEST_SINK as SINK};

    #[test]
    fn an_inline_script_compiles_and_a_broken_one_is_placed_in_the_file() {
        compile_text(&format!("{HEAD}rules:\n  - on: \"*\"\n    when: doc.id != ()\n    to: [{{ sink: s }}]\n{SINK}"))
            .unwrap();
        let got =
            problems(&format!("{HEAD}rules:\n  - on: \"*\"\n    when: \"doc.id ==\"\n    to: [{{ sink: s }}]\n{SINK}"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("7:"), "at the `when:` line: {got:?}");
    }

    #[test]
    fn script_limits_are_read_and_checked() {
        let got = problems(&format!("{HEAD}script_limits: {{ operations: 0 }}\n{SINK}"));
        assert_eq!(got, ["5:30: script_limits.operations must be above 0"]);
    }
}
