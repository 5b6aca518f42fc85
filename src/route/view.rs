//! The compiled form of a view (`views:` in a route file): a read-only GET
//! endpoint over a store tree, served by `server::views`. Routes write
//! records; views are how a page reads them back.

use crate::mapping::Expr;

/// A read-only GET endpoint over a store tree.
#[derive(Debug)]
pub struct View {
    pub path: String,
    pub tree: String,
    /// One record under this key; `None` makes a list view.
    pub key: Option<Expr>,
    /// (query parameter, record field) pairs.
    pub filter_by: Vec<(String, String)>,
    pub summary: Option<String>,
    /// Values counted even when 0 (the page expects every bucket).
    pub summary_values: Vec<String>,
    /// Adds computed fields to each record shown.
    pub script: Option<crate::script::Compiled>,
    /// Bearer tokens a reader must present; `None`: open.
    pub auth: Option<crate::verify::BearerToken>,
    /// Origins allowed by CORS (`*` for any); empty: no CORS headers.
    pub cors: Vec<String>,
}
