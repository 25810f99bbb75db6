//! Tokens, as `coordinator token list` prints them: never the token, only
//! its name, role and dates.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Format;
use crate::store::TokenRow;

/// Milliseconds since the Unix epoch as an HTTP date (UTC).
fn when(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    httpdate::fmt_http_date(at)
}

/// Every token: name, role, made, revoked; or JSON.
pub fn tokens(tokens: &[TokenRow], format: Format) -> String {
    if format == Format::Json {
        let all: Vec<Value> = tokens
            .iter()
            .map(|t| {
                json!({
                    "name": t.name, "role": t.role.name(), "created_unix_ms": t.created_ms,
                    "revoked_unix_ms": t.revoked_ms,
                })
            })
            .collect();
        return Value::Array(all).to_string();
    }
    if tokens.is_empty() {
        return "no tokens yet; make one with `coordinator token create --role ROLE --name NAME`"
            .to_string();
    }
    let mut out = format!(
        "{:<24} {:<7} {:<30} {}\n",
        "name", "role", "created", "revoked"
    );
    for t in tokens {
        let _ = writeln!(
            out,
            "{:<24} {:<7} {:<30} {}",
            t.name,
            t.role.name(),
            when(t.created_ms),
            t.revoked_ms.map_or("-".to_string(), when)
        );
    }
    out
}
