//! One task per TCP connection. It owns the socket: it frames and answers PDUs, sends the
//! receipts and MO messages routed to it, and writes everything queued for the peer with one
//! write per wake-up (responses to a whole read are encoded into one buffer first).

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::{Buf, Bytes, BytesMut};
use rusmpp::{
    Command, CommandStatus, Pdu,
    pdus::{
        BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DataSmResp, DeliverSm,
        SubmitSmResp,
    },
    tlvs::{Tlv, TlvValue},
    tokio_codec::CommandCodec,
    types::COctetString,
    values::InterfaceVersion,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{mpsc, oneshot},
    time::{Instant, sleep_until},
};
use tokio_util::{codec::Encoder, sync::CancellationToken};
use tracing::{debug, info};

use super::{
    IdFormat, Inner, ReceivedSubmit, SimConfig,
    frame::{self, Frame, Header},
    receipt::{self, Address, ReceiptJob, RouterMsg},
    stats::bump,
    text,
};

/// Read in chunks this big; a pipelined client fills them.
const READ_CHUNK: usize = 64 * 1024;
/// Stop reading (and taking routed work) while this much is queued for a slow peer.
const WRITE_HIGH_WATER: usize = 1024 * 1024;
/// How long a closing session may take to flush, or to get its unbind_resp.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
const UNBIND_RESP: u32 = 0x8000_0006;

/// What the router and [`Simulator`](super::Simulator) send a session.
#[derive(Debug)]
pub(crate) enum ToSession {
    Receipt(ReceiptJob),
    Mo {
        deliver: DeliverSm,
        reply: oneshot::Sender<u32>,
    },
}

/// The kind of bind a session holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    pub fn can_submit(self) -> bool {
        matches!(self, BindKind::Transmitter | BindKind::Transceiver)
    }

    pub fn can_receive(self) -> bool {
        matches!(self, BindKind::Receiver | BindKind::Transceiver)
    }
}

/// A session as the rest of the simulator sees it.
#[derive(Debug)]
pub(crate) struct SessionEntry {
    pub system_id: Option<Arc<str>>,
    /// Bound as receiver or transceiver and not closing.
    pub can_receive: bool,
    pub tx: mpsc::UnboundedSender<ToSession>,
    pub kill: CancellationToken,
}

/// Runs one connection until it closes; then hands any receipts it still held back to the
/// router so that they are delivered on another session (a real SMSC retries).
pub(crate) async fn run(
    inner: Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let kill = CancellationToken::new();
    inner.sessions.insert(
        id,
        SessionEntry {
            system_id: None,
            can_receive: false,
            tx,
            kill: kill.clone(),
        },
    );
    bump(&inner.counters.sessions_open, 1);
    let _open = OpenGuard {
        inner: inner.clone(),
        id,
    };
    debug!(session = id, %peer, "connection accepted");

    let mut session = Session {
        inner: inner.clone(),
        id,
        bind: None,
        system_id: None,
        codec: CommandCodec::new(),
        wbuf: BytesMut::with_capacity(READ_CHUNK),
        next_seq: 0,
        awaiting: HashMap::new(),
        delayed: BinaryHeap::new(),
        delayed_order: 0,
        closing: None,
    };
    session.serve(stream, &mut rx, &shutdown, &kill).await;

    // Nothing may be routed here any more; whatever was, goes back to the router.
    inner.sessions.remove(&id);
    rx.close();
    let mut orphans = Vec::new();
    while let Ok(msg) = rx.try_recv() {
        if let ToSession::Receipt(job) = msg {
            orphans.push(job);
        }
    }
    orphans.extend(session.awaiting.drain().filter_map(|(_, a)| match a {
        Awaiting::Receipt(job) => Some(job),
        Awaiting::Mo(_) => None,
    }));
    for Reverse(delayed) in session.delayed.drain() {
        match delayed.item {
            DelayedItem::Receipt(job) => orphans.push(job),
            DelayedItem::Response { receipts_first, .. } => orphans.extend(receipts_first),
        }
    }
    let now = Instant::now();
    for job in orphans {
        let _ = inner.router_tx.send(RouterMsg::Schedule { job, due: now });
    }
    debug!(session = id, "connection closed");
}

/// Keeps `sessions_open` and the registry right even if the session task panics.
struct OpenGuard {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.inner.sessions.remove(&self.id);
        self.inner
            .counters
            .sessions_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A `deliver_sm` this session sent and whose response it waits for.
enum Awaiting {
    Receipt(ReceiptJob),
    Mo(oneshot::Sender<u32>),
}

enum DelayedItem {
    /// A held-back response, and the receipts that must precede it.
    Response {
        command: Command,
        receipts_first: Vec<ReceiptJob>,
    },
    Receipt(ReceiptJob),
}

struct Delayed {
    due: Instant,
    order: u64,
    item: DelayedItem,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

struct Closing {
    deadline: Instant,
    /// We sent unbind (simulator shutdown) and wait for the peer's unbind_resp.
    wait_unbind_resp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// What a read produced for the shared submit log, recorded once per read.
#[derive(Default)]
pub(crate) struct Batch {
    pub received: u64,
    pub entries: Vec<ReceivedSubmit>,
    /// Hashes of accepted submits, for duplicate detection.
    pub accepted: Vec<u64>,
}

struct Session {
    inner: Arc<Inner>,
    id: u64,
    bind: Option<BindKind>,
    system_id: Option<Arc<str>>,
    codec: CommandCodec,
    wbuf: BytesMut,
    next_seq: u32,
    awaiting: HashMap<u32, Awaiting>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    delayed_order: u64,
    closing: Option<Closing>,
}

impl Session {
    async fn serve(
        &mut self,
        mut stream: TcpStream,
        rx: &mut mpsc::UnboundedReceiver<ToSession>,
        shutdown: &CancellationToken,
        kill: &CancellationToken,
    ) {
        let (mut rd, mut wr) = stream.split();
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            if let Some(closing) = &self.closing
                && !closing.wait_unbind_resp
                && self.wbuf.is_empty()
            {
                return;
            }
            let backlogged = self.wbuf.len() >= WRITE_HIGH_WATER;
            let reading = !backlogged
                && self
                    .closing
                    .as_ref()
                    .is_none_or(|closing| closing.wait_unbind_resp);
            let next_due = self.delayed.peek().map(|Reverse(d)| d.due);
            let deadline = self.closing.as_ref().map(|c| c.deadline);
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                _ = kill.cancelled() => {
                    bump(&self.inner.counters.connections_dropped, 1);
                    return;
                }
                _ = shutdown.cancelled(), if self.closing.is_none() => self.start_unbind(),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => return,
                written = wr.write(&self.wbuf), if !self.wbuf.is_empty() => match written {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.wbuf.advance(n),
                },
                _ = sleep_until(next_due.unwrap_or_else(Instant::now)),
                    if next_due.is_some() && !backlogged => self.fire_due(),
                msg = rx.recv(), if !backlogged && self.closing.is_none() => match msg {
                    Some(msg) => self.on_routed(msg),
                    None => return,
                },
                read = rd.read_buf(&mut rbuf), if reading => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if self.on_input(&mut rbuf) == Flow::Close {
                            return;
                        }
                    }
                },
            }
        }
    }

    /// Answers every complete PDU in `rbuf`.
    fn on_input(&mut self, rbuf: &mut BytesMut) -> Flow {
        let cfg = self.inner.config();
        let mut batch = Batch::default();
        let mut flow = Flow::Continue;
        // Once closing, only an awaited unbind_resp is still worth reading.
        while self.closing.as_ref().is_none_or(|c| c.wait_unbind_resp) {
            match frame::next_frame(rbuf, cfg.max_command_length) {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    if self.on_frame(frame, &cfg, &mut batch) == Flow::Close {
                        flow = Flow::Close;
                        break;
                    }
                }
                Err(error) => {
                    // The stream cannot be framed any more: say why, then close.
                    info!(session = self.id, %error, "closing connection: unframeable input");
                    bump(&self.inner.counters.malformed_pdus, 1);
                    let seq = error.sequence_number().unwrap_or(0);
                    self.emit(&Command::new(
                        CommandStatus::EsmeRinvcmdlen,
                        seq,
                        Pdu::GenericNack,
                    ));
                    self.begin_close(false);
                    rbuf.clear();
                    break;
                }
            }
        }
        self.inner.record(batch);
        flow
    }

    fn on_frame(&mut self, frame: Frame, cfg: &SimConfig, batch: &mut Batch) -> Flow {
        match frame {
            Frame::Response(header) => return self.on_response(header, cfg),
            // While waiting for unbind_resp, requests are no longer answered.
            _ if self.closing.is_some() => {}
            Frame::Malformed { header, status } => {
                debug!(
                    session = self.id,
                    command_id = header.command_id,
                    "malformed PDU"
                );
                bump(&self.inner.counters.malformed_pdus, 1);
                self.emit(&Command::new(
                    status,
                    header.sequence_number,
                    Pdu::GenericNack,
                ));
            }
            Frame::Request(command) => self.on_request(command, cfg, batch),
        }
        Flow::Continue
    }

    fn on_request(&mut self, command: Command, cfg: &SimConfig, batch: &mut Batch) {
        let seq = command.sequence_number();
        let Some(pdu) = command.pdu() else { return };
        match pdu {
            Pdu::BindTransmitter(b) => {
                self.on_bind(BindKind::Transmitter, seq, BindFields::of(b), cfg)
            }
            Pdu::BindReceiver(b) => self.on_bind(BindKind::Receiver, seq, BindFields::of(b), cfg),
            Pdu::BindTransceiver(b) => {
                self.on_bind(BindKind::Transceiver, seq, BindFields::of(b), cfg)
            }
            Pdu::EnquireLink => self.emit(&Command::new(
                CommandStatus::EsmeRok,
                seq,
                Pdu::EnquireLinkResp,
            )),
            Pdu::Unbind => {
                self.emit(&Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp));
                self.begin_close(false);
            }
            Pdu::SubmitSm(s) => {
                let submission = Submission {
                    source: Address {
                        ton: s.source_addr_ton.into(),
                        npi: s.source_addr_npi.into(),
                        addr: s.source_addr.clone(),
                    },
                    destination: Address {
                        ton: s.dest_addr_ton.into(),
                        npi: s.dest_addr_npi.into(),
                        addr: s.destination_addr.clone(),
                    },
                    esm_class: s.esm_class.into(),
                    data_coding: s.data_coding.into(),
                    registered_delivery: s.registered_delivery.into(),
                    short_message: s.short_message().as_ref(),
                    tlvs: s.tlvs(),
                    via_data_sm: false,
                };
                self.on_submit(seq, submission, cfg, batch);
            }
            Pdu::DataSm(d) => {
                let submission = Submission {
                    source: Address {
                        ton: d.source_addr_ton.into(),
                        npi: d.source_addr_npi.into(),
                        addr: d.source_addr.clone(),
                    },
                    destination: Address {
                        ton: d.dest_addr_ton.into(),
                        npi: d.dest_addr_npi.into(),
                        addr: d.destination_addr.clone(),
                    },
                    esm_class: d.esm_class.into(),
                    data_coding: d.data_coding.into(),
                    registered_delivery: d.registered_delivery.into(),
                    short_message: &[],
                    tlvs: d.tlvs(),
                    via_data_sm: true,
                };
                self.on_submit(seq, submission, cfg, batch);
            }
            _ => {
                debug!(session = self.id, command_id = ?command.id(), "unsupported command");
                self.emit(&Command::new(
                    CommandStatus::EsmeRinvcmdid,
                    seq,
                    Pdu::GenericNack,
                ));
            }
        }
    }

    fn on_bind(&mut self, kind: BindKind, seq: u32, b: BindFields<'_>, cfg: &SimConfig) {
        let (system_id, password) = (b.system_id, b.password);
        self.inner.record_bind(super::BindRecord {
            kind,
            system_id: system_id.as_str().to_owned(),
            interface_version: b.interface_version,
            address_range: b.address_range.to_owned(),
        });
        let refusing = cfg
            .refuse_binds_for
            .is_some_and(|window| self.inner.started.elapsed() < window);
        let status = if self.bind.is_some() {
            CommandStatus::EsmeRalybnd
        } else if refusing {
            CommandStatus::EsmeRbindfail
        } else if system_id.as_str() != cfg.system_id {
            CommandStatus::EsmeRinvsysid
        } else if password.as_str() != cfg.password {
            CommandStatus::EsmeRinvpaswd
        } else {
            CommandStatus::EsmeRok
        };
        let our_id = COctetString::from_string(cfg.system_id.clone()).unwrap_or_default();
        let version = Some(InterfaceVersion::Smpp3_4);
        let pdu: Pdu = match kind {
            BindKind::Transmitter => BindTransmitterResp::new(our_id, version).into(),
            BindKind::Receiver => BindReceiverResp::new(our_id, version).into(),
            BindKind::Transceiver => BindTransceiverResp::new(our_id, version).into(),
        };
        self.emit(&Command::new(status, seq, pdu));
        if status != CommandStatus::EsmeRok {
            info!(session = self.id, ?kind, ?status, "bind refused");
            bump(&self.inner.counters.binds_refused, 1);
            return;
        }
        info!(session = self.id, ?kind, "bound");
        bump(&self.inner.counters.binds_ok, 1);
        let system_id: Arc<str> = Arc::from(cfg.system_id.as_str());
        self.bind = Some(kind);
        self.system_id = Some(system_id.clone());
        if let Some(mut entry) = self.inner.sessions.get_mut(&self.id) {
            entry.system_id = Some(system_id);
            entry.can_receive = kind.can_receive();
        }
        if kind.can_receive() {
            let _ = self.inner.router_tx.send(RouterMsg::ReceiverBound);
        }
        self.inner.bind_notify.notify_waiters();
    }

    fn on_submit(&mut self, seq: u32, sub: Submission<'_>, cfg: &SimConfig, batch: &mut Batch) {
        let counters = &self.inner.counters;
        batch.received += 1;
        let dest = sub.destination.addr.as_str();
        let payload = sub.payload();
        let keep = cfg.submit_log_capacity > 0;

        if let Some(every) = cfg.drop_every {
            let n = self
                .inner
                .drop_counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if n.is_multiple_of(every) {
                info!(
                    session = self.id,
                    submit = n,
                    "drop_every: dropping connection"
                );
                if keep {
                    batch.entries.push(sub.entry(self.id, payload, None, None));
                }
                bump(&counters.connections_dropped, 1);
                self.begin_close(false);
                return;
            }
        }

        let status = if !self.bind.is_some_and(BindKind::can_submit) {
            CommandStatus::EsmeRinvbndsts
        } else if chance(cfg.throttle_fraction) {
            bump(&counters.throttled, 1);
            CommandStatus::EsmeRthrottled
        } else if chance(cfg.msgqful_fraction) {
            bump(&counters.queue_full, 1);
            CommandStatus::EsmeRmsgqful
        } else if let Some(status) = cfg.error_for(dest) {
            CommandStatus::from(status)
        } else if dest.is_empty() {
            CommandStatus::EsmeRinvdstadr
        } else {
            CommandStatus::EsmeRok
        };

        let now = Instant::now();
        let response_delay = cfg.response_delay
            + cfg.response_delay_max.map_or(Duration::ZERO, |max| {
                receipt::jitter(max.saturating_sub(cfg.response_delay))
            });
        let response_due = now + response_delay;

        if status != CommandStatus::EsmeRok {
            debug!(session = self.id, dest = %last4(dest), ?status, "submit refused");
            bump(&counters.submits_error, 1);
            if keep {
                batch
                    .entries
                    .push(sub.entry(self.id, payload, None, Some(status.into())));
            }
            // Error responses carry an empty message_id (SMPP 3.4 section 4.4.2).
            let command = sub.response(status, seq, COctetString::default());
            self.respond(command, Vec::new(), response_due, now);
            return;
        }

        let number = self
            .inner
            .next_message_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let message_id = message_id_cstring(cfg.message_id_format, number);
        debug!(session = self.id, dest = %last4(dest), id = %message_id, "submit accepted");
        bump(&counters.submits_ok, 1);
        batch.accepted.push(sub.fingerprint(payload));

        let receipts = self.receipts_for(&sub, payload, number, &message_id, cfg);
        let command = sub.response(status, seq, message_id.clone());
        if keep {
            batch
                .entries
                .push(sub.entry(self.id, payload, Some(message_id.to_string()), Some(0)));
        }
        if cfg.receipt_before_response {
            // The response waits for its receipts, which go first.
            let due = if receipts.is_empty() {
                response_due
            } else {
                response_due.max(now + cfg.receipt.delay)
            };
            self.respond(command, receipts, due, now);
        } else {
            self.respond(command, Vec::new(), response_due, now);
            // A receipt never overtakes its own response on this connection.
            let due = response_due.max(now + cfg.receipt.delay);
            for job in receipts {
                self.route_receipt(job, due, now);
            }
        }
    }

    /// The receipts (none, one, or two with `duplicate_receipts`) an accepted submit earns.
    fn receipts_for(
        &self,
        sub: &Submission<'_>,
        payload: Option<&[u8]>,
        number: u64,
        message_id: &COctetString<1, 65>,
        cfg: &SimConfig,
    ) -> Vec<ReceiptJob> {
        let outcome = match cfg.receipt_error_for(sub.destination.addr.as_str()) {
            Some(code) => Some((super::ReceiptState::Undeliverable, code)),
            None => cfg
                .receipt
                .state
                .map(|state| (state, cfg.receipt.error_code)),
        };
        let Some((state, error_code)) = outcome else {
            return Vec::new();
        };
        // registered_delivery bits 0-1: 1 = receipt always, 2 = only on failure.
        let wanted = match sub.registered_delivery & 0x03 {
            1 => true,
            2 => !state.is_delivered(),
            _ => false,
        };
        let Some(system_id) = self.system_id.clone().filter(|_| wanted) else {
            return Vec::new();
        };
        let body = if sub.short_message.is_empty() {
            payload.unwrap_or_default()
        } else {
            sub.short_message
        };
        let udhi = sub.esm_class & 0x40 != 0;
        let body = if udhi { text::strip_udh(body) } else { body };
        // 40 bytes hold at least 20 characters in every coding used here.
        let head = &body[..body.len().min(40)];
        let job = ReceiptJob {
            system_id,
            message_id: if cfg.receipt_id_other_format {
                message_id_cstring(cfg.message_id_format.other(), number)
            } else {
                message_id.clone()
            },
            handset: sub.destination.clone(),
            submitter: sub.source.clone(),
            submit_date: SystemTime::now(),
            state,
            error_code,
            text: text::ascii_preview(sub.data_coding, head, 20),
        };
        if cfg.duplicate_receipts {
            vec![job.clone(), job]
        } else {
            vec![job]
        }
    }

    /// Sends `command` (after `receipts_first`) now, or holds it until `due`.
    fn respond(
        &mut self,
        command: Command,
        receipts_first: Vec<ReceiptJob>,
        due: Instant,
        now: Instant,
    ) {
        if due <= now {
            for job in receipts_first {
                self.route_receipt(job, now, now);
            }
            self.emit(&command);
        } else {
            self.push_delayed(
                due,
                DelayedItem::Response {
                    command,
                    receipts_first,
                },
            );
        }
    }

    /// A receipt goes out on this connection when it is a receiver of the same system_id
    /// (a transceiver that submitted), else through the router.
    fn route_receipt(&mut self, job: ReceiptJob, due: Instant, now: Instant) {
        let here = self.closing.is_none()
            && self.bind.is_some_and(BindKind::can_receive)
            && self.system_id.as_deref() == Some(&*job.system_id);
        if !here {
            let _ = self.inner.router_tx.send(RouterMsg::Schedule { job, due });
        } else if due <= now {
            self.send_receipt(job);
        } else {
            self.push_delayed(due, DelayedItem::Receipt(job));
        }
    }

    fn push_delayed(&mut self, due: Instant, item: DelayedItem) {
        self.delayed_order += 1;
        self.delayed.push(Reverse(Delayed {
            due,
            order: self.delayed_order,
            item,
        }));
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        while self.delayed.peek().is_some_and(|Reverse(d)| d.due <= now) {
            let Some(Reverse(delayed)) = self.delayed.pop() else {
                break;
            };
            match delayed.item {
                DelayedItem::Response {
                    command,
                    receipts_first,
                } => {
                    for job in receipts_first {
                        self.route_receipt(job, now, now);
                    }
                    self.emit(&command);
                }
                DelayedItem::Receipt(job) => self.route_receipt(job, now, now),
            }
        }
    }

    fn send_receipt(&mut self, job: ReceiptJob) {
        let seq = self.next_seq();
        self.emit(&Command::new(
            CommandStatus::EsmeRok,
            seq,
            job.to_deliver_sm(SystemTime::now()),
        ));
        self.awaiting.insert(seq, Awaiting::Receipt(job));
        bump(&self.inner.counters.receipts_sent, 1);
    }

    fn on_routed(&mut self, msg: ToSession) {
        match msg {
            ToSession::Receipt(job) => self.send_receipt(job),
            ToSession::Mo { deliver, reply } => {
                let seq = self.next_seq();
                self.emit(&Command::new(CommandStatus::EsmeRok, seq, deliver));
                self.awaiting.insert(seq, Awaiting::Mo(reply));
                bump(&self.inner.counters.mo_sent, 1);
            }
        }
    }

    fn on_response(&mut self, header: Header, cfg: &SimConfig) -> Flow {
        let ok = header.command_status == 0;
        match self.awaiting.remove(&header.sequence_number) {
            Some(Awaiting::Receipt(job)) => {
                if ok {
                    bump(&self.inner.counters.receipts_acked, 1);
                } else {
                    debug!(
                        session = self.id,
                        status = header.command_status,
                        "receipt refused"
                    );
                    bump(&self.inner.counters.receipts_refused, 1);
                    let due = Instant::now() + cfg.receipt_retry_delay;
                    let _ = self.inner.router_tx.send(RouterMsg::Schedule { job, due });
                }
            }
            Some(Awaiting::Mo(reply)) => {
                if ok {
                    bump(&self.inner.counters.mo_acked, 1);
                }
                let _ = reply.send(header.command_status);
            }
            None if header.command_id == UNBIND_RESP
                && self.closing.as_ref().is_some_and(|c| c.wait_unbind_resp) =>
            {
                return Flow::Close;
            }
            None => {}
        }
        Flow::Continue
    }

    /// Simulator shutdown: a bound session says unbind and waits briefly for the answer.
    fn start_unbind(&mut self) {
        if self.bind.is_none() {
            self.begin_close(false);
            return;
        }
        let seq = self.next_seq();
        self.emit(&Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind));
        self.begin_close(true);
    }

    /// Stops taking work: flush what is queued (bounded by [`CLOSE_GRACE`]), then close.
    fn begin_close(&mut self, wait_unbind_resp: bool) {
        self.closing = Some(Closing {
            deadline: Instant::now() + CLOSE_GRACE,
            wait_unbind_resp,
        });
        if let Some(mut entry) = self.inner.sessions.get_mut(&self.id) {
            entry.can_receive = false;
        }
    }

    fn next_seq(&mut self) -> u32 {
        // Sequence numbers run 1..=0x7FFFFFFF (SMPP 3.4 section 3.2).
        self.next_seq = if self.next_seq >= 0x7FFF_FFFF {
            1
        } else {
            self.next_seq + 1
        };
        self.next_seq
    }

    fn emit(&mut self, command: &Command) {
        // Encoding into a BytesMut cannot fail.
        let _ = self.codec.encode(command, &mut self.wbuf);
    }
}

/// A submit_sm or data_sm, borrowed from the decoded PDU.
struct Submission<'a> {
    source: Address,
    destination: Address,
    esm_class: u8,
    data_coding: u8,
    registered_delivery: u8,
    short_message: &'a [u8],
    tlvs: &'a [Tlv],
    via_data_sm: bool,
}

impl Submission<'_> {
    fn payload(&self) -> Option<&[u8]> {
        self.tlvs.iter().find_map(|tlv| match tlv.value() {
            Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref()),
            _ => None,
        })
    }

    fn sar(&self) -> Option<(u16, u8, u8)> {
        let (mut reference, mut total, mut seq) = (None, None, None);
        for tlv in self.tlvs {
            match tlv.value() {
                Some(TlvValue::SarMsgRefNum(v)) => reference = Some(*v),
                Some(TlvValue::SarTotalSegments(v)) => total = Some(*v),
                Some(TlvValue::SarSegmentSeqnum(v)) => seq = Some(*v),
                _ => {}
            }
        }
        Some((reference?, total?, seq?))
    }

    /// What makes two submits "the same message" for duplicate counting.
    fn fingerprint(&self, payload: Option<&[u8]>) -> u64 {
        let mut h = DefaultHasher::new();
        self.source.addr.as_str().hash(&mut h);
        self.destination.addr.as_str().hash(&mut h);
        self.short_message.hash(&mut h);
        payload.hash(&mut h);
        self.sar().hash(&mut h);
        h.finish()
    }

    fn entry(
        &self,
        session: u64,
        payload: Option<&[u8]>,
        message_id: Option<String>,
        command_status: Option<u32>,
    ) -> ReceivedSubmit {
        ReceivedSubmit {
            session,
            via_data_sm: self.via_data_sm,
            source_addr: self.source.addr.as_str().to_string(),
            destination_addr: self.destination.addr.as_str().to_string(),
            data_coding: self.data_coding,
            esm_class: self.esm_class,
            registered_delivery: self.registered_delivery,
            short_message: self.short_message.to_vec(),
            message_payload: payload.map(<[u8]>::to_vec),
            sar: self.sar(),
            message_id,
            command_status,
        }
    }

    fn response(&self, status: CommandStatus, seq: u32, id: COctetString<1, 65>) -> Command {
        if self.via_data_sm {
            Command::new(status, seq, DataSmResp::builder().message_id(id).build())
        } else {
            Command::new(status, seq, SubmitSmResp::builder().message_id(id).build())
        }
    }
}

/// A message id as a C-string, rendered without intermediate `String`s: this runs per submit.
fn message_id_cstring(format: IdFormat, n: u64) -> COctetString<1, 65> {
    use std::io::Write;
    let mut buf = [0u8; 24];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = match format {
        IdFormat::Hex => write!(cursor, "{n:x}"),
        IdFormat::Decimal => write!(cursor, "{n}"),
    };
    // A u64 takes at most 20 digits, so the NUL always fits after them.
    let len = cursor.position() as usize;
    COctetString::from_bytes(Bytes::copy_from_slice(&buf[..=len])).unwrap_or_default()
}

/// True with probability `fraction`; never touches the RNG for 0.0.
fn chance(fraction: f64) -> bool {
    fraction > 0.0 && (fraction >= 1.0 || rand::random::<f64>() < fraction)
}

/// Phone numbers appear in logs by their last 4 digits only.
pub(crate) fn last4(number: &str) -> &str {
    let start = number.len().saturating_sub(4);
    number.get(start..).unwrap_or("")
}

/// The fields the three bind requests share.
struct BindFields<'a> {
    system_id: &'a COctetString<1, 16>,
    password: &'a COctetString<1, 9>,
    interface_version: u8,
    address_range: &'a str,
}

macro_rules! bind_fields {
    ($($t:ty),*) => {$(
        impl<'a> From<&'a $t> for BindFields<'a> {
            fn from(b: &'a $t) -> Self {
                BindFields {
                    system_id: &b.system_id,
                    password: &b.password,
                    interface_version: u8::from(b.interface_version),
                    address_range: b.address_range.as_str(),
                }
            }
        }
    )*};
}
bind_fields!(
    rusmpp::pdus::BindTransmitter,
    rusmpp::pdus::BindReceiver,
    rusmpp::pdus::BindTransceiver
);

impl<'a> BindFields<'a> {
    fn of(b: impl Into<BindFields<'a>>) -> Self {
        b.into()
    }
}
