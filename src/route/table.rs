//! Path matching for every route and view on the one listener, on matchit
//! (what axum uses). Built once per config load; conflicting templates are
//! config errors, reported by `router check`.

use std::fmt;

/// What a path leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Index into `Config::routes`.
    Route(usize),
    /// Index into `Config::views`.
    View(usize),
}

/// A matched path: the endpoint and its `{param}` values.
#[derive(Debug)]
pub struct Matched {
    pub endpoint: Endpoint,
    pub params: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct RouteTable {
    router: matchit::Router<Endpoint>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouteTable")
    }
}

/// `{params}` one path may have. matchit panics from 26 on; no webhook
/// path needs more than a handful.
pub const MAX_PARAMS: usize = 16;

impl RouteTable {
    /// Adds a path template; the error explains the conflict for operators.
    pub fn insert(&mut self, template: &str, endpoint: Endpoint) -> Result<(), String> {
        if !template.starts_with('/') {
            return Err(format!("path `{template}` must start with `/`"));
        }
        let params = template_params(template).len();
        if params > MAX_PARAMS {
            return Err(format!("path `{template}` has {params} parameters; at most {MAX_PARAMS} are allowed"));
        }
        // Belt and braces: a matchit defect on some other odd template is a
        // config error, never a panic of the loader or the reload task.
        let inserted =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.router.insert(template, endpoint)));
        match inserted {
            Ok(Ok(())) => Ok(()),
            Ok(Err(matchit::InsertError::Conflict { with })) => {
                Err(format!("path `{template}` conflicts with `{with}`"))
            }
            Ok(Err(other)) => Err(format!("path `{template}`: {other}")),
            Err(_) => Err(format!("path `{template}` cannot be matched; simplify its parameters")),
        }
    }

    pub fn lookup(&self, path: &str) -> Option<Matched> {
        let m = self.router.at(path).ok()?;
        let params = m.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Some(Matched { endpoint: *m.value, params })
    }
}

/// The `{name}` parameters of a path template, in order.
pub fn template_params(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        let name = rest[open + 1..open + close].trim_start_matches('*');
        out.push(name.to_string());
        rest = &rest[open + close + 1..];
    }
    out
}

/// A concrete path from a template: each `{name}` replaced by `value(name)`
/// (`router send` and route tests build requests this way).
pub fn fill_params<'a>(template: &str, value: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut path = template.to_string();
    for name in template_params(template) {
        path = path.replace(&format!("{{{name}}}"), value(&name).unwrap_or("test"));
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_conflicts() {
        let mut t = RouteTable::default();
        t.insert("/api/whatsapp/webhook/{sessionId}", Endpoint::Route(0)).unwrap();
        t.insert("/api/webhooks/whop", Endpoint::Route(1)).unwrap();
        let m = t.lookup("/api/whatsapp/webhook/s-1").unwrap();
        assert_eq!(m.endpoint, Endpoint::Route(0));
        assert_eq!(m.params, vec![("sessionId".to_string(), "s-1".to_string())]);
        assert!(t.lookup("/nope").is_none());
        let err = t.insert("/api/whatsapp/webhook/{other}", Endpoint::Route(2)).unwrap_err();
        assert!(err.contains("conflicts"), "{err}");
        assert!(t.insert("no-slash", Endpoint::Route(3)).is_err());
        assert_eq!(template_params("/a/{x}/b/{y}"), vec!["x", "y"]);
    }

    /// 26 `{params}` panicked inside matchit (`check` and `serve` exited 101).
    #[test]
    fn many_params_are_an_error_not_a_panic() {
        let path = |n: usize| (0..n).map(|i| format!("/{{p{i}}}")).collect::<String>();
        let mut t = RouteTable::default();
        t.insert(&path(MAX_PARAMS), Endpoint::Route(0)).unwrap();
        let m = t.lookup(&(0..MAX_PARAMS).map(|i| format!("/v{i}")).collect::<String>()).unwrap();
        assert_eq!(m.params.len(), MAX_PARAMS);
        for n in [MAX_PARAMS + 1, 26, 300] {
            let err = RouteTable::default().insert(&path(n), Endpoint::Route(0)).unwrap_err();
            assert!(err.contains(&format!("has {n} parameters; at most {MAX_PARAMS}")), "{err}");
        }
    }
}
