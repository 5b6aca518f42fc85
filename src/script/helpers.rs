//! The functions every script gets, beyond Rhai's standard library. Times
//! are RFC 3339 strings (as in payloads and the store) or integer
//! milliseconds since the epoch; both are accepted wherever a time is read.

use super::qr;
use hmac::{KeyInit, Mac};
use rhai::{Dynamic, Engine, EvalAltResult, Position};
use sha2::{Digest, Sha256};

type Fallible<T> = Result<T, Box<EvalAltResult>>;

/// Thrown by `drop()`: unwinds the script, then the delivery is recorded
/// as `dropped` with the reason instead of failed.
#[derive(Debug, Clone)]
pub struct DropSignal(pub String);

pub fn register(engine: &mut Engine) {
    engine.register_fn("drop", || -> Fallible<()> { Err(drop_signal("dropped by the script".into())) });
    engine.register_fn("drop", |reason: &str| -> Fallible<()> { Err(drop_signal(reason.into())) });

    engine.register_fn("now", || crate::event::format_ms(crate::event::now_ms()));
    engine.register_fn("now_ms", crate::event::now_ms);
    engine.register_fn("parse_time", |t: Dynamic| parse_ms(&t));
    engine.register_fn("format_time", |t: Dynamic| to_ms(&t).map(crate::event::format_ms));
    engine.register_fn("seconds_between", |a: Dynamic, b: Dynamic| -> Fallible<f64> {
        Ok((to_ms(&b)? - to_ms(&a)?) as f64 / 1000.0)
    });

    engine.register_fn("sha256", |text: &str| hex::encode(Sha256::digest(text.as_bytes())));
    engine.register_fn("hmac_sha256", |key: &str, text: &str| {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    });
    engine.register_fn("uuid", uuid_v4);
    engine.register_fn("qr_data_url", |text: &str| -> Fallible<String> { qr::data_url(text).map_err(Into::into) });
    engine.register_fn("to_json", |value: Dynamic| -> Fallible<String> {
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        Ok(json.to_string())
    });
}

fn drop_signal(reason: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(DropSignal(reason)), Position::NONE).into()
}

/// A time argument as milliseconds since the epoch: an integer is already
/// ms (what `now_ms` and `parse_time` return); anything else is parsed.
fn to_ms(t: &Dynamic) -> Fallible<i64> {
    match t.as_int() {
        Ok(ms) => Ok(ms),
        Err(_) => parse_ms(t),
    }
}

/// A payload's time as ms: RFC 3339 text, or Unix seconds or milliseconds
/// (number or numeric text), read exactly as `event.time` is.
fn parse_ms(t: &Dynamic) -> Fallible<i64> {
    let json: serde_json::Value = rhai::serde::from_dynamic(t)?;
    crate::event::parse_time(&json)
        .map(|nanos| (nanos / 1_000_000) as i64)
        .ok_or_else(|| format!("not a time: {json} (write RFC 3339, e.g. 2025-01-20T10:00:00Z)").into())
}

/// A random (version 4) UUID.
fn uuid_v4() -> Fallible<String> {
    let mut b: [u8; 16] = crate::random::array();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}
