//! JSON views of stored records, shared by the API and webhook events so both say the same.
//! They borrow the record and serialize straight to text: the store writer renders one for
//! every `message.status` event, and building a `serde_json::Value` tree first (a map and a
//! string per field) was most of that cost. Fields are declared in alphabetical order, the
//! order a `serde_json::Value` object prints them in.

use serde::Serialize;

use super::{MessageRecord, PartRecord};
use crate::domain::rfc3339;

/// A message as `GET /v1/messages/{id}` answers it and `message.status` events carry it.
#[derive(Serialize)]
pub struct MessageView<'a> {
    attempts: u32,
    carrier: &'a str,
    client_ref: Option<&'a str>,
    created_at: String,
    encoding: &'a str,
    error: Option<ErrorView<'a>>,
    from: &'a str,
    id: &'a str,
    parts: Vec<PartView<'a>>,
    segments: u32,
    status: &'static str,
    to: &'a str,
    updated_at: String,
}

#[derive(Serialize)]
struct ErrorView<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct PartView<'a> {
    carrier: &'a str,
    carrier_message_id: &'a str,
    done_at: Option<String>,
    receipt: Option<ReceiptView<'a>>,
    sent_at: String,
    seq: u32,
    status: &'static str,
}

#[derive(Serialize)]
struct ReceiptView<'a> {
    err: Option<&'a str>,
    stat: &'a str,
}

pub fn message_view(m: &MessageRecord) -> MessageView<'_> {
    MessageView {
        attempts: m.attempts,
        carrier: &m.carrier,
        client_ref: m.client_ref.as_deref(),
        created_at: rfc3339(m.created_at),
        encoding: &m.encoding,
        error: m.error_code.as_deref().map(|code| ErrorView {
            code,
            message: m.error_message.as_deref().unwrap_or_default(),
        }),
        from: m.line.as_str(),
        id: m.id.as_str(),
        parts: m.parts.iter().map(part_view).collect(),
        segments: m.segments,
        status: m.state.as_str(),
        to: m.to.as_str(),
        updated_at: rfc3339(m.updated_at),
    }
}

fn part_view(p: &PartRecord) -> PartView<'_> {
    PartView {
        carrier: &p.carrier,
        carrier_message_id: &p.carrier_message_id,
        done_at: p.done_at.map(rfc3339),
        receipt: p.receipt_stat.as_deref().map(|stat| ReceiptView {
            err: p.receipt_err.as_deref(),
            stat,
        }),
        sent_at: rfc3339(p.sent_at),
        seq: p.seq,
        status: p.state.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageId, MessageState, PhoneNumber};

    fn record() -> MessageRecord {
        MessageRecord {
            id: MessageId::from_store("msg_01HZY0000000000000000000AB".into()),
            app_id: "clinic".into(),
            line: PhoneNumber::from_store("+12125551000".into()),
            to: PhoneNumber::from_store("+19175550123".into()),
            client_ref: Some("appt-7".into()),
            encoding: "gsm7".into(),
            segments: 2,
            state: MessageState::Undelivered,
            error_code: Some("UNDELIV".into()),
            error_message: Some("receipt says UNDELIV, error 001".into()),
            carrier: "sim".into(),
            attempts: 1,
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_001_500,
            parts: vec![
                PartRecord {
                    seq: 1,
                    carrier: "sim".into(),
                    carrier_message_id: "A1".into(),
                    state: MessageState::Delivered,
                    receipt_stat: Some("DELIVRD".into()),
                    receipt_err: Some("000".into()),
                    sent_at: 1_700_000_000_100,
                    done_at: Some(1_700_000_001_000),
                },
                PartRecord {
                    seq: 2,
                    carrier: "sim".into(),
                    carrier_message_id: "A2".into(),
                    state: MessageState::Sent,
                    receipt_stat: None,
                    receipt_err: None,
                    sent_at: 1_700_000_000_100,
                    done_at: None,
                },
            ],
        }
    }

    #[test]
    fn message_view_should_print_every_field_in_key_order() {
        let text = serde_json::to_string(&message_view(&record())).unwrap();
        assert_eq!(
            text,
            r#"{"attempts":1,"carrier":"sim","client_ref":"appt-7","created_at":"2023-11-14T22:13:20Z","encoding":"gsm7","error":{"code":"UNDELIV","message":"receipt says UNDELIV, error 001"},"from":"+12125551000","id":"msg_01HZY0000000000000000000AB","parts":[{"carrier":"sim","carrier_message_id":"A1","done_at":"2023-11-14T22:13:21Z","receipt":{"err":"000","stat":"DELIVRD"},"sent_at":"2023-11-14T22:13:20.1Z","seq":1,"status":"delivered"},{"carrier":"sim","carrier_message_id":"A2","done_at":null,"receipt":null,"sent_at":"2023-11-14T22:13:20.1Z","seq":2,"status":"sent"}],"segments":2,"status":"undelivered","to":"+19175550123","updated_at":"2023-11-14T22:13:21.5Z"}"#
        );
        // Same text as a `serde_json::Value` of it prints (keys sorted).
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value.to_string(), text);
    }
}
