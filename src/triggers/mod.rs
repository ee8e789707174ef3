//! Call-center triggers ("Call-to-Text", "Abandoned Call"): the phone system calls a secret URL
//! with the caller's number and the caller gets the trigger's text from its line, through the
//! same pipeline as any message (opt-outs, rate limits and receipts apply).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Trigger;

/// Finds a trigger by its URL token without revealing, by timing, which tokens exist.
pub struct TriggerSet {
    by_hash: Vec<([u8; 32], Arc<Trigger>)>,
}

impl TriggerSet {
    pub fn new(triggers: &[Arc<Trigger>]) -> Self {
        Self {
            by_hash: triggers
                .iter()
                .map(|t| (Sha256::digest(t.token.as_bytes()).into(), t.clone()))
                .collect(),
        }
    }

    /// Every token is compared (hashes, in constant time), whatever matches first.
    pub fn find(&self, token: &str) -> Option<Arc<Trigger>> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, t) in &self.by_hash {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(t.clone());
            }
        }
        found
    }
}

/// Reads `CALLER_ID_NUMBER` from a form or JSON body (any case of the key, string or number).
pub fn caller_from_body(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let is_json = content_type.is_some_and(|c| c.contains("json"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_json {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let obj = v.as_object()?;
        let (_, value) = obj
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("CALLER_ID_NUMBER"))?;
        return match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
    }
    let text = std::str::from_utf8(body).ok()?;
    form_value(text, "CALLER_ID_NUMBER")
}

/// A value from `a=b&c=d` (query strings and url-encoded forms), keys compared ignoring case.
pub fn form_value(text: &str, key: &str) -> Option<String> {
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case(key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_is_read_from_form_json_and_query_forms() {
        assert_eq!(
            form_value("a=1&CALLER_ID_NUMBER=2125551234", "CALLER_ID_NUMBER").as_deref(),
            Some("2125551234")
        );
        assert_eq!(
            form_value("caller_id_number=%2B12125551234", "CALLER_ID_NUMBER").as_deref(),
            Some("+12125551234")
        );
        assert_eq!(
            caller_from_body(
                Some("application/json"),
                br#"{"CALLER_ID_NUMBER": 2125551234}"#
            )
            .as_deref(),
            Some("2125551234")
        );
        assert_eq!(
            caller_from_body(None, br#" {"caller_id_number": "+12125551234"}"#).as_deref(),
            Some("+12125551234")
        );
        assert_eq!(
            caller_from_body(
                Some("application/x-www-form-urlencoded"),
                b"CALLER_ID_NUMBER=2125551234"
            )
            .as_deref(),
            Some("2125551234")
        );
        assert_eq!(caller_from_body(None, b"other=1"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%é%"), "%é%");
    }
}
