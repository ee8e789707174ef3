//! Logs and metrics. Every metric lives in [`Metrics`], registered once in its own
//! registry; labels are bounded (carrier, result, reason, state), never a number or an id.
//! Phone numbers reach logs only through [`crate::domain::PhoneNumber`]'s redacting
//! `Display`; message bodies only at debug level.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub accepted: IntCounter,
    pub rejected: IntCounterVec,
    pub submits: IntCounterVec,
    pub submit_seconds: HistogramVec,
    pub resubmits: IntCounterVec,
    pub throttled: IntCounterVec,
    pub receipts: IntCounterVec,
    pub receipts_unmatched: IntCounterVec,
    pub binds_up: IntGaugeVec,
    pub bind_attempts: IntCounterVec,
    pub in_flight: IntGaugeVec,
    pub malformed_pdus: IntCounterVec,
    pub mo: IntCounterVec,
    pub triggers: IntCounterVec,
    pub number_checks: IntCounterVec,
    pub limiter_waits: IntCounterVec,
    pub scheduler_queued: IntGaugeVec,
    pub queue_depth: IntGauge,
    pub queue_depth_by_class: IntGaugeVec,
    pub requeued_at_start: IntCounter,
    pub message_mix: IntCounterVec,
    pub submit_errors: IntCounterVec,
    pub line_messages: IntCounterVec,
    pub line_segments: IntCounterVec,
    pub opt_out_changes: IntCounterVec,
    pub store_commit_batch: Histogram,
    pub store_commit_seconds: Histogram,
    pub store_commit_errors: IntCounter,
    pub store_wal_frames: IntCounter,
    pub store_wal_restart_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        Self {
            accepted: reg!(
                IntCounter::new(
                    "smsgate_messages_accepted_total",
                    "Messages accepted (202) at the API."
                )
                .expect("valid metric")
            ),
            rejected: reg!(counter_vec(
                "smsgate_messages_rejected_total",
                "Messages refused at the API, by error code.",
                &["reason"]
            )),
            submits: reg!(counter_vec(
                "smsgate_submits_total",
                "submit_sm outcomes by carrier and result (ok, retry, permanent, lost).",
                &["carrier", "result"]
            )),
            submit_seconds: reg!(
                HistogramVec::new(
                    HistogramOpts::new(
                        "smsgate_submit_latency_seconds",
                        "Time from writing submit_sm to its submit_sm_resp."
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0
                    ]),
                    &["carrier"]
                )
                .expect("valid metric")
            ),
            resubmits: reg!(counter_vec(
                "smsgate_resubmits_total",
                "Parts sent again because no submit_sm_resp arrived (timeout, connection loss).",
                &["carrier"]
            )),
            throttled: reg!(counter_vec(
                "smsgate_throttled_total",
                "Throttling answers (ESME_RTHROTTLED, ESME_RMSGQFUL) from carriers.",
                &["carrier"]
            )),
            receipts: reg!(counter_vec(
                "smsgate_receipts_total",
                "Delivery receipts by carrier and state.",
                &["carrier", "state"]
            )),
            receipts_unmatched: reg!(counter_vec(
                "smsgate_receipts_unmatched_total",
                "Receipts whose message id matched no sent part when they arrived (held).",
                &["carrier"]
            )),
            binds_up: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "smsgate_binds_up",
                        "SMPP sessions currently bound, per carrier."
                    ),
                    &["carrier"]
                )
                .expect("valid metric")
            ),
            bind_attempts: reg!(counter_vec(
                "smsgate_bind_attempts_total",
                "Bind attempts by carrier and result (ok, refused, connect_error).",
                &["carrier", "result"]
            )),
            in_flight: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "smsgate_window_in_flight",
                        "submit_sm awaiting a response, per carrier (window occupancy)."
                    ),
                    &["carrier"]
                )
                .expect("valid metric")
            ),
            malformed_pdus: reg!(counter_vec(
                "smsgate_smpp_malformed_pdus_total",
                "PDUs from a carrier that could not be decoded.",
                &["carrier"]
            )),
            mo: reg!(counter_vec(
                "smsgate_mo_total",
                "Inbound deliver_sm (texts, not receipts) by carrier and result \
                 (stored, partial, duplicate, unknown_line, undecodable, store_error).",
                &["carrier", "result"]
            )),
            triggers: reg!(counter_vec(
                "smsgate_triggers_total",
                "Call-center trigger calls by kind and result (sent, duplicate, skipped, or an error code).",
                &["kind", "result"]
            )),
            number_checks: reg!(counter_vec(
                "smsgate_number_checks_total",
                "Number intelligence: cache_hit, cache_miss, and lookup results (textable, not_textable, timeout, error).",
                &["result"]
            )),
            limiter_waits: reg!(counter_vec(
                "smsgate_limiter_waits_total",
                "Messages that had to wait for line or carrier rate tokens, per carrier.",
                &["carrier"]
            )),
            scheduler_queued: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "smsgate_scheduler_queued",
                        "Claimed messages waiting for rate tokens, per carrier."
                    ),
                    &["carrier"]
                )
                .expect("valid metric")
            ),
            queue_depth: reg!(
                IntGauge::new("smsgate_queue_depth", "Messages queued or sending.")
                    .expect("valid metric")
            ),
            queue_depth_by_class: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "smsgate_queue_depth_by_class",
                        "Messages queued or sending, by the rate class of their line (long_code, toll_free, short_code)."
                    ),
                    &["class"]
                )
                .expect("valid metric")
            ),
            requeued_at_start: reg!(
                IntCounter::new(
                    "smsgate_requeued_at_start_total",
                    "Messages found mid-send at start (the last run stopped before recording their outcome) and queued again: the carrier may see them twice."
                )
                .expect("valid metric")
            ),
            submit_errors: reg!(counter_vec(
                "smsgate_submit_errors_total",
                "submit_sm answered with an error, by carrier and command_status name (vendor or unknown statuses: other).",
                &["carrier", "status"]
            )),
            message_mix: reg!(counter_vec(
                "smsgate_messages_accepted_mix_total",
                "Messages accepted at the API by encoding and number of parts (1, 2, 3, 4-6, 7+).",
                &["encoding", "parts"]
            )),
            line_messages: reg!(counter_vec(
                "smsgate_line_messages_total",
                "Messages accepted at the API per sending line (only with admin.line_metrics).",
                &["line"]
            )),
            line_segments: reg!(counter_vec(
                "smsgate_line_segments_total",
                "Segments (parts) of the messages accepted at the API per sending line (only with admin.line_metrics).",
                &["line"]
            )),
            opt_out_changes: reg!(counter_vec(
                "smsgate_opt_out_changes_total",
                "Opt-out list changes (one per line and number) by change (opt_out, opt_in) and source (keyword, api, import).",
                &["change", "source"]
            )),
            store_commit_batch: reg!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "smsgate_store_commit_batch_size",
                        "Operations folded into one store transaction (group commit)."
                    )
                    .buckets(vec![
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0
                    ])
                )
                .expect("valid metric")
            ),
            store_commit_seconds: reg!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "smsgate_store_commit_seconds",
                        "Time to apply and commit (fsync) one store transaction."
                    )
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 1.0
                    ])
                )
                .expect("valid metric")
            ),
            store_commit_errors: reg!(
                IntCounter::new(
                    "smsgate_store_commit_errors_total",
                    "Store transactions that failed to commit."
                )
                .expect("valid metric")
            ),
            store_wal_frames: reg!(
                IntCounter::new(
                    "smsgate_store_wal_frames_total",
                    "Database pages the store's commits wrote to the WAL (one frame per page a commit changed): the store's write volume."
                )
                .expect("valid metric")
            ),
            store_wal_restart_seconds: reg!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "smsgate_store_wal_restart_seconds",
                        "Time the store writer spent on each checkpoint it ran to start the WAL over (one that readers kept from finishing included); writes wait meanwhile."
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0
                    ])
                )
                .expect("valid metric")
            ),
            registry,
        }
    }

    /// Counts an accepted message in the encoding/parts mix.
    pub fn count_mix(&self, encoding: &str, parts: u32) {
        let parts = match parts {
            0 | 1 => "1",
            2 => "2",
            3 => "3",
            4..=6 => "4-6",
            _ => "7+",
        };
        self.message_mix.with_label_values(&[encoding, parts]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global tracing subscriber (`RUST_LOG` overrides `default_filter`).
pub fn init_logging(default_filter: &str) {
    init_logging_as(default_filter, LogFormat::Text);
}

pub fn init_logging_as(default_filter: &str, format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = match format {
        // Colours only on a terminal: journald and log files get plain text.
        LogFormat::Text => fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
        LogFormat::Json => fmt()
            .json()
            .with_env_filter(filter)
            .with_target(false)
            .with_current_span(false)
            .try_init(),
    };
}
