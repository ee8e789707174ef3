//! Reproducers for bugs the fuzz targets in `fuzz/` found, as plain tests so `cargo test`
//! keeps them fixed without nightly. See `fuzz/README.md`.

use std::{sync::Arc, time::Duration};

use bytes::{BufMut, BytesMut};
use futures::{StreamExt, future::BoxFuture};
use rusmpp::{Command, CommandStatus, pdus::BindTransceiverResp, pdus::SubmitSm};
use smsgate::{
    domain::MessageId,
    smpp::{
        codec::{Frame, SmppCodec, encode_into},
        session::{
            InboundHandler, Links, PartCtx, SessionConfig, SessionObserver, SubmitRequest,
            SubmitResult, run,
        },
    },
};
use tokio::{
    io::AsyncWriteExt,
    sync::{mpsc, watch},
};
use tokio_util::codec::FramedRead;

struct NoInbound;
impl InboundHandler for NoInbound {
    fn deliver_sm(&self, _: Arc<str>, _: rusmpp::pdus::DeliverSm) -> BoxFuture<'static, u32> {
        Box::pin(async { 0 })
    }
}
struct Quiet;
impl SessionObserver for Quiet {}

/// Fuzz target `smpp_session` (input `00 01` + this 16-byte PDU): SMPP 3.4 (4.4.2) says a
/// `submit_sm_resp` carries no body when its command_status is not 0, and carriers send
/// exactly that (header only) to refuse or throttle a submit. rusmpp reads such a frame as a
/// `Command` with `pdu: None`; a session that only matches `Some(Pdu::SubmitSmResp(_))` drops
/// it as a stray response, and the submit is reported `Timeout` (or `ConnectionLost`) instead
/// of `Response { status: 0x58 }`: a throttle or a permanent refusal is retried as if the
/// carrier had never answered.
#[tokio::test]
async fn a_bodyless_submit_sm_resp_reports_its_status() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (req_tx, mut req_rx) = mpsc::channel(4);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (_sd_tx, sd_rx) = watch::channel(false);
    req_tx
        .send(SubmitRequest {
            pdu: SubmitSm::default(),
            ctx: PartCtx {
                message: MessageId::generate(),
                seq: 1,
            },
        })
        .await
        .unwrap();
    let cfg = SessionConfig {
        carrier: Arc::from("fuzz"),
        system_id: "smsgate".into(),
        password: "secret".into(),
        system_type: String::new(),
        window: 1,
        response_timeout: Duration::from_secs(2),
        enquire_link: Duration::from_secs(30),
        max_command_length: 4096,
        drain_timeout: Duration::from_secs(1),
        bind: Default::default(),
    };
    let session = tokio::spawn(async move {
        run(
            ours,
            &cfg,
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

    let (rd, mut wr) = tokio::io::split(theirs);
    let mut frames = FramedRead::new(rd, SmppCodec::new(4096));
    let Some(Ok(Frame::Command(bind))) = frames.next().await else {
        panic!("expected a bind")
    };
    let mut out = BytesMut::new();
    encode_into(
        &Command::new(
            CommandStatus::EsmeRok,
            bind.sequence_number(),
            BindTransceiverResp::default(),
        ),
        &mut out,
    );
    wr.write_all(&out).await.unwrap();
    let Some(Ok(Frame::Command(submit))) = frames.next().await else {
        panic!("expected a submit_sm")
    };
    // submit_sm_resp, ESME_RTHROTTLED, header only.
    let mut resp = BytesMut::new();
    resp.put_u32(16);
    resp.put_u32(0x8000_0004);
    resp.put_u32(0x0000_0058);
    resp.put_u32(submit.sequence_number());
    wr.write_all(&resp).await.unwrap();

    let done = tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
        .await
        .expect("a completion")
        .expect("the session reports the submit");
    assert_eq!(
        done.result,
        SubmitResult::Response {
            status: 0x58,
            message_id: String::new()
        }
    );
    drop(wr);
    drop(frames);
    let _ = session.await;
}
