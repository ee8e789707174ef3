//! Test support: a small SMPP client on rusmpp's `CommandCodec`, plus [`run_load`], a
//! pipelined submit_sm load generator used to measure the simulator's throughput.
//! Not meant for production traffic (smsgate's real client lives in `smpp/`).

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures::{FutureExt, SinkExt, StreamExt};
use rusmpp::{
    Command, CommandId, CommandStatus, Pdu,
    pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm},
    tokio_codec::CommandCodec,
    types::{COctetString, OctetString},
    values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton},
};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_util::codec::Framed;

use super::BindKind;

/// How long [`SmppClient::next`] waits by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("undecodable PDU from the server: {0}")]
    Decode(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("nothing received within {0:?}")]
    Timeout(Duration),
    #[error("invalid field: {0}")]
    Invalid(String),
}

/// One SMPP connection. Everything is explicit: nothing is acknowledged automatically.
pub struct SmppClient {
    framed: Framed<TcpStream, CommandCodec>,
    seq: u32,
    /// Commands read while [`SmppClient::expect`] looked for another kind.
    stash: VecDeque<Command>,
    pub timeout: Duration,
}

impl SmppClient {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(SmppClient {
            framed: Framed::new(stream, CommandCodec::new()),
            seq: 0,
            stash: VecDeque::new(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Connects and binds; fails unless the bind_resp is OK.
    pub async fn bound(
        addr: SocketAddr,
        kind: BindKind,
        system_id: &str,
        password: &str,
    ) -> Result<Self, ClientError> {
        let mut client = SmppClient::connect(addr).await?;
        let status = client.bind(kind, system_id, password).await?;
        if status != CommandStatus::EsmeRok {
            return Err(ClientError::Invalid(format!("bind refused: {status:?}")));
        }
        Ok(client)
    }

    pub fn next_sequence(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Sends one PDU with the next sequence number, which it returns.
    pub async fn send(&mut self, pdu: impl Into<Pdu>) -> Result<u32, ClientError> {
        let seq = self.next_sequence();
        self.send_command(Command::new(CommandStatus::EsmeRok, seq, pdu))
            .await?;
        Ok(seq)
    }

    pub async fn send_command(&mut self, command: Command) -> Result<(), ClientError> {
        self.framed
            .send(command)
            .await
            .map_err(|e| ClientError::Io(io::Error::other(e.to_string())))
    }

    /// Writes bytes as they are, bypassing the codec (for malformed-input tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await?;
        stream.flush().await?;
        Ok(())
    }

    /// The next PDU from the server.
    pub async fn next(&mut self) -> Result<Command, ClientError> {
        if let Some(command) = self.stash.pop_front() {
            return Ok(command);
        }
        match tokio::time::timeout(self.timeout, self.framed.next()).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(None) => Err(ClientError::Closed),
            Ok(Some(Err(e))) => Err(ClientError::Decode(e.to_string())),
            Ok(Some(Ok(command))) => Ok(command),
        }
    }

    /// The next PDU of kind `id`; others read meanwhile are kept for [`SmppClient::next`].
    pub async fn expect(&mut self, id: CommandId) -> Result<Command, ClientError> {
        if let Some(i) = self.stash.iter().position(|c| c.id() == id) {
            return Ok(self.stash.remove(i).unwrap_or_default());
        }
        loop {
            let command = match tokio::time::timeout(self.timeout, self.framed.next()).await {
                Err(_) => return Err(ClientError::Timeout(self.timeout)),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(Err(e))) => return Err(ClientError::Decode(e.to_string())),
                Ok(Some(Ok(command))) => command,
            };
            if command.id() == id {
                return Ok(command);
            }
            self.stash.push_back(command);
        }
    }

    /// True if the server closes the connection within `within` (anything it sends first is
    /// read and discarded).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends a bind of `kind` and returns the status of its bind_resp.
    pub async fn bind(
        &mut self,
        kind: BindKind,
        system_id: &str,
        password: &str,
    ) -> Result<CommandStatus, ClientError> {
        let system_id = cstring::<16>(system_id)?;
        let password = cstring::<9>(password)?;
        let version = InterfaceVersion::Smpp3_4;
        let (pdu, resp): (Pdu, CommandId) = match kind {
            BindKind::Transmitter => (
                BindTransmitter::builder()
                    .system_id(system_id)
                    .password(password)
                    .interface_version(version)
                    .build()
                    .into(),
                CommandId::BindTransmitterResp,
            ),
            BindKind::Receiver => (
                BindReceiver::builder()
                    .system_id(system_id)
                    .password(password)
                    .interface_version(version)
                    .build()
                    .into(),
                CommandId::BindReceiverResp,
            ),
            BindKind::Transceiver => (
                BindTransceiver::builder()
                    .system_id(system_id)
                    .password(password)
                    .interface_version(version)
                    .build()
                    .into(),
                CommandId::BindTransceiverResp,
            ),
        };
        self.send(pdu).await?;
        Ok(self.expect(resp).await?.status())
    }

    /// Sends a submit_sm; returns its sequence number.
    pub async fn submit(&mut self, submit: SubmitSm) -> Result<u32, ClientError> {
        self.send(submit).await
    }

    /// Answers a deliver_sm with deliver_sm_resp of `status`.
    pub async fn answer_deliver(
        &mut self,
        deliver: &Command,
        status: CommandStatus,
    ) -> Result<(), ClientError> {
        self.send_command(Command::new(
            status,
            deliver.sequence_number(),
            DeliverSmResp::builder().build(),
        ))
        .await
    }

    /// Unbinds and waits for unbind_resp.
    pub async fn unbind(&mut self) -> Result<Command, ClientError> {
        self.send(Pdu::Unbind).await?;
        self.expect(CommandId::UnbindResp).await
    }
}

/// A submit_sm with GSM-7 (unpacked) `text`, international addresses (a leading `+` is
/// dropped), and a receipt request when `receipt`.
pub fn submit_sm(from: &str, to: &str, text: &str, receipt: bool) -> Result<SubmitSm, ClientError> {
    let body = super::text::gsm7_encode(text).unwrap_or_else(|| text.as_bytes().to_vec());
    submit_sm_bytes(from, to, 0, 0, body, receipt)
}

/// A submit_sm with a raw body, `data_coding` and `esm_class`.
pub fn submit_sm_bytes(
    from: &str,
    to: &str,
    data_coding: u8,
    esm_class: u8,
    body: Vec<u8>,
    receipt: bool,
) -> Result<SubmitSm, ClientError> {
    Ok(SubmitSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(cstring::<21>(from.trim_start_matches('+'))?)
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(cstring::<21>(to.trim_start_matches('+'))?)
        .esm_class(EsmClass::from(esm_class))
        .registered_delivery(RegisteredDelivery::from(u8::from(receipt)))
        .data_coding(DataCoding::from(data_coding))
        .short_message(
            OctetString::from_vec(body).map_err(|e| ClientError::Invalid(e.to_string()))?,
        )
        .build())
}

fn cstring<const MAX: usize>(s: &str) -> Result<COctetString<1, MAX>, ClientError> {
    COctetString::from_string(s.to_string())
        .map_err(|e| ClientError::Invalid(format!("{s:?}: {e}")))
}

/// What [`run_load`] sends.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub submits: u64,
    /// Submits in flight (sent, not yet answered).
    pub window: usize,
    /// Length of each message (GSM-7 characters).
    pub text_len: usize,
    /// Ask for receipts, and wait for (and acknowledge) all of them.
    pub receipts: bool,
    pub system_id: String,
    pub password: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            submits: 100_000,
            window: 256,
            text_len: 160,
            receipts: false,
            system_id: "smsgate".into(),
            password: "secret".into(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub submitted: u64,
    pub responses: u64,
    pub accepted: u64,
    pub receipts: u64,
    /// From the first submit until every response (and receipt, if asked) arrived.
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn submits_per_second(&self) -> f64 {
        self.responses as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Binds a transceiver and pushes `opts.submits` submit_sm through a window of
/// `opts.window`, encoding as many as the window allows before each flush and draining every
/// PDU already received before the next one.
pub async fn run_load(addr: SocketAddr, opts: &LoadOptions) -> Result<LoadReport, ClientError> {
    let client =
        SmppClient::bound(addr, BindKind::Transceiver, &opts.system_id, &opts.password).await?;
    let mut framed = client.framed;
    let mut seq = client.seq;
    let text: String = "abcdefghijklmnopqrstuvwxyz0123456789 "
        .chars()
        .cycle()
        .take(opts.text_len.min(255))
        .collect();
    let template = Command::new(
        CommandStatus::EsmeRok,
        0,
        submit_sm("+12125551000", "+12125550123", &text, opts.receipts)?,
    );
    let io_err =
        |e: rusmpp::tokio_codec::EncodeError| ClientError::Io(io::Error::other(e.to_string()));

    let mut report = LoadReport::default();
    let mut in_flight = 0usize;
    let mut acks: Vec<Command> = Vec::new();
    let start = Instant::now();
    loop {
        while in_flight < opts.window && report.submitted < opts.submits {
            seq += 1;
            let mut command = template.clone();
            command.sequence_number = seq;
            framed.feed(command).await.map_err(io_err)?;
            in_flight += 1;
            report.submitted += 1;
        }
        for ack in acks.drain(..) {
            framed.feed(ack).await.map_err(io_err)?;
        }
        SinkExt::<Command>::flush(&mut framed)
            .await
            .map_err(io_err)?;
        let receipts_done = !opts.receipts || report.receipts >= report.accepted;
        if report.responses >= opts.submits && receipts_done {
            break;
        }
        let first = match tokio::time::timeout(Duration::from_secs(10), framed.next()).await {
            Err(_) => return Err(ClientError::Timeout(Duration::from_secs(10))),
            Ok(None) => return Err(ClientError::Closed),
            Ok(Some(read)) => read.map_err(|e| ClientError::Decode(e.to_string()))?,
        };
        let mut handle = |command: Command| match command.id() {
            CommandId::SubmitSmResp => {
                in_flight -= 1;
                report.responses += 1;
                if command.status() == CommandStatus::EsmeRok {
                    report.accepted += 1;
                }
            }
            CommandId::DeliverSm => {
                report.receipts += 1;
                acks.push(Command::new(
                    CommandStatus::EsmeRok,
                    command.sequence_number(),
                    DeliverSmResp::builder().build(),
                ));
            }
            _ => {}
        };
        handle(first);
        // Everything already received is handled before the next flush.
        while let Some(Some(read)) = framed.next().now_or_never() {
            handle(read.map_err(|e| ClientError::Decode(e.to_string()))?);
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}
