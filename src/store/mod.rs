//! Durable state. [`Store`] is the seam the pipeline talks to; [`sqlite`] is the embedded
//! default (WAL, `synchronous=FULL`, one writer thread doing group commit). The trait speaks in
//! ids, millisecond timestamps and claims of queued work so a PostgreSQL implementation
//! (`SELECT ... FOR UPDATE SKIP LOCKED`) fits the same shape.

pub mod sqlite;
pub mod view;

use std::time::Duration;

use futures::future::BoxFuture;

use crate::domain::{EventId, MessageId, MessageState, Millis, PhoneNumber};

pub type StoreResult<T> = Result<T, StoreError>;

/// Store failures, classified for the API: `Unavailable` becomes 503 so nothing is accepted
/// that cannot be kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused a write (disk full, read-only, I/O error) or is shutting down.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or a corrupt row; details are logged, never sent to clients.
    #[error("store error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(
                DiskFull | ReadOnly | CannotOpen | SystemIoFailure | DatabaseBusy | DatabaseLocked,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// A message accepted at the API, ready to be made durable.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub app_id: String,
    pub line: PhoneNumber,
    pub to: PhoneNumber,
    pub body: String,
    pub client_ref: Option<String>,
    pub encoding: &'static str,
    pub segments: u32,
    pub carrier: String,
    pub created_at: Millis,
    pub kind: MessageKind,
    /// The one message an opted-out number may still get: the confirmation of its opt-out.
    pub exempt_opt_out: bool,
    /// Goes ahead of bulk traffic on the same line (auto-replies, triggers).
    pub high_priority: bool,
    /// Not sent before this time (scheduled send).
    pub send_at: Option<Millis>,
    /// Not sent after this time: the message becomes `expired` instead of arriving late.
    pub expires_at: Option<Millis>,
    /// Where this message's `message.status` events go instead of the app's endpoint.
    pub status_url: Option<String>,
}

/// Where an outbound message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Api,
    /// A keyword or after-hours auto-reply.
    AutoReply,
    /// A staff notification about an inbound text.
    Notify,
    /// A call-center trigger (Call-to-Text, Abandoned Call).
    Trigger,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::AutoReply => "auto_reply",
            Self::Notify => "notify",
            Self::Trigger => "trigger",
        }
    }
}

/// An `Idempotency-Key` and a fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The key was used within 24 h; the first message stands.
    Replayed {
        id: MessageId,
        same_request: bool,
    },
    /// Not stored: the recipient opted out of this line (checked in the insert's transaction,
    /// so a STOP committed before it always wins).
    OptedOut,
    /// Not stored: the number is known not to take texts.
    NotTextable {
        reason: String,
        source: String,
    },
}

/// A message as the API shows it.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub id: MessageId,
    pub app_id: String,
    pub line: PhoneNumber,
    pub to: PhoneNumber,
    pub client_ref: Option<String>,
    pub encoding: String,
    pub segments: u32,
    pub state: MessageState,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub carrier: String,
    pub attempts: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub parts: Vec<PartRecord>,
}

#[derive(Debug, Clone)]
pub struct PartRecord {
    pub seq: u32,
    pub carrier: String,
    pub carrier_message_id: String,
    pub state: MessageState,
    pub receipt_stat: Option<String>,
    pub receipt_err: Option<String>,
    pub sent_at: Millis,
    pub done_at: Option<Millis>,
}

/// Queued work handed to a dispatcher; the message is `sending` until its attempt is recorded.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: MessageId,
    pub line: PhoneNumber,
    pub to: PhoneNumber,
    pub body: String,
    pub segments: u32,
    pub attempts: u32,
    /// Parts that already have a carrier id from an earlier attempt (never sent twice).
    pub sent_parts: Vec<u32>,
    pub high_priority: bool,
}

/// What the carrier said about one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    Accepted {
        carrier_message_id: String,
    },
    /// Back-pressure or a temporary error: try again after `delay`.
    Retry {
        status: u32,
        delay: Duration,
    },
    /// The carrier will never take it.
    /// `not_textable` marks the number (landline, not a mobile...) when the carrier's config
    /// says this status means so.
    Permanent {
        /// The carrier's command_status; `None` when nothing was submitted because the text
        /// does not fit the carrier (encodings, part limit).
        status: Option<u32>,
        reason: String,
        not_textable: Option<NotTextable>,
    },
    /// No answer (timeout, connection lost, never written): resubmit.
    Lost,
}

/// The outcome of one attempt at sending a message (all its outstanding parts).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: MessageId,
    pub carrier: String,
    /// How many submit_sm the whole message takes on this carrier, when the dispatcher built
    /// them (one for `concat = "payload"` however many segments the text has).
    pub pdus: Option<u32>,
    pub parts: Vec<(u32, PartOutcome)>,
}

/// A delivery receipt's verdict on one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptState {
    Delivered,
    Undelivered,
    Expired,
    Rejected,
    Deleted,
    Unknown,
    /// Intermediate (`ENROUTE`, `ACCEPTD`): recorded, not final.
    Enroute,
}

impl ReceiptState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Deleted => "deleted",
            Self::Unknown => "unknown",
            Self::Enroute => "enroute",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Delivered,
            Self::Undelivered,
            Self::Expired,
            Self::Rejected,
            Self::Deleted,
            Self::Unknown,
            Self::Enroute,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A carrier told us a number cannot take texts; remembered until `until` (numbers get ported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotTextable {
    pub reason: String,
    pub until: Millis,
}

/// What smsgate knows about a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberInfo {
    pub number: PhoneNumber,
    pub textable: bool,
    pub line_type: Option<String>,
    pub reason: Option<String>,
    /// `carrier`, `lookup` or `operator`.
    pub source: String,
    pub carrier: Option<String>,
    pub updated_at: Millis,
    /// `None`: does not expire (operator overrides).
    pub expires_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct Receipt {
    pub carrier: String,
    /// Normalised by [`crate::dlr::normalise_id`] so it compares with the stored part id.
    pub carrier_message_id: String,
    pub state: ReceiptState,
    /// The raw `stat:` word (e.g. `UNDELIV`).
    pub stat: String,
    pub err: Option<String>,
    pub received_at: Millis,
    /// Set when the carrier's config says this receipt error means "cannot take texts".
    pub not_textable: Option<NotTextable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptMatch {
    /// Applied to a part; `state` is the message's state afterwards.
    Matched { id: MessageId, state: MessageState },
    /// No part has that id yet: kept, and applied if the part appears (receipt before
    /// `submit_sm_resp`), otherwise listed as unmatched.
    Held,
}

/// A webhook event waiting in the outbox (its JSON body is complete and signed as is).
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// Outbox order; events of one conversation are delivered in this order.
    pub seq: i64,
    pub id: EventId,
    pub app_id: String,
    pub kind: String,
    /// Ordering key: `line:number` for message and opt-out events.
    pub conversation: String,
    /// The exact request body to send.
    pub payload: String,
    /// Per-message `status_url` override; `None` means the app's webhook_url.
    pub url: Option<String>,
    pub attempts: u32,
    pub created_at: Millis,
    pub last_error: Option<String>,
}

/// An event to put in the outbox (producers other than the store's own state changes).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub app_id: String,
    pub kind: String,
    pub conversation: String,
    pub payload: String,
    pub url: Option<String>,
    pub created_at: Millis,
}

/// An app whose messages and texts produce webhook events (it has signing keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookApp {
    /// It has a `webhook_url`; without one only messages with their own `status_url` produce
    /// (status) events.
    pub has_url: bool,
    /// The states whose `message.status` events it gets.
    pub status_events: crate::domain::StateSet,
}

/// What happened to one delivery attempt of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    Delivered,
    /// Try again at `next_attempt_at`.
    Retry {
        next_attempt_at: Millis,
        error: String,
    },
    /// Give up: kept as a dead letter, listed and replayable.
    Dead {
        error: String,
    },
}

/// One deliver_sm carrying (part of) an inbound text, decoded.
#[derive(Debug, Clone)]
pub struct InboundPart {
    pub carrier: String,
    pub line: PhoneNumber,
    pub from: PhoneNumber,
    /// Concatenation: (reference, total, seq); `None` for a single-part text.
    pub concat: Option<(u16, u8, u8)>,
    pub text: String,
    /// Identifies a redelivery of the same PDU (carrier retried because our ack was lost).
    pub dedup_key: String,
    pub received_at: Millis,
}

/// A whole inbound text, as the planner sees it.
#[derive(Debug, Clone)]
pub struct InboundText {
    pub id: MessageId,
    pub carrier: String,
    pub line: PhoneNumber,
    pub from: PhoneNumber,
    pub body: String,
    pub parts: u32,
    /// Some parts never arrived before the reassembly timeout.
    pub incomplete: bool,
    pub received_at: Millis,
}

/// A change to the opt-out list.
#[derive(Debug, Clone)]
pub struct OptOutChange {
    pub lines: Vec<PhoneNumber>,
    pub number: PhoneNumber,
    pub opted_out: bool,
    /// `keyword`, `api` or `import`.
    pub source: String,
}

/// What an inbound text causes, decided by the MO stage (pure) and applied by the store in
/// the same transaction that stores the text, so a crash never separates them.
#[derive(Debug, Clone, Default)]
pub struct InboundEffects {
    pub app_id: Option<String>,
    /// The keyword recognised (`stop`, `stop_all`, `start`, `help`), if any.
    pub keyword: Option<&'static str>,
    pub opt_out: Option<OptOutChange>,
    /// Keyword replies: sent whatever the hours.
    pub replies: Vec<NewMessage>,
    /// The after-hours reply, sent only if none went to this number within `window`.
    pub after_hours_reply: Option<(NewMessage, std::time::Duration)>,
    /// The staff notification (no body of the patient's text in it).
    pub notify: Option<NewMessage>,
    pub after_hours: bool,
    /// Put a `message.received` event in the outbox.
    pub emit: bool,
}

/// Decides an inbound text's effects; runs inside the store's write transaction, so it must be
/// quick and do no I/O.
pub type InboundPlanner = std::sync::Arc<dyn Fn(&InboundText) -> InboundEffects + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// A redelivery of something already stored: acknowledge, do nothing.
    Duplicate,
    /// A part of a longer text, kept until the rest arrives.
    Partial,
    /// The whole text is stored (with its effects).
    Stored {
        id: MessageId,
        replies: Vec<MessageId>,
    },
}

/// An opt-out list entry.
#[derive(Debug, Clone)]
pub struct OptOut {
    pub line: PhoneNumber,
    pub number: PhoneNumber,
    pub source: String,
    pub created_at: Millis,
}

/// One conversation (line + number) in a line's inbox.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub number: PhoneNumber,
    pub last_at: Millis,
    pub last_direction: Direction,
    pub last_body: String,
    pub unread: u32,
    pub opted_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// One text in a conversation, either way.
#[derive(Debug, Clone)]
pub struct ConversationMessage {
    pub id: MessageId,
    pub direction: Direction,
    pub body: String,
    /// Outbound: the message state; inbound: `read` or `unread`.
    pub status: String,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerOutcome {
    Inserted,
    /// The caller already got a text from this line within the window: that message.
    Duplicate(MessageId),
    /// Refused like an insert would be (opted out, not textable).
    Refused(InsertOutcome),
}

/// The durable store behind the pipeline.
pub trait Store: Send + Sync + 'static {
    /// Durably stores a new message (fsync'd before the future resolves).
    fn insert_message(
        &self,
        msg: NewMessage,
        idem: Option<Idempotency>,
    ) -> BoxFuture<'_, StoreResult<InsertOutcome>>;

    /// A message as its app sees it; `None` if it does not exist or belongs to another app.
    fn get_message(
        &self,
        app_id: String,
        id: MessageId,
    ) -> BoxFuture<'_, StoreResult<Option<MessageRecord>>>;

    /// Atomically moves up to `limit` due queued messages of `carrier` to `sending`, skipping
    /// the lines in `skip_lines` (their backlog is already waiting for rate-limit tokens, so
    /// claiming more of it would crowd out other lines). Expired messages become `expired`.
    /// With `only_lines`, only those lines' messages are claimed (failover: another carrier
    /// takes over the lines that name it as a fallback).
    fn claim_queued(
        &self,
        carrier: String,
        limit: usize,
        skip_lines: Vec<String>,
        only_lines: Option<Vec<String>>,
    ) -> BoxFuture<'_, StoreResult<Vec<Claimed>>>;

    /// Records what happened to one attempt and moves the message on.
    fn record_attempt(&self, attempt: Attempt) -> BoxFuture<'_, StoreResult<()>>;

    /// Applies a delivery receipt (or holds it when its part is not known yet).
    fn record_receipt(&self, receipt: Receipt) -> BoxFuture<'_, StoreResult<ReceiptMatch>>;

    /// Start-up: messages left `sending` by a crash go back to the queue. Returns how many.
    fn requeue_in_flight(&self) -> BoxFuture<'_, StoreResult<u64>>;

    /// Messages waiting to be sent (queued or sending).
    fn queue_depth(&self) -> BoxFuture<'_, StoreResult<u64>>;
    /// Messages queued or sending, per line.
    fn queue_depth_by_line(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>>;

    /// Stores an inbound part; once a text is whole, stores it and applies what `planner`
    /// decides (opt-out change, replies, events) in the same transaction.
    fn record_inbound(
        &self,
        part: InboundPart,
        planner: InboundPlanner,
    ) -> BoxFuture<'_, StoreResult<InboundOutcome>>;

    /// Delivers (flagged incomplete) every partial text older than `before`; returns how many.
    fn expire_partials(
        &self,
        before: Millis,
        planner: InboundPlanner,
    ) -> BoxFuture<'_, StoreResult<u64>>;

    /// Applies an opt-out change (API, import) and its `opt_out.changed` events.
    fn change_opt_out(
        &self,
        app_id: String,
        change: OptOutChange,
    ) -> BoxFuture<'_, StoreResult<u64>>;

    /// Whether `number` has opted out of `line`.
    fn opt_out(
        &self,
        line: PhoneNumber,
        number: PhoneNumber,
    ) -> BoxFuture<'_, StoreResult<Option<OptOut>>>;

    /// A line's opt-outs, ordered by number, after `after`.
    fn opt_outs(
        &self,
        line: PhoneNumber,
        after: String,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<OptOut>>>;

    /// A line's conversations, most recent first, older than `before` (ms; i64::MAX for the
    /// first page).
    fn conversations(
        &self,
        line: PhoneNumber,
        before: Millis,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<Conversation>>>;

    /// The texts of one conversation in time order, after `after` (ms; -1 for the start).
    fn conversation_messages(
        &self,
        line: PhoneNumber,
        number: PhoneNumber,
        after: Millis,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<ConversationMessage>>>;

    /// Marks every inbound text of a conversation read; returns how many changed.
    fn mark_read(&self, line: PhoneNumber, number: PhoneNumber) -> BoxFuture<'_, StoreResult<u64>>;

    /// Stores a triggered message unless the same number got one from the same line within
    /// `window` (phone systems retry; a Call-to-Text is often followed by an Abandoned Call).
    fn insert_triggered(
        &self,
        msg: NewMessage,
        window: std::time::Duration,
    ) -> BoxFuture<'_, StoreResult<TriggerOutcome>>;

    /// What is known about a number (expired marks are not returned).
    fn number_info(&self, number: PhoneNumber) -> BoxFuture<'_, StoreResult<Option<NumberInfo>>>;

    /// Records what a lookup or an operator says about a number.
    fn put_number_info(&self, info: NumberInfo) -> BoxFuture<'_, StoreResult<()>>;

    /// Retention: erases the bodies of texts (both directions) older than `before`, then deletes
    /// those rows, their parts and delivered webhook events, at most `batch` of each. The
    /// opt-out list is never pruned. Returns how many texts were removed.
    fn prune(&self, before: Millis, batch: usize) -> BoxFuture<'_, StoreResult<u64>>;

    /// Adds an event to the outbox (durably, like every write).
    fn enqueue_event(&self, event: NewEvent) -> BoxFuture<'_, StoreResult<()>>;

    /// Up to `limit` events that are due now and are the oldest undelivered event of their
    /// conversation, in outbox order, skipping the `seq`s in `exclude` (already in flight).
    fn due_events(
        &self,
        now: Millis,
        limit: usize,
        exclude: Vec<i64>,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxEvent>>>;

    /// Records the outcomes of delivery attempts (`seq`, outcome), all in one operation: a
    /// busy dispatcher hands them over in batches rather than one store round trip each.
    fn record_events(&self, outcomes: Vec<(i64, EventOutcome)>) -> BoxFuture<'_, StoreResult<()>>;

    /// Dead letters of an app, oldest first, after outbox position `after`.
    fn dead_events(
        &self,
        app_id: String,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxEvent>>>;

    /// Puts an app's dead letter (or all of them with `None`) back in the outbox, due now.
    /// Returns how many were requeued.
    fn replay_dead(&self, app_id: String, id: Option<EventId>) -> BoxFuture<'_, StoreResult<u64>>;

    /// Events waiting for delivery (pending, any app).
    fn outbox_depth(&self) -> BoxFuture<'_, StoreResult<u64>>;

    /// Stops the writer after it has committed everything already handed to it.
    fn close(&self) -> BoxFuture<'_, ()>;
}
