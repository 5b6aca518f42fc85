//! The `store` sink: records in named trees beside the log, keyed by an
//! expression of the event. Views and `router store get` read them back.
//!
//! Each record carries `_sync_metadata` (log id, event id and type, route,
//! received and event time). That makes writes idempotent (a redelivery of
//! the event already applied is skipped) and gives out-of-order protection:
//! an event older than the one that wrote the record never overwrites it.

use super::Outcome;
use crate::event::{parse_time, parse_time_text};
use crate::mapping::Expr;
use crate::storage::embedded::records::{Epoch, RecordLog};
use crate::storage::LogError;
use serde_json::{Map, Value};

/// The field every stored record carries.
pub const SYNC_METADATA: &str = "_sync_metadata";

/// Marks a deleted record. The tombstone keeps its `_sync_metadata`, so an
/// older event arriving after the delete is still recognised as stale
/// instead of bringing the record back; reads treat it as absent.
const DELETED: &str = "_deleted";

fn is_tombstone(v: &Value) -> bool {
    v.get(DELETED).and_then(Value::as_bool) == Some(true)
}

/// A `type: store` sink.
#[derive(Debug)]
pub struct StoreSink {
    pub tree: String,
    /// Default key when the rule's target gives none.
    pub key: Option<Expr>,
    pub mode: StoreMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Replace the record with the document.
    Upsert,
    /// JSON Merge Patch (RFC 7386) of the document into the record.
    Merge,
    Delete,
}

impl StoreMode {
    pub const NAMES: &'static [&'static str] = &["upsert", "merge", "delete"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "upsert" => Self::Upsert,
            "merge" => Self::Merge,
            "delete" => Self::Delete,
            _ => return None,
        })
    }
}

/// Who wrote a record: the event a delivery applies.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncMetadata {
    pub log_id: u64,
    pub event_id: Option<String>,
    pub event_type: String,
    pub route: String,
    pub received_at: String,
    pub event_time: Option<String>,
}

/// The record trees of the data directory (on disk: `storage::embedded::records`).
#[derive(Clone)]
pub struct Records {
    log: std::sync::Arc<RecordLog>,
}

impl Records {
    pub fn new(log: RecordLog) -> Self {
        Self { log: std::sync::Arc::new(log) }
    }

    /// Makes every record written so far durable. The dispatcher calls it
    /// before it records the deliveries that wrote them: an outcome on disk
    /// without its record would be a lost update after a crash. When it
    /// fails, the writes since the last sync are undone (and redone when the
    /// deliveries run again).
    pub fn sync(&self) -> Result<(), LogError> {
        self.log.sync()
    }

    /// The epoch to take before a batch of writes that `sync_since` makes
    /// durable together.
    pub fn epoch(&self) -> Epoch {
        self.log.epoch()
    }

    /// As `sync`, and fails if a write made since `epoch` was undone in
    /// between (by another caller's failed sync): the writer redoes them.
    pub fn sync_since(&self, epoch: Epoch) -> Result<(), LogError> {
        self.log.sync_since(epoch)
    }

    /// Bytes the records take on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.log.size_on_disk()
    }

    /// Applies one delivery to the record under `key`, atomically (compare
    /// and swap, so concurrent deliveries to one key cannot lose an update).
    /// `build` makes the document from the live record (`None` when absent):
    /// it runs inside the swap loop, so a script reading `current` never
    /// works from a stale copy; its `Err` outcome is returned unapplied.
    /// `build` sees the record only when `needs_current` (a script reads
    /// `current`): otherwise only its `_sync_metadata` is read, which spares
    /// parsing the whole record on every write.
    pub fn apply(
        &self,
        tree: &str,
        key: &str,
        mode: StoreMode,
        meta: &SyncMetadata,
        needs_current: bool,
        mut build: impl FnMut(Option<&Value>) -> Result<Value, Outcome>,
    ) -> Outcome {
        self.swap(tree, key, meta, needs_current || mode == StoreMode::Merge, |live| {
            let doc = build(live.as_ref())?;
            let next = match mode {
                StoreMode::Delete => with_metadata(serde_json::json!({ DELETED: true }), meta),
                StoreMode::Upsert => with_metadata(doc, meta),
                StoreMode::Merge => {
                    let mut base = live.unwrap_or_else(|| Value::Object(Map::new()));
                    merge_patch(&mut base, &doc);
                    with_metadata(base, meta)
                }
            };
            Ok(serde_json::to_vec(&next).expect("JSON values serialise"))
        })
    }

    /// Upserts the event's JSON text (`payload::json_text`) as it came,
    /// with `_sync_metadata` added: the record `apply` would write for the
    /// parsed body, without parsing or re-encoding it. `None` (nothing
    /// written) when the text is not an object that can be stored that way;
    /// `apply` it then.
    pub fn upsert_as_is(&self, tree: &str, key: &str, meta: &SyncMetadata, json: &[u8]) -> Option<Outcome> {
        let record = as_is_record(json, meta)?;
        Some(self.swap(tree, key, meta, false, |_| Ok(record.clone())))
    }

    /// The compare-and-swap loop of every write: skips a stale event, makes
    /// the next bytes from the live record (parsed only when `read_live`)
    /// and puts them, unless another write to the key came first (then it
    /// goes round again).
    fn swap(
        &self,
        tree: &str,
        key: &str,
        meta: &SyncMetadata,
        read_live: bool,
        mut next: impl FnMut(Option<Value>) -> Result<Vec<u8>, Outcome>,
    ) -> Outcome {
        let unavailable = |e: LogError| Outcome::Retry { error: format!("store: {e}"), after: None };
        loop {
            let (seen, current) = match self.log.get(tree, key) {
                Ok(Some((seen, bytes))) => (Some(seen), Some(bytes)),
                Ok(None) => (None, None),
                Err(e) => return unavailable(e),
            };
            if let Some(reason) = current.as_deref().and_then(stored_meta).and_then(|m| stale(&m, meta)) {
                return Outcome::Skipped { reason };
            }
            let live: Option<Value> = match (read_live, &current) {
                (true, Some(b)) => serde_json::from_slice(b).ok().filter(|r| !is_tombstone(r)),
                _ => None,
            };
            let bytes = match next(live) {
                Ok(bytes) => bytes,
                Err(outcome) => return outcome,
            };
            match self.log.put(tree, key, seen, &bytes) {
                Ok(true) => return Outcome::Delivered,
                Ok(false) => continue, // another delivery wrote this key meanwhile
                Err(e) => return unavailable(e),
            }
        }
    }

    pub fn get(&self, tree: &str, key: &str) -> Result<Option<Value>, LogError> {
        let record: Option<Value> = self.log.get(tree, key)?.and_then(|(_, b)| serde_json::from_slice(&b).ok());
        Ok(record.filter(|r| !is_tombstone(r)))
    }

    /// Records in key order after `after`, keeping those whose fields equal
    /// every `filter` pair (values compared as text).
    pub fn list(
        &self,
        tree: &str,
        filter: &[(String, String)],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, LogError> {
        self.log.list(tree, after, limit, |key, bytes| {
            let record = serde_json::from_slice::<Value>(&bytes).ok().filter(|r| !is_tombstone(r))?;
            let keep = filter.iter().all(|(field, want)| {
                record.get(field).and_then(crate::mapping::value_to_string).is_some_and(|have| have == *want)
            });
            keep.then(|| (key.to_string(), record))
        })
    }
}

/// The `_sync_metadata` of a stored record: who wrote it. Writes put it
/// last, so it is read from the tail: `{` plus the bytes from its last
/// `"_sync_metadata":` on is an object only when that key is a top-level one
/// (after a nested one, closing brackets would be left over). Otherwise,
/// the whole record is read (its other fields skipped, not parsed).
fn stored_meta(record: &[u8]) -> Option<Writer> {
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "_sync_metadata")]
        meta: Option<Writer>,
    }
    if let Some(at) = memchr::memmem::rfind(record, b"\"_sync_metadata\":") {
        let mut tail = Vec::with_capacity(record.len() - at + 1);
        tail.push(b'{');
        tail.extend_from_slice(&record[at..]);
        if let Ok(header) = serde_json::from_slice::<Header>(&tail) {
            return header.meta;
        }
    }
    serde_json::from_slice::<Header>(record).ok()?.meta
}

/// What `stale` reads of a stored record's `_sync_metadata` (its other
/// fields are skipped, not built: this runs on every write).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
struct Writer {
    #[serde(default)]
    log_id: Option<Value>,
    #[serde(default)]
    event_time: Option<Value>,
}

/// Why `meta`'s event must not touch the record whose `_sync_metadata` is
/// `stored`, if it must not.
fn stale(stored: &Writer, meta: &SyncMetadata) -> Option<String> {
    if stored.log_id.as_ref().and_then(Value::as_u64) == Some(meta.log_id) {
        return Some(format!("event {} already applied to this record", meta.log_id));
    }
    let ours = parse_time_text(meta.event_time.as_deref()?)?;
    let theirs_text = stored.event_time.as_ref()?;
    let theirs = parse_time(theirs_text)?;
    (ours < theirs).then(|| {
        format!(
            "out of order: event time {} is older than the record's {}",
            meta.event_time.as_deref().unwrap_or(""),
            theirs_text.as_str().unwrap_or("")
        )
    })
}

fn with_metadata(doc: Value, meta: &SyncMetadata) -> Value {
    let mut obj = match doc {
        Value::Object(o) => o,
        other => Map::from_iter([("value".to_string(), other)]),
    };
    obj.insert(SYNC_METADATA.into(), serde_json::to_value(meta).expect("metadata serialises"));
    Value::Object(obj)
}

/// `json` with `_sync_metadata` appended as its last member, the rest byte
/// for byte: what `with_metadata` makes of the parsed body (which appends
/// it last too). `None` when that would not be the same record: the body is
/// not a JSON object, or may already have a top-level `_sync_metadata` (a
/// second one would be a duplicate key, not a replaced one).
fn as_is_record(json: &[u8], meta: &SyncMetadata) -> Option<Vec<u8>> {
    let json = json.trim_ascii();
    let members = json.strip_prefix(b"{")?.strip_suffix(b"}")?.trim_ascii();
    if memchr::memmem::find(members, SYNC_METADATA.as_bytes()).is_some() {
        return None;
    }
    // A key may spell the name with `\u` escapes: ask a parser (it
    // unescapes keys) before trusting the byte search.
    if memchr::memmem::find(members, b"\\u").is_some() && !lacks_sync_metadata(json) {
        return None;
    }
    let mut out = Vec::with_capacity(json.len() + 160);
    out.push(b'{');
    out.extend_from_slice(members);
    if !members.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(b"\"_sync_metadata\":");
    serde_json::to_writer(&mut out, meta).expect("metadata serialises");
    out.push(b'}');
    Some(out)
}

/// Whether a JSON object surely has no top-level `_sync_metadata` key.
fn lacks_sync_metadata(json: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(rename = "_sync_metadata")]
        meta: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Top>(json).is_ok_and(|t| t.meta.is_none())
}

/// RFC 7386 JSON Merge Patch: objects merge recursively, `null` removes.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let obj = target.as_object_mut().expect("made an object above");
    for (k, v) in patch {
        if v.is_null() {
            obj.remove(k);
        } else {
            merge_patch(obj.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    fn meta(log_id: u64, time: Option<&str>) -> SyncMetadata {
        SyncMetadata {
            log_id,
            event_id: None,
            event_type: "t".into(),
            route: "r".into(),
            received_at: "now".into(),
            event_time: time.map(str::to_string),
        }
    }

    #[test]
    fn a_body_stored_as_is_reads_as_the_parsed_body_would() {
        let m = meta(7, Some("2025-01-01T00:00:00Z"));
        let bodies: &[&[u8]] = &[
            br#"{"id":"evt_1","data":{"object":{"id":"cus_1","n":1.50,"big":123456789012345678901234567890}}}"#,
            b"  {\n \"a\" : [1, {\"b\": null}] }\n",
            b"{}",
            b"{ }",
            br#"{"caf\u00e9":"\u00e9t\u00e9","_deleted":false}"#,
            br#"{"a":1,"a":2}"#,
        ];
        for body in bodies {
            let record = as_is_record(body, &m).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(body)));
            let parsed: Value = serde_json::from_slice(body).unwrap();
            let want = with_metadata(parsed, &m);
            assert_eq!(serde_json::from_slice::<Value>(&record).unwrap(), want, "{}", String::from_utf8_lossy(body));
            let written = Writer { log_id: Some(json!(7)), event_time: Some(json!("2025-01-01T00:00:00Z")) };
            assert_eq!(stored_meta(&record), Some(written));
        }
        // Not the same record as the parsed body's: left to `apply`.
        let refused: &[&[u8]] = &[
            b"[1,2]",
            b"\"text\"",
            br#"{"_sync_metadata":{"log_id":1}}"#,
            br#"{"x":{"_sync_metadata":1}}"#,
            br#"{"\u005fsync_metadata":{"log_id":1}}"#,
            br#"{"_sync_metad\u0061ta":1}"#,
        ];
        for body in refused {
            assert!(as_is_record(body, &m).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn the_writer_of_a_record_is_read_from_its_tail_only_when_that_is_sound() {
        let top = Writer { log_id: Some(json!(3)), event_time: None };
        // Last and top-level: read from the tail.
        assert_eq!(stored_meta(br#"{"a":1,"_sync_metadata":{"log_id":3}}"#), Some(top.clone()));
        // Top-level but not last (a script set the field): still right.
        assert_eq!(stored_meta(br#"{"_sync_metadata":{"log_id":3},"b":{"c":[1]}}"#), Some(top.clone()));
        // A nested one after it: the tail does not parse, the whole record is read.
        assert_eq!(stored_meta(br#"{"_sync_metadata":{"log_id":3},"b":{"_sync_metadata":{"log_id":9}}}"#), Some(top));
        assert_eq!(stored_meta(br#"{"b":[{"_sync_metadata":{"log_id":9}}]}"#), None);
        assert_eq!(stored_meta(b"{}"), None);
    }

    #[test]
    fn a_body_stored_as_is_is_protected_like_any_record() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(RecordLog::open(dir.path()).unwrap().0);
        let newer = meta(2, Some("2025-01-02T00:00:00Z"));
        assert_eq!(records.upsert_as_is("t", "k", &newer, br#"{"v":2}"#), Some(Outcome::Delivered));
        assert!(matches!(records.upsert_as_is("t", "k", &newer, br#"{"v":2}"#), Some(Outcome::Skipped { .. })));
        let older = meta(1, Some("2025-01-01T00:00:00Z"));
        assert!(matches!(records.upsert_as_is("t", "k", &older, br#"{"v":1}"#), Some(Outcome::Skipped { .. })));
        assert!(matches!(
            records.apply("t", "k", StoreMode::Upsert, &older, false, |_| Ok(json!({"v": 1}))),
            Outcome::Skipped { .. }
        ));
        assert_eq!(records.get("t", "k").unwrap().unwrap()["v"], json!(2));
        assert_eq!(records.upsert_as_is("t", "k", &newer, b"[2]"), None);
    }

    #[test]
    fn older_events_and_redeliveries_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(RecordLog::open(dir.path()).unwrap().0);
        let newer = meta(2, Some("2025-01-02T00:00:00Z"));
        assert_eq!(
            records.apply("t", "k", StoreMode::Upsert, &newer, true, |_| Ok(json!({"v": 2}))),
            Outcome::Delivered
        );
        let older = meta(1, Some("2025-01-01T00:00:00Z"));
        assert!(matches!(
            records.apply("t", "k", StoreMode::Upsert, &older, true, |_| Ok(json!({"v": 1}))),
            Outcome::Skipped { .. }
        ));
        assert!(matches!(
            records.apply("t", "k", StoreMode::Merge, &newer, true, |_| Ok(json!({"v": 3}))),
            Outcome::Skipped { .. }
        ));
        assert_eq!(records.get("t", "k").unwrap().unwrap()["v"], json!(2));
        let later = meta(3, Some("2025-01-03T00:00:00Z"));
        assert_eq!(
            records.apply("t", "k", StoreMode::Merge, &later, true, |_| Ok(json!({"w": 1}))),
            Outcome::Delivered
        );
        let rec = records.get("t", "k").unwrap().unwrap();
        assert_eq!((rec["v"].clone(), rec["w"].clone()), (json!(2), json!(1)));
        let deleted = meta(4, Some("2025-01-04T00:00:00Z"));
        assert_eq!(records.apply("t", "k", StoreMode::Delete, &deleted, true, |_| Ok(json!(null))), Outcome::Delivered);
        assert!(records.get("t", "k").unwrap().is_none());
        assert!(records.list("t", &[], None, 10).unwrap().is_empty());
        // An update older than the delete does not bring the record back...
        let stale = meta(5, Some("2025-01-03T12:00:00Z"));
        assert!(matches!(
            records.apply("t", "k", StoreMode::Merge, &stale, true, |_| Ok(json!({"v": 9}))),
            Outcome::Skipped { .. }
        ));
        assert!(records.get("t", "k").unwrap().is_none());
        // ...a newer one does, without the deleted fields.
        let fresh = meta(6, Some("2025-01-05T00:00:00Z"));
        assert_eq!(
            records.apply("t", "k", StoreMode::Merge, &fresh, true, |_| Ok(json!({"v": 10}))),
            Outcome::Delivered
        );
        let back = records.get("t", "k").unwrap().unwrap();
        assert_eq!(
            (back["v"].clone(), back.get("w").is_none(), back.get("_deleted").is_none()),
            (json!(10), true, true)
        );
    }
}
