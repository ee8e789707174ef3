//! What arrives from carriers as deliver_sm. Delivery receipts go to the store; inbound texts
//! (MO) are decoded, reassembled (durably), checked for opt-out keywords and opening hours,
//! and stored together with their effects (opt-out change, auto-replies, webhook event). Either
//! way the carrier gets its `deliver_sm_resp` only after the store has committed.

mod planner;

use std::{collections::HashMap, sync::Arc};

use futures::{FutureExt, future::BoxFuture};
use rusmpp::{pdus::DeliverSm, tlvs::TlvValue};
use sha2::{Digest, Sha256};

pub use planner::Planner;

use crate::{
    config::{self, Live, MoAlphabet},
    dlr::{self, IdSource},
    domain::{PhoneNumber, now_millis},
    segment::{self, DefaultAlphabet},
    smpp::session::InboundHandler,
    store::{InboundOutcome, InboundPart, InboundPlanner, Receipt, ReceiptMatch, Store},
    telemetry::Metrics,
};

/// ESME_RINVDSTADR: the text is for a number that is not one of our lines.
const STATUS_UNKNOWN_LINE: u32 = 0x0B;
/// ESME_RINVSRCADR: a sender address we cannot read.
const STATUS_BAD_SOURCE: u32 = 0x0A;

/// ESME_RX_T_APPN: "temporary application error", the carrier keeps the PDU and retries.
const STATUS_RETRY_LATER: u32 = 0x64;

pub struct Inbound {
    store: Arc<dyn Store>,
    config: Live,
    carriers: HashMap<String, Arc<config::Carrier>>,
    planner: InboundPlanner,
    metrics: Arc<Metrics>,
}

impl Inbound {
    pub fn new(store: Arc<dyn Store>, config: Live, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            // Carriers are not reloadable: their connections are fixed at start.
            carriers: config
                .get()
                .carriers
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect(),
            planner: Planner::new(config.clone()).into_planner(),
            config,
            metrics,
        }
    }

    /// The planner, for the reassembly sweeper.
    pub fn planner(&self) -> InboundPlanner {
        self.planner.clone()
    }
}

/// An SMPP address as E.164: international digits get a `+`; NANP forms are normalised.
fn address(raw: &str) -> Option<PhoneNumber> {
    let digits = raw.trim().trim_start_matches('+');
    PhoneNumber::parse(&format!("+{digits}"))
        .or_else(|_| PhoneNumber::parse(raw))
        .ok()
        .or_else(|| {
            // Short codes and numbers outside NANP rules still identify a sender.
            (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| PhoneNumber::from_store(format!("+{digits}")))
        })
}

/// Decodes a deliver_sm carrying (part of) an inbound text.
fn decode_part(carrier: &str, pdu: &DeliverSm, alphabet: MoAlphabet) -> Result<InboundPart, u32> {
    let from = address(pdu.source_addr.as_str()).ok_or(STATUS_BAD_SOURCE)?;
    let line = address(pdu.destination_addr.as_str()).ok_or(STATUS_UNKNOWN_LINE)?;
    let mut payload = None;
    let mut sar = (None, None, None);
    for tlv in pdu.tlvs() {
        match tlv.value() {
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.as_ref().to_vec()),
            Some(TlvValue::SarMsgRefNum(v)) => sar.0 = Some(*v),
            Some(TlvValue::SarTotalSegments(v)) => sar.1 = Some(*v),
            Some(TlvValue::SarSegmentSeqnum(v)) => sar.2 = Some(*v),
            _ => {}
        }
    }
    let bytes = payload.unwrap_or_else(|| pdu.short_message().as_ref().to_vec());
    let esm = u8::from(pdu.esm_class);
    let dc = u8::from(pdu.data_coding);
    let alphabet = match alphabet {
        MoAlphabet::Gsm7 => DefaultAlphabet::Gsm7Unpacked,
        MoAlphabet::Gsm7Packed => DefaultAlphabet::Gsm7Packed,
        MoAlphabet::Latin1 => DefaultAlphabet::Latin1,
        MoAlphabet::Ascii => DefaultAlphabet::Ascii,
    };
    let decoded = segment::decode_mo(dc, esm & 0x40 != 0, &bytes, alphabet).map_err(|e| {
        tracing::warn!(carrier, error = %e, "undecodable inbound text");
        // ESME_RX_P_APPN: permanent, redelivering the same bytes will not help.
        0x65u32
    })?;
    let concat = match (decoded.udh.as_ref().and_then(|u| u.concat), sar) {
        (Some(c), _) => Some((c.reference, c.total, c.seq)),
        (None, (Some(r), Some(t), Some(s))) => Some((r, t, s)),
        _ => None,
    };
    let mut h = Sha256::new();
    h.update(pdu.source_addr.as_str().as_bytes());
    h.update([0]);
    h.update(pdu.destination_addr.as_str().as_bytes());
    h.update([0, dc, esm]);
    h.update(&bytes);
    if let Some((r, t, s)) = concat {
        h.update(r.to_be_bytes());
        h.update([t, s]);
    }
    let key = format!("{:x}", h.finalize());
    let text = if decoded.binary.is_some() && decoded.text.is_empty() {
        "[binary message]".to_owned()
    } else {
        decoded.text
    };
    Ok(InboundPart {
        carrier: carrier.to_owned(),
        line,
        from,
        concat,
        text,
        dedup_key: key,
        received_at: now_millis(),
    })
}

impl InboundHandler for Inbound {
    fn deliver_sm(&self, carrier: Arc<str>, pdu: DeliverSm) -> BoxFuture<'static, u32> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let carrier_cfg = self.carriers.get(&*carrier);
        let format = carrier_cfg.map(|c| c.dlr_id_format).unwrap_or_default();
        let alphabet = carrier_cfg
            .map(|c| c.mo_default_alphabet)
            .unwrap_or_default();
        let config = self.config.clone();
        let planner = self.planner.clone();
        let carrier_nt = carrier_cfg
            .filter(|c| !c.not_textable_receipt_errors.is_empty())
            .map(|c| (c.not_textable_receipt_errors.clone(), c.not_textable_ttl));
        async move {
            if !dlr::is_receipt(&pdu) {
                return inbound_text(store, config, carrier, pdu, alphabet, planner, metrics).await;
            }
            let Some(parsed) = dlr::parse_receipt(&pdu) else {
                tracing::warn!(carrier = %carrier, "receipt without a message id; acknowledged and dropped");
                metrics.receipts_unmatched.with_label_values(&[&carrier]).inc();
                return 0;
            };
            let not_textable = carrier_nt.as_ref().and_then(|(errors, ttl)| {
                let err = parsed.err.as_deref()?.trim_start_matches('0');
                errors.iter().any(|e| e == err).then(|| crate::store::NotTextable {
                    reason: format!("carrier {carrier} receipt {} err {err}", parsed.stat),
                    until: now_millis() + ttl.as_millis() as i64,
                })
            });
            let receipt = Receipt {
                not_textable,
                carrier: carrier.to_string(),
                carrier_message_id: dlr::normalise_id(&parsed.id, format, IdSource::Receipt),
                state: parsed.state,
                stat: parsed.stat,
                err: parsed.err,
                received_at: now_millis(),
            };
            let state = receipt.state;
            match store.record_receipt(receipt).await {
                Ok(m) => {
                    metrics
                        .receipts
                        .with_label_values(&[&carrier, state.as_str()])
                        .inc();
                    if m == ReceiptMatch::Held {
                        metrics.receipts_unmatched.with_label_values(&[&carrier]).inc();
                    }
                    0
                }
                Err(e) => {
                    tracing::error!(carrier = %carrier, error = %e, "cannot store a receipt; asking the carrier to retry");
                    STATUS_RETRY_LATER
                }
            }
        }
        .boxed()
    }
}

async fn inbound_text(
    store: Arc<dyn Store>,
    config: Live,
    carrier: Arc<str>,
    pdu: DeliverSm,
    alphabet: MoAlphabet,
    planner: InboundPlanner,
    metrics: Arc<Metrics>,
) -> u32 {
    let part = match decode_part(&carrier, &pdu, alphabet) {
        Ok(p) => p,
        Err(status) => {
            metrics
                .mo
                .with_label_values(&[&carrier, "undecodable"])
                .inc();
            return status;
        }
    };
    if !config.get().lines.contains_key(&part.line) {
        tracing::warn!(carrier = %carrier, line = %part.line, "inbound text for a number that is not a line; refused");
        metrics
            .mo
            .with_label_values(&[&carrier, "unknown_line"])
            .inc();
        return STATUS_UNKNOWN_LINE;
    }
    tracing::debug!(carrier = %carrier, line = %part.line, from = %part.from, body = %part.text, "inbound part");
    match store.record_inbound(part, planner).await {
        Ok(outcome) => {
            let result = match outcome {
                InboundOutcome::Duplicate => "duplicate",
                InboundOutcome::Partial => "partial",
                InboundOutcome::Stored { .. } => "stored",
            };
            metrics.mo.with_label_values(&[&carrier, result]).inc();
            0
        }
        Err(e) => {
            tracing::error!(carrier = %carrier, error = %e, "cannot store an inbound text; asking the carrier to retry");
            metrics
                .mo
                .with_label_values(&[&carrier, "store_error"])
                .inc();
            STATUS_RETRY_LATER
        }
    }
}

/// Delivers, flagged incomplete, long texts whose missing parts never came.
pub async fn run_reassembly_sweeper(
    store: Arc<dyn Store>,
    planner: InboundPlanner,
    timeout: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let every = (timeout / 4).clamp(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(10),
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let before = now_millis() - timeout.as_millis() as i64;
        match store.expire_partials(before, planner.clone()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                texts = n,
                "delivered incomplete inbound texts after the reassembly timeout"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot sweep partial inbound texts"),
        }
    }
}
