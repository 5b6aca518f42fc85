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

impl RouteTable {
    /// Adds a path template; the error explains the conflict for operators.
    pub fn insert(&mut self, template: &str, endpoint: Endpoint) -> Result<(), String> {
        if !template.starts_with('/') {
            return Err(format!("path `{template}` must start with `/`"));
        }
        self.router.insert(template, endpoint).map_err(|e| match e {
            matchit::InsertError::Conflict { with } => format!("path `{template}` conflicts with `{with}`"),
            other => format!("path `{template}`: {other}"),
        })
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
}
