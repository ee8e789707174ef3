//! smsgate: a carrier-facing SMS gateway. Apps submit over HTTP JSON; carriers are spoken to
//! over SMPP; every accepted message is on disk before the app hears `202`.
//!
//! Map of the crate, in pipeline order:
//! - [`config`]: TOML config, validated into typed values with line-numbered errors.
//! - [`domain`]: ids, E.164 numbers (redacting `Display`), message states. No I/O.
//! - [`api`]: the app-facing axum router (auth, validation, JSON errors) and the admin
//!   listener (`/metrics`, `/healthz`, `/readyz`).
//! - [`policy`]: opt-out keywords (STOP/START/HELP) and business hours. Pure.
//! - [`segment`]: encoding choice (GSM-7, UCS-2, Latin-1), parts, UDH, MO decoding. Pure.
//! - [`store`]: the `Store` trait and its SQLite implementation (WAL, group commit).
//! - [`dispatch`]: claims queued work, sends parts, records each attempt's outcome.
//! - [`ratelimit`]: per-line (segments) and per-carrier (submits, adaptive) limits, and the
//!   round-robin scheduler the dispatcher takes ready work from.
//! - [`smpp`]: framing, sessions with send windows, bind slots with reconnect, status table.
//! - [`dlr`]: receipt parsing and carrier id normalisation.
//! - [`mo`]: inbound texts: decoding, reassembly, keywords, after-hours replies.
//! - [`webhook`]: signed (Standard Webhooks) outbox delivery, retries, dead letters.
//! - [`net`]: outbound HTTP clients (rustls).
//! - [`sim`]: `smsc-sim`, the carrier simulator (also embedded for `simulator = true`).
//! - [`triggers`]: call-center Call-to-Text / Abandoned Call triggers.
//! - [`status`]: `smsgate status`, a terminal view built from the admin listener.
//! - [`systemd`]: sd_notify (READY, STATUS, STOPPING, WATCHDOG) without libsystemd.
//! - [`telemetry`]: logging setup and the Prometheus registry.
//! - [`app`]: wiring, start order and drain order, reloads.
//! - [`loadgen`]: `smsgate-bench`: HTTP load, in-process end-to-end and MO runs with a
//!   signature-checking webhook sink.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod config;
pub mod dispatch;
pub mod dlr;
pub mod domain;
pub mod loadgen;
pub mod mo;
pub mod net;
pub mod policy;
pub mod ratelimit;
pub mod segment;
pub mod sim;
pub mod smpp;
pub mod status;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod triggers;
pub mod webhook;
