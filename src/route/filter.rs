//! Event-type patterns: `customer.*`, `*`, `!customer.deleted`.
//!
//! `*` matches any run of characters, dots included, so `customer.*` also
//! admits `customer.subscription.created`. A `!` pattern excludes. With only
//! exclusions, everything else is admitted.

/// One compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    /// The literal pieces between `*`s.
    pieces: Vec<String>,
    starts_open: bool,
    ends_open: bool,
}

/// Why a pattern was rejected; `offset` is the offending character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub offset: usize,
    pub message: String,
}

/// The longest event pattern, in characters. Real event types are under
/// 100 (`customer.subscription.trial_will_end`); the overlap check
/// `router check` runs is quadratic in pattern length, so a 20,000-character
/// glob took seconds and hundreds of MB.
pub const MAX_PATTERN_LEN: usize = 256;

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError { offset: 0, message: "empty event pattern".into() });
        }
        if text.chars().count() > MAX_PATTERN_LEN {
            return Err(PatternError {
                offset: 0,
                message: format!(
                    "event pattern of {} characters; at most {MAX_PATTERN_LEN} are allowed",
                    text.chars().count()
                ),
            });
        }
        if let Some((i, c)) =
            text.char_indices().find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '*')))
        {
            return Err(PatternError {
                offset: i,
                message: format!("`{text}`: `{c}` cannot appear in an event pattern"),
            });
        }
        let pieces = text.split('*').filter(|p| !p.is_empty()).map(str::to_string).collect();
        Ok(Self { text: text.to_string(), pieces, starts_open: text.starts_with('*'), ends_open: text.ends_with('*') })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, s: &str) -> bool {
        if !self.text.contains('*') {
            return self.text == s;
        }
        let mut rest = s;
        for (i, piece) in self.pieces.iter().enumerate() {
            let first = i == 0;
            let last = i + 1 == self.pieces.len();
            if first && !self.starts_open {
                match rest.strip_prefix(piece.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
            } else if last && !self.ends_open {
                return rest.len() >= piece.len() && rest.ends_with(piece.as_str());
            } else {
                match rest.find(piece.as_str()) {
                    Some(at) => rest = &rest[at + piece.len()..],
                    None => return false,
                }
            }
        }
        self.ends_open || rest.is_empty()
    }
}

impl Pattern {
    /// Whether some event type matches both patterns (`customer.*` and
    /// `*.deleted` do; `customer.*` and `invoice.*` do not).
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let (a, b) = (self.text.as_bytes(), other.text.as_bytes());
        // memo[i][j]: whether a[i..] and b[j..] share a match; a star may
        // consume any character of the other side, its stars included.
        let mut memo = vec![vec![None::<bool>; b.len() + 1]; a.len() + 1];
        fn go(a: &[u8], b: &[u8], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
            if let Some(v) = memo[i][j] {
                return v;
            }
            let v = if i == a.len() && j == b.len() {
                true
            } else if i < a.len() && a[i] == b'*' {
                go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo))
            } else if j < b.len() && b[j] == b'*' {
                go(a, b, i, j + 1, memo) || (i < a.len() && go(a, b, i + 1, j, memo))
            } else {
                i < a.len() && j < b.len() && a[i] == b[j] && go(a, b, i + 1, j + 1, memo)
            };
            memo[i][j] = Some(v);
            v
        }
        go(a, b, 0, 0, &mut memo)
    }
}

/// Include/exclude list, as in a route's `events:` or a rule's `on:`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl EventFilter {
    /// Admits everything (a route without `events:`).
    pub fn any() -> Self {
        Self::default()
    }

    /// Compiles every pattern; each error comes back with its pattern's index.
    pub fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, Vec<(usize, PatternError)>> {
        let mut filter = Self::default();
        let mut errors = Vec::new();
        for (i, p) in patterns.into_iter().enumerate() {
            let (negated, text) = match p.strip_prefix('!') {
                Some(neg) => (true, neg),
                None => (false, p),
            };
            if negated && text.is_empty() {
                errors.push((
                    i,
                    PatternError { offset: 0, message: "`!` must be followed by the pattern to exclude".into() },
                ));
                continue;
            }
            match Pattern::parse(text) {
                Ok(pat) if negated => filter.exclude.push(pat),
                Ok(pat) => filter.include.push(pat),
                Err(e) => errors.push((i, PatternError { offset: e.offset + usize::from(negated), ..e })),
            }
        }
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(errors)
        }
    }

    pub fn admits(&self, event_type: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(event_type)))
            && !self.exclude.iter().any(|p| p.matches(event_type))
    }

    /// The included patterns a route filter can never admit an event for:
    /// a literal it rejects, or a glob that overlaps none of its includes.
    pub fn unreachable_in<'a>(&'a self, route: &'a EventFilter) -> impl Iterator<Item = &'a str> + 'a {
        self.include
            .iter()
            .filter(move |p| match p.text.contains('*') {
                false => !route.admits(&p.text),
                true => !route.include.is_empty() && !route.include.iter().any(|r| r.overlaps(p)),
            })
            .map(|p| p.as_str())
    }

    /// The patterns as written, exclusions with their `!`.
    pub fn describe(&self) -> Vec<String> {
        let inc = self.include.iter().map(|p| p.text.clone());
        inc.chain(self.exclude.iter().map(|p| format!("!{}", p.text))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &[&str]) -> EventFilter {
        EventFilter::parse(p.iter().copied()).unwrap()
    }

    #[test]
    fn globs() {
        let p = Pattern::parse("customer.*").unwrap();
        assert!(p.matches("customer.created"));
        assert!(p.matches("customer.subscription.created"));
        assert!(!p.matches("customer"));
        assert!(!p.matches("invoice.paid"));
        assert!(Pattern::parse("*").unwrap().matches("anything"));
        assert!(Pattern::parse("*.created").unwrap().matches("lead.created"));
        assert!(!Pattern::parse("*.created").unwrap().matches("lead.created.x"));
        assert!(Pattern::parse("a*b*c").unwrap().matches("aXbYc"));
        assert!(!Pattern::parse("a*b*c").unwrap().matches("aXcYb"));
        assert!(!Pattern::parse("ab*ba").unwrap().matches("aba"));
        assert!(Pattern::parse("qr").unwrap().matches("qr"));
        assert!(!Pattern::parse("qr").unwrap().matches("qrx"));
    }

    #[test]
    fn include_exclude() {
        let filter = f(&["customer.*", "!customer.deleted"]);
        assert!(filter.admits("customer.created"));
        assert!(!filter.admits("customer.deleted"));
        assert!(!filter.admits("charge.succeeded"));
        let only_not = f(&["!membership.test"]);
        assert!(only_not.admits("membership.went_valid"));
        assert!(!only_not.admits("membership.test"));
        assert!(EventFilter::any().admits("x"));
    }

    #[test]
    fn overlaps() {
        let o = |a: &str, b: &str| Pattern::parse(a).unwrap().overlaps(&Pattern::parse(b).unwrap());
        assert!(o("customer.*", "*.deleted"));
        assert!(o("customer.*", "customer.subscription.*"));
        assert!(o("*", "x"));
        assert!(o("a*c", "ab*"));
        assert!(!o("customer.*", "invoice.*"));
        assert!(!o("lead.created", "*.deleted"));
        assert!(!o("a*b", "c*"));
        let route = f(&["customer.*", "!customer.deleted"]);
        let unreachable = |on: &[&str]| f(on).unreachable_in(&route).map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            unreachable(&["customer.created", "invoice.*", "customer.deleted", "*.updated"]),
            ["invoice.*", "customer.deleted"]
        );
        assert!(f(&["anything"]).unreachable_in(&EventFilter::any()).next().is_none());
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(EventFilter::parse(["ok", "bad type"]).unwrap_err()[0].0, 1);
        assert!(EventFilter::parse(["!"]).unwrap_err()[0].1.message.contains("must be followed"));
        assert_eq!(EventFilter::parse(["a b", "!", "fine"]).unwrap_err().len(), 2);
        assert_eq!(Pattern::parse("a b").unwrap_err().offset, 1);
    }

    /// A 20,000-character glob took 14.5 s and 431 MB in the overlap check
    /// (70,000 aborted the process): past the bound it is refused at parse.
    #[test]
    fn long_patterns_are_refused() {
        let glob = |n: usize| "a*".repeat(n / 2);
        assert!(Pattern::parse(&glob(MAX_PATTERN_LEN)).is_ok());
        for n in [MAX_PATTERN_LEN + 2, 20_000, 70_000] {
            let e = Pattern::parse(&glob(n)).unwrap_err();
            assert_eq!(e.message, format!("event pattern of {n} characters; at most {MAX_PATTERN_LEN} are allowed"));
        }
    }
}
