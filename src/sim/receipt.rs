//! Delivery receipts: what one says (the `deliver_sm` a receipt becomes) and the router task
//! that delivers receipts which cannot go out on the connection that took the submit
//! (transmitter binds, refused receipts, sessions that closed with receipts pending).

use std::{
    cell::Cell,
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    fmt::Write,
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;

use rusmpp::{
    pdus::DeliverSm,
    tlvs::MessageDeliveryRequestTlvValue,
    types::{COctetString, OctetString},
    values::{
        DataCoding, ErrorCodeNetworkType, EsmClass, MessageState, NetworkErrorCode, Npi,
        RegisteredDelivery, Ton,
    },
};
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;

use super::{Inner, ReceiptState, session::ToSession};

/// An address as the submit carried it.
#[derive(Debug, Clone)]
pub(crate) struct Address {
    pub ton: u8,
    pub npi: u8,
    pub addr: COctetString<1, 21>,
}

/// A receipt waiting to be sent.
#[derive(Debug, Clone)]
pub(crate) struct ReceiptJob {
    /// Receipts go to sessions bound with the system_id that submitted.
    pub system_id: Arc<str>,
    /// Already rendered in the receipt's id format.
    pub message_id: COctetString<1, 65>,
    /// The handset (the submit's destination): the receipt's source.
    pub handset: Address,
    /// The submitter (the submit's source): the receipt's destination.
    pub submitter: Address,
    pub submit_date: SystemTime,
    pub state: ReceiptState,
    pub error_code: u16,
    /// First 20 characters of the message, ASCII-safe.
    pub text: String,
}

impl ReceiptJob {
    /// The `deliver_sm` for this receipt, dated `done`.
    pub fn to_deliver_sm(&self, done: SystemTime) -> DeliverSm {
        let delivered = self.state.is_delivered();
        let err = if delivered { 0 } else { self.error_code };
        let mut body = String::with_capacity(160);
        let _ = write!(
            body,
            "id:{} sub:001 dlvrd:{} submit date:",
            self.message_id,
            if delivered { "001" } else { "000" }
        );
        push_smpp_date(&mut body, self.submit_date);
        body.push_str(" done date:");
        push_smpp_date(&mut body, done);
        let _ = write!(
            body,
            " stat:{} err:{err:03} text:{}",
            self.state.stat(),
            self.text
        );
        let mut tlvs = Vec::with_capacity(3);
        tlvs.push(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
            self.message_id.clone(),
        ));
        tlvs.push(MessageDeliveryRequestTlvValue::MessageState(
            MessageState::from(self.state.message_state()),
        ));
        if !delivered {
            tlvs.push(MessageDeliveryRequestTlvValue::NetworkErrorCode(
                NetworkErrorCode::new(ErrorCodeNetworkType::Gsm, err),
            ));
        }
        DeliverSm::builder()
            .source_addr_ton(Ton::from(self.handset.ton))
            .source_addr_npi(Npi::from(self.handset.npi))
            .source_addr(self.handset.addr.clone())
            .dest_addr_ton(Ton::from(self.submitter.ton))
            .dest_addr_npi(Npi::from(self.submitter.npi))
            .destination_addr(self.submitter.addr.clone())
            .esm_class(EsmClass::from(0x04))
            .registered_delivery(RegisteredDelivery::from(0))
            .data_coding(DataCoding::McSpecific)
            // The body is ASCII and under 255 bytes (the id is at most 64, the text 20).
            .short_message(
                OctetString::from_bytes(Bytes::from(body.into_bytes())).unwrap_or_default(),
            )
            .tlvs(tlvs)
            .build()
    }
}

/// `YYMMDDhhmm` in UTC, the receipt date format.
#[cfg(test)]
fn smpp_date(t: SystemTime) -> String {
    let mut out = String::with_capacity(10);
    push_smpp_date(&mut out, t);
    out
}

thread_local! {
    /// The last minute rendered: receipts come in bursts within the same minute.
    static LAST_DATE: Cell<(u64, [u8; 10])> = const { Cell::new((u64::MAX, [0; 10])) };
}

fn push_smpp_date(out: &mut String, t: SystemTime) {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let minute = secs / 60;
    let (cached, mut text) = LAST_DATE.get();
    if cached != minute {
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        let fields = [
            y.rem_euclid(100) as u64,
            u64::from(m),
            u64::from(d),
            rem / 3600,
            (rem % 3600) / 60,
        ];
        for (i, field) in fields.into_iter().enumerate() {
            text[2 * i] = b'0' + (field / 10) as u8;
            text[2 * i + 1] = b'0' + (field % 10) as u8;
        }
        LAST_DATE.set((minute, text));
    }
    out.extend(text.iter().map(|&b| char::from(b)));
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(crate) enum RouterMsg {
    /// Deliver this receipt at `due` to any receiver of its system_id.
    Schedule { job: ReceiptJob, due: Instant },
    /// A receiver bound: try the receipts that had nowhere to go.
    ReceiverBound,
}

struct Timed {
    due: Instant,
    order: u64,
    job: ReceiptJob,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// Owns the receipts that are not tied to a connection. Runs until `cancel`.
pub(crate) async fn run_router(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<RouterMsg>,
    cancel: CancellationToken,
) {
    let mut timed: BinaryHeap<Reverse<Timed>> = BinaryHeap::new();
    let mut waiting: VecDeque<ReceiptJob> = VecDeque::new();
    let mut order = 0u64;
    loop {
        let next_due = timed.peek().map(|Reverse(t)| t.due);
        tokio::select! {
            _ = cancel.cancelled() => break,
            msg = rx.recv() => match msg {
                Some(RouterMsg::Schedule { job, due }) => {
                    order += 1;
                    timed.push(Reverse(Timed { due, order, job }));
                }
                Some(RouterMsg::ReceiverBound) => {
                    for job in std::mem::take(&mut waiting) {
                        deliver(&inner, job, &mut waiting);
                    }
                }
                None => break,
            },
            _ = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let now = Instant::now();
                while timed.peek().is_some_and(|Reverse(t)| t.due <= now) {
                    if let Some(Reverse(t)) = timed.pop() {
                        deliver(&inner, t.job, &mut waiting);
                    }
                }
            }
        }
        inner
            .counters
            .receipts_waiting
            .store((waiting.len() + timed.len()) as u64, Ordering::Relaxed);
    }
}

/// Hands the receipt to a receiver session, or parks it until one binds.
fn deliver(inner: &Inner, job: ReceiptJob, waiting: &mut VecDeque<ReceiptJob>) {
    let mut job = job;
    // A session can close between lookup and send; its channel then hands the job back.
    for _ in 0..4 {
        let Some(tx) = inner.pick_receiver(Some(&job.system_id)) else {
            break;
        };
        match tx.send(ToSession::Receipt(job)) {
            Ok(()) => return,
            Err(mpsc::error::SendError(ToSession::Receipt(back))) => job = back,
            Err(_) => return,
        }
    }
    waiting.push_back(job);
}

/// Random extra delay for a jittered response: uniform in `0..=spread`.
pub(crate) fn jitter(spread: Duration) -> Duration {
    use rand::Rng;
    if spread.is_zero() {
        return Duration::ZERO;
    }
    let nanos = rand::rng().random_range(0..=spread.as_nanos().min(u128::from(u64::MAX)) as u64);
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_render_as_yymmddhhmm_in_utc() {
        // 2024-02-29 13:45:10 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_709_214_310);
        assert_eq!(smpp_date(t), "2402291345");
        // The same minute again (from the cache), then the next one.
        assert_eq!(smpp_date(t + Duration::from_secs(40)), "2402291345");
        assert_eq!(smpp_date(t + Duration::from_secs(60)), "2402291346");
        assert_eq!(smpp_date(UNIX_EPOCH), "7001010000");
    }

    #[test]
    fn undelivered_receipt_carries_error_and_network_error_code() {
        let job = ReceiptJob {
            system_id: "smsgate".into(),
            message_id: COctetString::from_str_checked("1a2b"),
            handset: Address {
                ton: 1,
                npi: 1,
                addr: COctetString::from_str_checked("15550001234"),
            },
            submitter: Address {
                ton: 1,
                npi: 1,
                addr: COctetString::from_str_checked("12125550123"),
            },
            submit_date: UNIX_EPOCH,
            state: ReceiptState::Undeliverable,
            error_code: 11,
            text: "hi".into(),
        };
        let deliver = job.to_deliver_sm(UNIX_EPOCH);
        let body = String::from_utf8(deliver.short_message().as_ref().to_vec()).unwrap();
        assert_eq!(
            body,
            "id:1a2b sub:001 dlvrd:000 submit date:7001010000 done date:7001010000 \
             stat:UNDELIV err:011 text:hi"
        );
        assert_eq!(u8::from(deliver.esm_class), 0x04);
        assert_eq!(deliver.source_addr.as_str(), "15550001234");
        assert_eq!(deliver.tlvs().len(), 3);
    }

    trait FromStrChecked {
        fn from_str_checked(s: &str) -> Self;
    }
    impl<const MAX: usize> FromStrChecked for COctetString<1, MAX> {
        fn from_str_checked(s: &str) -> Self {
            COctetString::from_string(s.to_string()).unwrap()
        }
    }
}
