//! One SMPP session: a single task owns the socket. Callers hand it submits over a bounded
//! channel; it keeps at most `window` of them in flight, matches responses by sequence
//! number, expires the ones that never get an answer, answers the carrier's requests, and
//! reports every submit's fate on the completion channel exactly once.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use bytes::BytesMut;
use futures::{StreamExt, future::BoxFuture};
use rusmpp::{
    Command, CommandStatus, Pdu,
    pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm},
    types::COctetString,
    values::InterfaceVersion,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::codec::FramedRead;

use super::codec::{Frame, FrameError, SmppCodec, encode_into};
use crate::domain::MessageId;

/// Which part of which message a submit carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCtx {
    pub message: MessageId,
    pub seq: u32,
}

#[derive(Debug)]
pub struct SubmitRequest {
    pub pdu: SubmitSm,
    pub ctx: PartCtx,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitResult {
    /// The carrier answered (`submit_sm_resp` or `generic_nack`).
    Response { status: u32, message_id: String },
    /// No answer within the response timeout.
    Timeout,
    /// Written, but the connection ended before an answer.
    ConnectionLost,
    /// Never written (session ended or shutting down).
    NotSent,
}

#[derive(Debug)]
pub struct Completion {
    pub ctx: PartCtx,
    pub result: SubmitResult,
    /// Time from write to answer, when there was one.
    pub latency: Option<Duration>,
}

/// What the session does with a carrier's deliver_sm: store it, then tell us the status to
/// answer with. The answer goes out only after the future resolves.
pub trait InboundHandler: Send + Sync + 'static {
    fn deliver_sm(
        &self,
        carrier: Arc<str>,
        pdu: rusmpp::pdus::DeliverSm,
    ) -> BoxFuture<'static, u32>;
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub carrier: Arc<str>,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub window: usize,
    pub response_timeout: Duration,
    pub enquire_link: Duration,
    pub max_command_length: usize,
    /// How long a draining session waits for outstanding responses before unbinding.
    pub drain_timeout: Duration,
    pub bind: BindOptions,
}

/// How a session binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Submits, receipts and MO on one connection.
    #[default]
    Transceiver,
    /// Submits only (receipts and MO come on a receiver bind).
    Transmitter,
    /// Receipts and MO only: the session never takes submits.
    Receiver,
}

impl BindMode {
    pub fn can_submit(self) -> bool {
        matches!(self, BindMode::Transceiver | BindMode::Transmitter)
    }

    pub fn name(self) -> &'static str {
        match self {
            BindMode::Transceiver => "transceiver",
            BindMode::Transmitter => "transmitter",
            BindMode::Receiver => "receiver",
        }
    }
}

/// The bind PDU's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOptions {
    pub mode: BindMode,
    /// 0x34 (SMPP 3.4) or 0x50 (SMPP 5.0).
    pub interface_version: u8,
    pub address_range: String,
}

impl Default for BindOptions {
    fn default() -> Self {
        Self {
            mode: BindMode::Transceiver,
            interface_version: 0x34,
            address_range: String::new(),
        }
    }
}

/// The bind request of `cfg`, and the command id of the answer it expects.
fn bind_pdu(cfg: &SessionConfig) -> (Pdu, rusmpp::CommandId) {
    let version = InterfaceVersion::from(cfg.bind.interface_version);
    macro_rules! build {
        ($pdu:ident, $resp:ident) => {
            (
                $pdu::builder()
                    .system_id(cstr(&cfg.system_id))
                    .password(cstr(&cfg.password))
                    .system_type(cstr(&cfg.system_type))
                    .interface_version(version)
                    .address_range(cstr(&cfg.bind.address_range))
                    .build()
                    .into(),
                rusmpp::CommandId::$resp,
            )
        };
    }
    match cfg.bind.mode {
        BindMode::Transceiver => build!(BindTransceiver, BindTransceiverResp),
        BindMode::Transmitter => build!(BindTransmitter, BindTransmitterResp),
        BindMode::Receiver => build!(BindReceiver, BindReceiverResp),
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("bind refused with status 0x{status:08X}")]
    BindRefused { status: u32 },
    #[error("no bind response within {0:?}")]
    BindTimeout(Duration),
    #[error("connection closed by the carrier")]
    Closed,
    #[error("carrier unbound")]
    Unbound,
    #[error("no enquire_link_resp within {0:?}: link presumed dead")]
    LinkDead(Duration),
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// How a session ended after a successful bind.
#[derive(Debug)]
pub enum SessionEnd {
    /// Shutdown: drained and unbound.
    Drained,
    Failed(SessionError),
}

/// Events the session reports to whoever supervises it (metrics, readiness).
pub trait SessionObserver: Send + Sync + 'static {
    fn in_flight(&self, _delta: i64) {}
    fn malformed(&self) {}
}

struct Pending {
    ctx: PartCtx,
    sent: Instant,
}

const SEQ_MAX: u32 = 0x7FFF_FFFF;

fn next_seq(seq: &mut u32) -> u32 {
    *seq = if *seq >= SEQ_MAX { 1 } else { *seq + 1 };
    *seq
}

fn cstr<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    // Config validation bounds these lengths; an over-long value degrades to empty, which the
    // carrier then refuses with a clear bind status.
    s.parse().unwrap_or_default()
}

/// What a session is connected to besides its socket.
pub struct Links<'a> {
    pub requests: &'a mut mpsc::Receiver<SubmitRequest>,
    pub completions: &'a mpsc::UnboundedSender<Completion>,
    pub inbound: Arc<dyn InboundHandler>,
    pub observer: Arc<dyn SessionObserver>,
}

/// Binds on `io` as `cfg.bind` says, then runs the session until shutdown or failure.
/// `requests` outlives the session: what is still queued in it when a session ends waits for
/// the next one.
pub async fn run<S>(
    io: S,
    cfg: &SessionConfig,
    links: Links<'_>,
    mut shutdown: watch::Receiver<bool>,
    on_bound: impl FnOnce(),
) -> Result<SessionEnd, SessionError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let Links {
        requests,
        completions,
        inbound,
        observer,
    } = links;
    let (rd, mut wr) = tokio::io::split(io);
    let mut frames = FramedRead::new(rd, SmppCodec::new(cfg.max_command_length));
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut seq = 0u32;

    // Bind.
    let (bind, bind_resp) = bind_pdu(cfg);
    let bind_seq = next_seq(&mut seq);
    encode_into(
        &Command::new(CommandStatus::EsmeRok, bind_seq, bind),
        &mut wbuf,
    );
    wr.write_all(&wbuf).await?;
    wbuf.clear();
    let bind_deadline = cfg.response_timeout;
    let resp = tokio::time::timeout(bind_deadline, async {
        loop {
            match frames.next().await {
                // Only the bind's own answer counts: a carrier PDU that happens to reuse the
                // sequence number (its own enquire_link, a stray response) is not a bind.
                Some(Ok(Frame::Command(c)))
                    if c.sequence_number() == bind_seq
                        && (c.id() == bind_resp || c.id() == rusmpp::CommandId::GenericNack) =>
                {
                    return Ok(c);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(SessionError::from(e)),
                None => return Err(SessionError::Closed),
            }
        }
    })
    .await
    .map_err(|_| SessionError::BindTimeout(bind_deadline))??;
    let status = u32::from(resp.status());
    if status != 0 {
        return Err(SessionError::BindRefused { status });
    }
    on_bound();

    let (resp_tx, mut resp_rx) = mpsc::unbounded_channel::<(u32, u32)>();
    let mut pending: HashMap<u32, Pending> = HashMap::with_capacity(cfg.window * 2);
    let mut deadlines: VecDeque<(Instant, u32)> = VecDeque::with_capacity(cfg.window * 2);
    let mut last_heard = Instant::now();
    let mut enquire_sent: Option<Instant> = None;
    let tick_every = (cfg.response_timeout / 4)
        .min(cfg.enquire_link / 2)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    let mut drain_deadline = Instant::now();
    let mut inbound_in_progress = 0usize;

    let finish = |pending: &mut HashMap<u32, Pending>, result: SubmitResult| {
        let n = pending.len() as i64;
        for (_, p) in pending.drain() {
            let _ = completions.send(Completion {
                ctx: p.ctx,
                result: result.clone(),
                latency: None,
            });
        }
        observer.in_flight(-n);
    };

    let outcome: Result<SessionEnd, SessionError> = loop {
        let can_send = cfg.bind.mode.can_submit() && !draining && pending.len() < cfg.window;
        tokio::select! {
            biased;
            changed = shutdown.changed(), if !draining => {
                if changed.is_err() || *shutdown.borrow() {
                    draining = true;
                    drain_deadline = Instant::now() + cfg.drain_timeout;
                }
            }
            frame = frames.next() => {
                last_heard = Instant::now();
                match frame {
                    None => break Err(SessionError::Closed),
                    Some(Err(e)) => break Err(e.into()),
                    Some(Ok(Frame::Malformed { command_id, sequence_number, error })) => {
                        tracing::warn!(carrier = %cfg.carrier, command_id, sequence_number, %error, "malformed PDU from carrier");
                        observer.malformed();
                        // A response we cannot read: its submit will be retried after the timeout.
                        if command_id & 0x8000_0000 == 0 {
                            encode_into(&Command::new(CommandStatus::EsmeRinvcmdlen, sequence_number, Pdu::GenericNack), &mut wbuf);
                        }
                    }
                    Some(Ok(Frame::Command(c))) => {
                        let seq_no = c.sequence_number();
                        let status = u32::from(c.status());
                        match c.pdu() {
                            Some(Pdu::SubmitSmResp(r)) => {
                                if let Some(p) = pending.remove(&seq_no) {
                                    observer.in_flight(-1);
                                    let _ = completions.send(Completion {
                                        ctx: p.ctx,
                                        result: SubmitResult::Response { status, message_id: r.message_id().as_str().to_owned() },
                                        latency: Some(p.sent.elapsed()),
                                    });
                                }
                            }
                            // SMPP 3.4 4.4.2: a submit_sm_resp with an error status may carry no
                            // body at all (header only); it still answers its submit.
                            None if c.id() == rusmpp::CommandId::SubmitSmResp => {
                                if let Some(p) = pending.remove(&seq_no) {
                                    observer.in_flight(-1);
                                    let _ = completions.send(Completion {
                                        ctx: p.ctx,
                                        result: SubmitResult::Response { status, message_id: String::new() },
                                        latency: Some(p.sent.elapsed()),
                                    });
                                }
                            }
                            Some(Pdu::GenericNack) | None if c.id() == rusmpp::CommandId::GenericNack => {
                                if let Some(p) = pending.remove(&seq_no) {
                                    observer.in_flight(-1);
                                    let _ = completions.send(Completion {
                                        ctx: p.ctx,
                                        result: SubmitResult::Response { status, message_id: String::new() },
                                        latency: Some(p.sent.elapsed()),
                                    });
                                }
                            }
                            Some(Pdu::DeliverSm(d)) => {
                                inbound_in_progress += 1;
                                let fut = inbound.deliver_sm(cfg.carrier.clone(), d.clone());
                                let tx = resp_tx.clone();
                                tokio::spawn(async move {
                                    let status = fut.await;
                                    let _ = tx.send((seq_no, status));
                                });
                            }
                            Some(Pdu::EnquireLink) => {
                                encode_into(&Command::new(CommandStatus::EsmeRok, seq_no, Pdu::EnquireLinkResp), &mut wbuf);
                            }
                            Some(Pdu::EnquireLinkResp) => enquire_sent = None,
                            Some(Pdu::Unbind) => {
                                encode_into(&Command::new(CommandStatus::EsmeRok, seq_no, Pdu::UnbindResp), &mut wbuf);
                                let _ = wr.write_all(&wbuf).await;
                                wbuf.clear();
                                break Err(SessionError::Unbound);
                            }
                            Some(Pdu::UnbindResp) => break Ok(SessionEnd::Drained),
                            _ => {
                                // Requests we do not serve get a generic_nack; stray responses are ignored.
                                if u32::from(c.id()) & 0x8000_0000 == 0 {
                                    encode_into(&Command::new(CommandStatus::EsmeRinvcmdid, seq_no, Pdu::GenericNack), &mut wbuf);
                                }
                            }
                        }
                    }
                }
            }
            Some((seq_no, status)) = resp_rx.recv() => {
                inbound_in_progress -= 1;
                encode_into(&Command::new(CommandStatus::from(status), seq_no, DeliverSmResp::default()), &mut wbuf);
            }
            req = requests.recv(), if can_send => {
                let Some(req) = req else {
                    // Nobody will send more: finish what is in flight, then unbind.
                    draining = true;
                    drain_deadline = Instant::now() + cfg.drain_timeout;
                    continue;
                };
                let mut next = Some(req);
                // Take every ready submit the window allows, then write them in one go.
                while let Some(r) = next.take() {
                    let s = next_seq(&mut seq);
                    encode_into(&Command::new(CommandStatus::EsmeRok, s, r.pdu), &mut wbuf);
                    let now = Instant::now();
                    pending.insert(s, Pending { ctx: r.ctx, sent: now });
                    deadlines.push_back((now + cfg.response_timeout, s));
                    observer.in_flight(1);
                    if pending.len() < cfg.window && wbuf.len() < 60 * 1024 {
                        next = requests.try_recv().ok();
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                while let Some(&(at, s)) = deadlines.front() {
                    if at > now { break; }
                    deadlines.pop_front();
                    if let Some(p) = pending.remove(&s) {
                        observer.in_flight(-1);
                        let _ = completions.send(Completion { ctx: p.ctx, result: SubmitResult::Timeout, latency: None });
                    }
                }
                if deadlines.len() > pending.len() * 4 + 1024 {
                    // Answered entries pile up behind a long timeout; drop the stale ones.
                    deadlines.retain(|(_, s)| pending.contains_key(s));
                }
                if let Some(sent) = enquire_sent {
                    if now.duration_since(sent) > cfg.response_timeout {
                        break Err(SessionError::LinkDead(cfg.response_timeout));
                    }
                } else if now.duration_since(last_heard) >= cfg.enquire_link {
                    encode_into(&Command::new(CommandStatus::EsmeRok, next_seq(&mut seq), Pdu::EnquireLink), &mut wbuf);
                    enquire_sent = Some(now);
                }
                if draining && ((pending.is_empty() && inbound_in_progress == 0) || now >= drain_deadline) {
                    encode_into(&Command::new(CommandStatus::EsmeRok, next_seq(&mut seq), Pdu::Unbind), &mut wbuf);
                    let _ = wr.write_all(&wbuf).await;
                    wbuf.clear();
                    // Wait briefly for unbind_resp; the carrier may just close.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(f)) = frames.next().await {
                            if let Frame::Command(c) = f && c.id() == rusmpp::CommandId::UnbindResp {
                                break;
                            }
                        }
                    }).await;
                    break Ok(SessionEnd::Drained);
                }
            }
        }
        if !wbuf.is_empty() {
            if let Err(e) = wr.write_all(&wbuf).await {
                break Err(e.into());
            }
            wbuf.clear();
        }
    };
    // Whatever is still pending was written but never answered.
    finish(&mut pending, SubmitResult::ConnectionLost);
    let _ = wr.shutdown().await;
    match outcome {
        Ok(end) => Ok(end),
        Err(e) => Ok(SessionEnd::Failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use futures::SinkExt;
    use rusmpp::pdus::{BindTransceiverResp, SubmitSmResp};
    use tokio_util::codec::Framed;

    struct NoInbound;
    impl InboundHandler for NoInbound {
        fn deliver_sm(&self, _: Arc<str>, _: rusmpp::pdus::DeliverSm) -> BoxFuture<'static, u32> {
            Box::pin(async { 0 })
        }
    }
    struct Quiet;
    impl SessionObserver for Quiet {}

    fn cfg(window: usize) -> SessionConfig {
        SessionConfig {
            carrier: Arc::from("test"),
            system_id: "smsgate".into(),
            password: "secret".into(),
            system_type: String::new(),
            window,
            response_timeout: Duration::from_secs(5),
            enquire_link: Duration::from_secs(30),
            max_command_length: 4096,
            drain_timeout: Duration::from_secs(1),
            bind: BindOptions::default(),
        }
    }

    type Spawned = (
        mpsc::Sender<SubmitRequest>,
        mpsc::UnboundedReceiver<Completion>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<Result<SessionEnd, SessionError>>,
    );

    /// A session over `io` with the given window; its queue, completions, shutdown and task.
    fn spawn_session(io: tokio::io::DuplexStream, window: usize) -> Spawned {
        let (req_tx, mut req_rx) = mpsc::channel(100);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (sd_tx, sd_rx) = watch::channel(false);
        let session = tokio::spawn(async move {
            run(
                io,
                &cfg(window),
                Links {
                    requests: &mut req_rx,
                    completions: &done_tx,
                    inbound: Arc::new(NoInbound),
                    observer: Arc::new(Quiet),
                },
                sd_rx,
                || {},
            )
            .await
        });
        (req_tx, done_rx, sd_tx, session)
    }

    fn request(n: u32) -> SubmitRequest {
        SubmitRequest {
            pdu: SubmitSm::default(),
            ctx: PartCtx {
                message: MessageId::generate(),
                seq: n,
            },
        }
    }

    /// A fake carrier: accepts the bind, then hands every frame to `on_frame`.
    async fn carrier(io: tokio::io::DuplexStream) -> Framed<tokio::io::DuplexStream, SmppCodec> {
        let mut f = Framed::new(io, SmppCodec::new(4096));
        let Some(Ok(Frame::Command(bind))) = f.next().await else {
            panic!("expected a bind")
        };
        f.send(&Command::new(
            CommandStatus::EsmeRok,
            bind.sequence_number(),
            BindTransceiverResp::default(),
        ))
        .await
        .unwrap();
        f
    }

    #[tokio::test]
    async fn the_window_caps_submits_in_flight_and_responses_free_it() {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (req_tx, mut done_rx, _sd_tx, session) = spawn_session(ours, 4);
        for i in 0..10 {
            req_tx.send(request(i)).await.unwrap();
        }
        let mut smsc = carrier(theirs).await;
        let mut seen = Vec::new();
        // Exactly the window arrives before we answer anything.
        for _ in 0..4 {
            let Some(Ok(Frame::Command(c))) = smsc.next().await else {
                panic!()
            };
            seen.push(c.sequence_number());
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(200), smsc.next())
                .await
                .is_err(),
            "a fifth submit went out while 4 were in flight"
        );
        let mut answered = 0;
        while answered < 10 {
            let seq = if let Some(s) = seen.pop() {
                s
            } else {
                let Some(Ok(Frame::Command(c))) = smsc.next().await else {
                    panic!()
                };
                c.sequence_number()
            };
            let resp = SubmitSmResp::builder()
                .message_id(format!("id{seq}").parse().unwrap())
                .build();
            smsc.send(&Command::new(CommandStatus::EsmeRok, seq, resp))
                .await
                .unwrap();
            answered += 1;
        }
        for _ in 0..10 {
            let c = done_rx.recv().await.unwrap();
            assert!(
                matches!(c.result, SubmitResult::Response { status: 0, .. }),
                "{c:?}"
            );
        }
        drop(req_tx);
        let end = session.await.unwrap().unwrap();
        assert!(matches!(end, SessionEnd::Drained), "{end:?}");
    }

    #[tokio::test]
    async fn malformed_pdus_from_the_carrier_are_nacked_and_the_session_keeps_working() {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (req_tx, mut done_rx, _sd_tx, session) = spawn_session(ours, 8);
        let smsc = carrier(theirs).await;
        let (mut raw, codec) = (smsc.into_inner(), SmppCodec::new(4096));
        // A deliver_sm whose body is garbage.
        let mut junk = BytesMut::new();
        junk.put_u32(20);
        junk.put_u32(0x0000_0005);
        junk.put_u32(0);
        junk.put_u32(99);
        junk.put_slice(&[0xde, 0xad, 0xbe, 0xef]);
        raw.write_all(&junk).await.unwrap();
        let mut smsc = Framed::new(raw, codec);
        match smsc.next().await {
            Some(Ok(Frame::Command(c))) => {
                assert_eq!(c.id(), rusmpp::CommandId::GenericNack);
                assert_eq!(c.sequence_number(), 99);
            }
            other => panic!("expected a generic_nack, got {other:?}"),
        }
        // The session still sends and completes submits.
        req_tx.send(request(1)).await.unwrap();
        let Some(Ok(Frame::Command(c))) = smsc.next().await else {
            panic!()
        };
        let resp = SubmitSmResp::builder()
            .message_id("abc".parse().unwrap())
            .build();
        smsc.send(&Command::new(
            CommandStatus::EsmeRok,
            c.sequence_number(),
            resp,
        ))
        .await
        .unwrap();
        let done = done_rx.recv().await.unwrap();
        assert_eq!(
            done.result,
            SubmitResult::Response {
                status: 0,
                message_id: "abc".into()
            }
        );
        // A carrier that closes the connection ends the session with in-flight work reported lost.
        req_tx.send(request(2)).await.unwrap();
        let _ = smsc.next().await;
        drop(smsc);
        let end = session.await.unwrap().unwrap();
        assert!(
            matches!(end, SessionEnd::Failed(SessionError::Closed)),
            "{end:?}"
        );
        let lost = done_rx.recv().await.unwrap();
        assert_eq!(lost.result, SubmitResult::ConnectionLost);
    }

    #[tokio::test]
    async fn only_the_bind_response_answers_the_bind() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (_req_tx, _done_rx, _sd_tx, session) = spawn_session(ours, 4);
        let mut smsc = Framed::new(theirs, SmppCodec::new(4096));
        let Some(Ok(Frame::Command(bind))) = smsc.next().await else {
            panic!("expected a bind")
        };
        // The carrier's own enquire_link reuses the bind's sequence number: not an answer.
        smsc.send(&Command::new(
            CommandStatus::EsmeRok,
            bind.sequence_number(),
            Pdu::EnquireLink,
        ))
        .await
        .unwrap();
        smsc.send(&Command::new(
            CommandStatus::EsmeRbindfail,
            bind.sequence_number(),
            BindTransceiverResp::default(),
        ))
        .await
        .unwrap();
        let end = session.await.unwrap();
        assert!(
            matches!(end, Err(SessionError::BindRefused { status: 0x0D })),
            "{end:?}"
        );
    }

    // Timing on tokio's paused clock: time advances only when every task waits, so these
    // run in microseconds and always see the same instants.

    /// Reads frames until a command that is not a submit_sm arrives; returns the submits'
    /// sequence numbers and that command.
    async fn next_other(
        smsc: &mut Framed<tokio::io::DuplexStream, SmppCodec>,
        submits: &mut Vec<u32>,
    ) -> Command {
        loop {
            match smsc.next().await {
                Some(Ok(Frame::Command(c))) if c.id() == rusmpp::CommandId::SubmitSm => {
                    submits.push(c.sequence_number())
                }
                Some(Ok(Frame::Command(c))) => return c,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_submit_times_out_after_the_response_timeout_and_no_sooner() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (req_tx, mut done_rx, _sd_tx, _session) = spawn_session(ours, 4);
        let mut smsc = carrier(theirs).await;
        let start = Instant::now();
        req_tx.send(request(1)).await.unwrap();
        let Some(Ok(Frame::Command(_))) = smsc.next().await else {
            panic!()
        };
        // The carrier never answers.
        let done = done_rx.recv().await.unwrap();
        let waited = start.elapsed();
        assert_eq!(done.result, SubmitResult::Timeout);
        // Deadlines are checked on a tick of a quarter of the timeout (at most 1 s).
        assert!(
            waited >= Duration::from_secs(5) && waited <= Duration::from_millis(6_100),
            "timed out after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_link_is_probed_after_enquire_link_and_a_silent_carrier_ends_the_session() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (_req_tx, _done_rx, _sd_tx, session) = spawn_session(ours, 4);
        let mut smsc = carrier(theirs).await;
        let start = Instant::now();
        // Answered probes keep the session up for as long as the carrier answers them.
        for round in 1..=10u32 {
            let c = next_other(&mut smsc, &mut Vec::new()).await;
            assert_eq!(c.id(), rusmpp::CommandId::EnquireLink);
            let at = start.elapsed();
            assert!(
                at >= Duration::from_secs(30 * u64::from(round))
                    && at <= Duration::from_secs(30 * u64::from(round) + 2),
                "probe {round} at {at:?}"
            );
            smsc.send(&Command::new(
                CommandStatus::EsmeRok,
                c.sequence_number(),
                Pdu::EnquireLinkResp,
            ))
            .await
            .unwrap();
        }
        assert!(!session.is_finished());
        // The next probe goes unanswered: the link is declared dead after the response timeout.
        let probe = next_other(&mut smsc, &mut Vec::new()).await;
        assert_eq!(probe.id(), rusmpp::CommandId::EnquireLink);
        let probed = Instant::now();
        let end = session.await.unwrap().unwrap();
        assert!(
            matches!(end, SessionEnd::Failed(SessionError::LinkDead(_))),
            "{end:?}"
        );
        let after = probed.elapsed();
        assert!(
            after > Duration::from_secs(5) && after <= Duration::from_millis(6_100),
            "declared dead {after:?} after the probe"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_in_flight_answers_up_to_the_drain_timeout_then_unbinds() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (req_tx, mut done_rx, sd_tx, session) = spawn_session(ours, 4);
        let mut smsc = carrier(theirs).await;
        req_tx.send(request(1)).await.unwrap();
        req_tx.send(request(2)).await.unwrap();
        let mut submits = Vec::new();
        while submits.len() < 2 {
            let Some(Ok(Frame::Command(c))) = smsc.next().await else {
                panic!()
            };
            submits.push(c.sequence_number());
        }
        let start = Instant::now();
        sd_tx.send(true).unwrap();
        // One answer arrives during the drain; the other never does.
        smsc.send(&Command::new(
            CommandStatus::EsmeRok,
            submits[0],
            SubmitSmResp::builder()
                .message_id("m1".parse().unwrap())
                .build(),
        ))
        .await
        .unwrap();
        let unbind = next_other(&mut smsc, &mut Vec::new()).await;
        assert_eq!(unbind.id(), rusmpp::CommandId::Unbind);
        let at = start.elapsed();
        // drain_timeout is 1 s, checked on the session's tick.
        assert!(
            at >= Duration::from_secs(1) && at <= Duration::from_millis(2_100),
            "unbound after {at:?}"
        );
        smsc.send(&Command::new(
            CommandStatus::EsmeRok,
            unbind.sequence_number(),
            Pdu::UnbindResp,
        ))
        .await
        .unwrap();
        let end = session.await.unwrap().unwrap();
        assert!(matches!(end, SessionEnd::Drained), "{end:?}");
        let mut results = vec![
            done_rx.recv().await.unwrap().result,
            done_rx.recv().await.unwrap().result,
        ];
        results.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            results,
            vec![
                SubmitResult::ConnectionLost,
                SubmitResult::Response {
                    status: 0,
                    message_id: "m1".into()
                }
            ]
        );
        assert!(done_rx.try_recv().is_err(), "each submit completes once");
        drop(req_tx);
    }
}
