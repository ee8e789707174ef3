//! A real session (`smpp::session::run`) against a fake carrier that speaks the fuzz input.
//!
//! The carrier answers the bind (unless the input asks it to send the bind phase too), then
//! writes the input one PDU at a time (split by its own command_length, with a pause before
//! each so queued submits go out and the input's responses can match them), then closes its
//! side and reads what the session wrote until the session hangs up.
//!
//! Checked, whatever the carrier sends:
//! - the session returns (time is paused, so a hang shows as a timeout, a minute of virtual
//!   time after the carrier closed), and never panics (nor do the tasks it spawns);
//! - every submit taken off the queue is reported exactly once on the completion channel, the
//!   rest are still queued, and the carrier saw exactly the submits that were reported;
//! - a readable `submit_sm_resp`/`generic_nack` to an unanswered submit, sent well inside the
//!   response timeout, is that submit's reported result (status and message id) whenever the
//!   session read the stream to its end;
//! - the in-flight gauge the observer keeps returns to zero;
//! - everything the session wrote frames and decodes as SMPP;
//! - after an answered bind the session ends `Ok`, and `on_bound` ran iff the bind succeeded.
//!
//! Input: `flags`, `n`, then the carrier's byte stream.
//! - `flags & 1`: shutdown is requested right away; `flags & 2`: the shutdown sender is dropped;
//! - `flags & 4`: the bind is not answered: the stream is the bind phase too;
//! - `(flags >> 3) & 7`: window - 1; `(flags >> 6) & 3`: pause before each PDU (1 ms, 100 ms,
//!   2 s, 6 s against a 5 s response timeout);
//! - `n % 17`: submits queued before the session starts.
#![no_main]

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::BytesMut;
use futures::future::BoxFuture;
use libfuzzer_sys::fuzz_target;
use rusmpp::{
    Command, CommandId, CommandStatus, Pdu,
    pdus::{BindTransceiverResp, DeliverSm, SubmitSm},
};
use smsgate::{
    domain::MessageId,
    smpp::{
        codec::{Frame, SmppCodec, encode_into},
        session::{
            InboundHandler, Links, PartCtx, SessionConfig, SessionEnd, SessionError,
            SessionObserver, SubmitRequest, SubmitResult, run,
        },
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::codec::Decoder;

const MAX_COMMAND_LENGTH: usize = 4096;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `FUZZ_DEBUG=1` prints how each run went (to check what a corpus exercises).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

/// Answers every deliver_sm after a short while, with a status the PDU's first byte picks.
struct Inbound(Arc<AtomicUsize>);
impl InboundHandler for Inbound {
    fn deliver_sm(&self, _carrier: Arc<str>, pdu: DeliverSm) -> BoxFuture<'static, u32> {
        self.0.fetch_add(1, Ordering::Relaxed);
        let status = match pdu.short_message().as_ref().first() {
            Some(b) if b % 4 == 0 => 0x0000_0008,
            _ => 0,
        };
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            status
        })
    }
}

#[derive(Default)]
struct Gauge {
    in_flight: AtomicI64,
}
impl SessionObserver for Gauge {
    fn in_flight(&self, delta: i64) {
        let now = self.in_flight.fetch_add(delta, Ordering::Relaxed) + delta;
        assert!(now >= 0, "in_flight went negative: {now}");
    }
}

fn config(window: usize) -> SessionConfig {
    SessionConfig {
        carrier: Arc::from("fuzz"),
        system_id: "smsgate".into(),
        password: "secret".into(),
        system_type: String::new(),
        window,
        response_timeout: RESPONSE_TIMEOUT,
        enquire_link: Duration::from_secs(30),
        max_command_length: MAX_COMMAND_LENGTH,
        drain_timeout: Duration::from_secs(1),
        bind: Default::default(),
    }
}

/// Submits the carrier has read and not answered: SMPP sequence number -> (the submit's
/// place in the queue, which is its `PartCtx::seq`, and when it arrived).
#[derive(Default)]
struct Outstanding {
    submits: u32,
    unanswered: HashMap<u32, (u32, Instant)>,
}

/// If `pdu` is a response the session can read (not malformed) to a submit still unanswered
/// and in time (well inside the response timeout), the result the session must report.
fn answers(model: &Mutex<Outstanding>, pdu: &[u8]) -> Option<(u32, SubmitResult)> {
    let Ok(Some(Frame::Command(c))) =
        SmppCodec::new(MAX_COMMAND_LENGTH).decode(&mut BytesMut::from(pdu))
    else {
        return None;
    };
    let message_id = match (c.id(), c.pdu()) {
        (CommandId::SubmitSmResp, Some(Pdu::SubmitSmResp(r))) => r.message_id().as_str().to_owned(),
        // SMPP 3.4 4.4.2: no body when command_status is not 0 (rusmpp: `pdu: None`); a
        // generic_nack, with or without a body.
        (CommandId::SubmitSmResp | CommandId::GenericNack, _) => String::new(),
        _ => return None,
    };
    let (k, at) = model
        .lock()
        .unwrap()
        .unanswered
        .remove(&c.sequence_number())?;
    (at.elapsed() < RESPONSE_TIMEOUT - Duration::from_millis(100)).then(|| {
        (
            k,
            SubmitResult::Response {
                status: u32::from(c.status()),
                message_id,
            },
        )
    })
}

/// Splits the carrier's stream where its own command_lengths say PDUs end (a length that
/// cannot be a PDU sends the rest in one go).
fn pdus(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !stream.is_empty() {
        let n = match stream {
            [a, b, c, d, ..] => {
                let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
                if (16..=MAX_COMMAND_LENGTH).contains(&len) {
                    len.min(stream.len())
                } else {
                    stream.len()
                }
            }
            _ => stream.len(),
        };
        out.push(&stream[..n]);
        stream = &stream[n..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [flags, n, stream @ ..] = data else {
        return;
    };
    let (flags, queued) = (*flags, usize::from(*n % 17));
    let answer_bind = flags & 4 == 0;
    let window = 1 + usize::from((flags >> 3) & 7);
    let pause = [
        Duration::from_millis(1),
        Duration::from_millis(100),
        Duration::from_secs(2),
        Duration::from_secs(6),
    ][usize::from(flags >> 6)];
    let pdus: Vec<Vec<u8>> = pdus(stream).into_iter().map(<[u8]>::to_vec).collect();
    // Long enough for the whole input at its pace, the bind, a drain and an unbind.
    let limit = Duration::from_secs(60) + pause * (pdus.len() as u32 + 1);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (req_tx, mut req_rx) = mpsc::channel(32);
        for i in 0..queued {
            req_tx
                .try_send(SubmitRequest {
                    pdu: SubmitSm::default(),
                    ctx: PartCtx {
                        message: MessageId::generate(),
                        seq: i as u32,
                    },
                })
                .unwrap();
        }
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let (sd_tx, sd_rx) = watch::channel(false);
        let mut sd_tx = Some(sd_tx);
        if flags & 1 != 0 {
            sd_tx.as_ref().unwrap().send(true).unwrap();
        }
        if flags & 2 != 0 {
            sd_tx = None;
        }

        // The carrier: a reader that keeps everything the session writes (and notes each
        // submit_sm's sequence number and when it came), a writer that answers the bind and
        // then plays the input, noting which of its PDUs answer a submit still unanswered.
        let outstanding: Arc<Mutex<Outstanding>> = Arc::default();
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let (bind_tx, bind_rx) = tokio::sync::oneshot::channel::<u32>();
        let seen = outstanding.clone();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut bind_tx = Some(bind_tx);
            let mut pending = BytesMut::new();
            let mut codec = SmppCodec::new(MAX_COMMAND_LENGTH);
            let mut chunk = [0u8; 4096];
            loop {
                let n = match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                all.extend_from_slice(&chunk[..n]);
                pending.extend_from_slice(&chunk[..n]);
                loop {
                    let c = match codec.decode(&mut pending) {
                        Ok(Some(Frame::Command(c))) => c,
                        Ok(Some(Frame::Malformed { .. })) => continue,
                        Ok(None) | Err(_) => break,
                    };
                    if c.id() == CommandId::BindTransceiver
                        && let Some(tx) = bind_tx.take()
                    {
                        let _ = tx.send(c.sequence_number());
                    }
                    if c.id() == CommandId::SubmitSm {
                        let mut o = seen.lock().unwrap();
                        let k = o.submits;
                        o.submits += 1;
                        o.unanswered
                            .insert(c.sequence_number(), (k, Instant::now()));
                    }
                }
            }
            all
        });
        let model = outstanding.clone();
        let writer = tokio::spawn(async move {
            let mut expected = Vec::new();
            if answer_bind {
                let Ok(seq) = bind_rx.await else {
                    return expected;
                };
                let mut b = BytesMut::new();
                encode_into(
                    &Command::new(CommandStatus::EsmeRok, seq, BindTransceiverResp::default()),
                    &mut b,
                );
                if wr.write_all(&b).await.is_err() {
                    return expected;
                }
            }
            for pdu in pdus {
                tokio::time::sleep(pause).await;
                if let Some(e) = answers(&model, &pdu) {
                    expected.push(e);
                }
                if wr.write_all(&pdu).await.is_err() {
                    return expected;
                }
            }
            // Half-close: the session reads EOF, the reader still drains what it writes.
            let _ = wr.shutdown().await;
            expected
        });

        let gauge = Arc::new(Gauge::default());
        let delivered = Arc::new(AtomicUsize::new(0));
        let bound = AtomicUsize::new(0);
        let cfg = config(window);
        let result = tokio::time::timeout(
            limit,
            run(
                ours,
                &cfg,
                Links {
                    requests: &mut req_rx,
                    completions: &done_tx,
                    inbound: Arc::new(Inbound(delivered.clone())),
                    observer: gauge.clone(),
                },
                sd_rx,
                || {
                    bound.fetch_add(1, Ordering::Relaxed);
                },
            ),
        )
        .await
        .expect("the session hung: no end long after the carrier closed (paused time)");
        drop(done_tx);
        drop(sd_tx);

        let bound = bound.load(Ordering::Relaxed);
        if debug() {
            eprintln!(
                "bound={bound} window={window} queued={queued} delivered={} -> {result:?}",
                delivered.load(Ordering::Relaxed)
            );
        }
        assert!(bound <= 1, "on_bound ran {bound} times");
        assert_eq!(result.is_ok(), bound == 1, "bound={bound} but {result:?}");
        if answer_bind {
            assert!(result.is_ok(), "an answered bind, then {result:?}");
        }

        // Every submit taken off the queue is reported once; the others are still queued.
        let mut reported = HashSet::new();
        let mut results = HashMap::new();
        while let Ok(c) = done_rx.try_recv() {
            if debug() {
                eprintln!("completion {}: {:?}", c.ctx.seq, c.result);
            }
            results.insert(c.ctx.seq, c.result.clone());
            assert!(
                reported.insert(c.ctx.seq),
                "submit {} reported twice",
                c.ctx.seq
            );
        }
        let mut still_queued = HashSet::new();
        while let Ok(r) = req_rx.try_recv() {
            assert!(still_queued.insert(r.ctx.seq));
        }
        assert!(
            reported.is_disjoint(&still_queued),
            "{reported:?} vs {still_queued:?}"
        );
        assert_eq!(
            reported.len() + still_queued.len(),
            queued,
            "submits lost: reported {reported:?}, queued {still_queued:?}"
        );
        assert_eq!(
            gauge.in_flight.load(Ordering::Relaxed),
            0,
            "in_flight not back to 0"
        );
        if bound == 0 {
            assert!(reported.is_empty(), "submits sent without a bind");
        }

        // What the session wrote is well-formed SMPP, and its submits are the reported ones.
        let expected = writer.await.expect("carrier writer");
        let written = reader.await.expect("carrier reader");
        // A session that read the stream to its end (EOF: `Closed`) saw every answer the
        // carrier gave in time, and each must be the submit's reported result.
        if matches!(result, Ok(SessionEnd::Failed(SessionError::Closed))) {
            for (k, want) in expected {
                assert_eq!(
                    results.get(&k),
                    Some(&want),
                    "submit {k} was answered in time with {want:?}"
                );
            }
        }
        let mut buf = BytesMut::from(&written[..]);
        let mut codec = SmppCodec::new(MAX_COMMAND_LENGTH);
        let mut submits = 0;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Frame::Command(c))) => {
                    if c.id() == CommandId::SubmitSm {
                        submits += 1;
                    }
                    if matches!(c.pdu(), Some(Pdu::BindTransceiver(_))) {
                        assert_eq!(c.sequence_number(), 1);
                    }
                }
                Ok(None) => break,
                other => panic!("the session wrote {other:?}"),
            }
        }
        assert!(buf.is_empty(), "the session wrote a partial PDU");
        assert!(matches!(
            result,
            Ok(SessionEnd::Drained | SessionEnd::Failed(_)) | Err(_)
        ));
        assert_eq!(submits, reported.len(), "submits on the wire vs reported");
    });
});
