//! Core types shared by every stage: ids, phone numbers, message states. No I/O here.

mod id;
mod phone;
mod state;

pub use id::{EventId, MessageId, new_id};
pub use phone::{NumberError, PhoneNumber, redact};
pub use state::{MessageState, StateSet};

/// Milliseconds since the Unix epoch; the store's clock unit.
pub type Millis = i64;

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of a store timestamp, for API responses and webhooks.
pub fn rfc3339(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
