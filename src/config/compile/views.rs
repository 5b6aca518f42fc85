//! Views: `views:` entries become read-only `View`s over store trees.

use super::*;

impl FileContext<'_> {
    /// One `views:` entry: a GET path over a store tree, either one record
    /// /// (`key:`) or a filtered list with an optional summary count.
    pub(super) fn view(&mut self, v: &Spanned<raw::RawView>) -> Option<View> {
        let raw = &v.value;
        // As for routes, the key may read only the path's own parameters.
        let params = template_params(&raw.path.value);
        let key = match &raw.key {
            Some(k) => Some(self.checked_expr(k, false, &params)?),
            None => None,
        };
        // The two shapes read different keys; mixing them means the operator
        // expects behaviour that one of them lacks.
        if key.is_some() && (raw.filter_by.is_some() || raw.summary.is_some() || raw.summary_values.is_some()) {
            self.error(Pos::of(v), "a view with `key` shows one record; `filter_by` and `summary` are for list views")
                .with_hint("drop `key` for a list view, or `filter_by`/`summary` for a record view");
            return None;
        }
        // A view's script adds computed fields to each record it shows (an
        // engagement score, a label), read-only.
        let script = match &raw.script {
            Some(s) => Some(self.rhai(s, script::Kind::Script, true)?),
            None => None,
        };
        // Readers present a bearer token, with the same unset-default warning
        // as a route's secrets: a page of member data is not public by accident.
        let auth = match &raw.auth {
            Some(a) => Some(BearerToken::new(None, self.non_empty_secrets(&a.value.token)?)),
            None => None,
        };
        Some(View {
            path: raw.path.value.clone(),
            // The tree may come from the environment, as a store sink's does.
            tree: self.interp(&raw.tree)?,
            key,
            filter_by: raw
                .filter_by
                .iter()
                .flatten()
                // `filter_by: [status]` filters field `status` by query `?status=`;
                // `param=field` maps a query name to a different field.
                .map(|f| match f.value.split_once('=') {
                    Some((param, field)) => (param.trim().to_string(), field.trim().to_string()),
                    None => (f.value.clone(), f.value.clone()),
                })
                .collect(),
            summary: raw.summary.as_ref().map(|s| s.value.clone()),
            summary_values: raw.summary_values.iter().flatten().map(|v| v.value.clone()).collect(),
            script,
            auth,
            // A page on another origin reads the view from the browser: the
            // operator lists the origins (or `*`).
            cors: raw.cors.iter().flatten().map(|c| c.value.clone()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compile_text, problems};

    #[test]
    fn a_record_view_and_a_list_view() {
        let config = compile_text(
            "views:\n  - path: /members/{id}\n    tree: members\n    key: \"{id}\"\n  \
             - path: /members\n    tree: members\n",
        )
        .unwrap();
        assert_eq!(config.views.len(), 2);
    }

    #[test]
    fn a_record_view_cannot_filter() {
        let got = problems("views:\n  - path: /m/{id}\n    tree: m\n    key: \"{id}\"\n    filter_by: [status]\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("2:5: a view with `key` shows one record"), "{got:?}");
    }
}
