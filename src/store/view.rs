//! JSON views of stored records, shared by the API and webhook events so both say the same.

use serde_json::{Value, json};

use super::MessageRecord;
use crate::domain::rfc3339;

pub fn message_json(m: &MessageRecord) -> Value {
    let error = m.error_code.as_ref().map(
        |code| json!({ "code": code, "message": m.error_message.clone().unwrap_or_default() }),
    );
    json!({
        "id": m.id.as_str(),
        "from": m.line.as_str(),
        "to": m.to.as_str(),
        "status": m.state.as_str(),
        "segments": m.segments,
        "encoding": m.encoding,
        "client_ref": m.client_ref,
        "carrier": m.carrier,
        "attempts": m.attempts,
        "error": error,
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
        "parts": m.parts.iter().map(|p| json!({
            "seq": p.seq,
            "carrier": p.carrier,
            "carrier_message_id": p.carrier_message_id,
            "status": p.state.as_str(),
            "receipt": p.receipt_stat.as_ref().map(|s| json!({ "stat": s, "err": p.receipt_err })),
            "sent_at": rfc3339(p.sent_at),
            "done_at": p.done_at.map(rfc3339),
        })).collect::<Vec<_>>(),
    })
}
