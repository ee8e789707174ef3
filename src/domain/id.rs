//! Time-sortable identifiers (48-bit millisecond time + 80 random bits, Crockford base32),
//! so ids sort by creation time in the store and in logs.

use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new 26-character time-sortable id body (no prefix).
pub fn new_id() -> String {
    let ms = super::now_millis() as u128 & ((1u128 << 48) - 1);
    let rnd: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let mut v = (ms << 80) | rnd;
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    // The alphabet is ASCII, so this cannot fail.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, new_id()))
            }

            /// Accepts an id from the outside (URL path); `None` unless it has our shape.
            pub fn parse(s: &str) -> Option<Self> {
                let body = s.strip_prefix($prefix)?;
                (body.len() == 26 && body.bytes().all(|b| ALPHABET.contains(&b)))
                    .then(|| Self(s.to_owned()))
            }

            /// Wraps an id read back from the store.
            pub fn from_store(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(MessageId, "msg_", "A message id, `msg_` + 26 characters.");
prefixed_id!(
    EventId,
    "evt_",
    "A webhook event id, `evt_` + 26 characters."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_sort_by_time() {
        let a = MessageId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MessageId::generate();
        assert_eq!(MessageId::parse(a.as_str()), Some(a.clone()));
        assert!(a < b);
        assert_eq!(a.as_str().len(), 30);
    }

    #[test]
    fn foreign_strings_are_not_message_ids() {
        assert!(MessageId::parse("msg_123").is_none());
        assert!(MessageId::parse("evt_01ARZ3NDEKTSV4RRFFQ69G5FAV").is_none());
        assert!(MessageId::parse("msg_01ARZ3NDEKTSV4RRFFQ69G5FAU").is_none());
    }
}
