//! The config file as serde sees it. Fields whose values are checked against each other
//! carry their span so errors can name the line.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub apps: Vec<RawApp>,
    #[serde(default)]
    pub carriers: Vec<RawCarrier>,
    #[serde(default)]
    pub lines: Vec<RawLine>,
    #[serde(default)]
    pub opt_out: Option<Spanned<crate::policy::KeywordConfig>>,
    #[serde(default)]
    pub inbound: RawInbound,
    #[serde(default)]
    pub triggers: Vec<RawTrigger>,
    #[serde(default)]
    pub numbers: RawNumbers,
    #[serde(default)]
    pub webhooks: RawWebhooks,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhooks {
    /// An event still undelivered this long after it was created becomes a dead letter.
    pub max_age: Dur,
    pub initial_backoff: Dur,
    pub max_backoff: Dur,
    pub connect_timeout: Dur,
    pub request_timeout: Dur,
    /// Requests in flight per app endpoint.
    pub concurrency: usize,
    /// `410 Gone` dead-letters the event instead of retrying.
    pub disable_on_410: bool,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        let d = crate::webhook::WebhookConfig::default();
        Self {
            max_age: Dur(d.max_age),
            initial_backoff: Dur(d.initial_backoff),
            max_backoff: Dur(d.max_backoff),
            connect_timeout: Dur(d.connect_timeout),
            request_timeout: Dur(d.request_timeout),
            concurrency: d.per_endpoint_concurrency,
            disable_on_410: d.disable_on_410,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNumbers {
    /// How long a carrier's "cannot take texts" mark lasts (numbers get ported).
    pub not_textable_ttl: Dur,
    /// Line-type lookup: GET this URL with `{number}` replaced by the E.164 number.
    pub lookup_url: Option<Spanned<String>>,
    /// Sent as `Authorization: Bearer ...` to the lookup service (`env:NAME` allowed).
    pub lookup_token: Option<Spanned<String>>,
    pub lookup_timeout: Dur,
    pub lookup_concurrency: usize,
    /// How long a lookup answer is trusted.
    pub cache_ttl: Dur,
    /// Where the line type is in the lookup's JSON answer, as a dotted path.
    pub line_type_field: String,
    /// Line types that can take texts; any other answer refuses the number.
    pub textable_types: Vec<String>,
}

impl Default for RawNumbers {
    fn default() -> Self {
        Self {
            not_textable_ttl: Dur(Duration::from_secs(90 * 86400)),
            lookup_url: None,
            lookup_token: None,
            lookup_timeout: Dur(Duration::from_secs(2)),
            lookup_concurrency: 16,
            cache_ttl: Dur(Duration::from_secs(30 * 86400)),
            line_type_field: "line_type".into(),
            textable_types: vec!["mobile".into(), "voip".into()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    CallToText,
    AbandonedCall,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallToText => "call_to_text",
            Self::AbandonedCall => "abandoned_call",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub id: Spanned<String>,
    /// The secret in the trigger URL (at least 32 characters; `env:NAME` allowed).
    pub token: Spanned<String>,
    pub kind: TriggerKind,
    pub line: Spanned<String>,
    #[serde(default)]
    pub language: Option<String>,
    pub template: Spanned<String>,
    /// Outside these hours the trigger sends nothing (answers `skipped`).
    #[serde(default)]
    pub active_hours: Option<Spanned<crate::policy::HoursConfig>>,
    /// A caller triggering again (any trigger of the same line) within this window gets no
    /// second text.
    #[serde(default = "default_trigger_window")]
    pub dedupe_window: Dur,
}

fn default_trigger_window() -> Dur {
    Dur(Duration::from_secs(600))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawInbound {
    /// A long inbound text still missing parts after this long is delivered flagged incomplete.
    pub reassembly_timeout: Dur,
}

impl Default for RawInbound {
    fn default() -> Self {
        Self {
            reassembly_timeout: Dur(Duration::from_secs(300)),
        }
    }
}

/// What `data_coding` 0 ("SMSC default alphabet") means on a carrier's inbound texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MoAlphabet {
    #[default]
    Gsm7,
    Gsm7Packed,
    Latin1,
    Ascii,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub listen: Spanned<String>,
    /// Serve HTTPS with this certificate chain and key (PEM); re-read on reload.
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub max_body_bytes: usize,
    pub concurrency_limit: usize,
    pub request_timeout: Dur,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, "127.0.0.1:8080".into()),
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 64 * 1024,
            concurrency_limit: 4096,
            request_timeout: Dur(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: Spanned<String>,
    /// Export per-line series (`smsgate_line_*`). Default: on with at most 1,000 lines.
    pub line_metrics: Option<bool>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, "127.0.0.1:9090".into()),
            line_metrics: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub path: String,
    pub commit_batch_max: usize,
    /// Refuse writes beyond this database size, as a full disk would (0: no limit).
    pub max_size_mb: u64,
    /// Texts older than this are pruned, bodies first (default: kept forever). The opt-out
    /// list is never pruned.
    pub retention: Option<Dur>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: "data/smsgate.db".into(),
            commit_batch_max: 4096,
            max_size_mb: 0,
            retention: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub id: Spanned<String>,
    pub api_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub webhook_url: Option<Spanned<String>>,
    #[serde(default)]
    pub webhook_secrets: Vec<Spanned<String>>,
    /// Which `message.status` events go out; absent: every state change.
    #[serde(default)]
    pub status_events: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindType {
    /// Each bind sends and receives (receipts, MO) on one connection.
    Transceiver,
    /// Each bind is a pair: a transmitter for submits and a receiver for receipts and MO.
    TransmitterReceiver,
}

/// How a carrier writes message ids, so receipts and `submit_sm_resp` ids can be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// Compare as given, ignoring case and leading zeros.
    #[default]
    AsIs,
    /// `submit_sm_resp` ids are hex, receipts give them in decimal.
    HexResponseDecimalReceipt,
    /// `submit_sm_resp` ids are decimal, receipts give them in hex.
    DecimalResponseHexReceipt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateClass {
    #[default]
    LongCode,
    TollFree,
    ShortCode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCarrier {
    pub id: Spanned<String>,
    #[serde(default = "default_host")]
    pub host: String,
    pub port: u16,
    /// `smpps`: TLS to the carrier.
    #[serde(default)]
    pub tls: bool,
    /// CA certificates (PEM) to trust instead of the system's roots.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// Name to verify the carrier's certificate against (default: `host`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Client certificate chain and key (PEM), for carriers that require one.
    #[serde(default)]
    pub tls_client_cert: Option<String>,
    #[serde(default)]
    pub tls_client_key: Option<String>,
    pub system_id: Spanned<String>,
    pub password: Spanned<String>,
    #[serde(default)]
    pub system_type: String,
    #[serde(default = "default_bind_type")]
    pub bind_type: BindType,
    /// SMPP interface version announced in the bind: "3.4" (default) or "5.0".
    #[serde(default)]
    pub interface_version: Option<Spanned<String>>,
    /// The bind's address_range: which MO destinations the carrier routes to this bind
    /// (often empty; some carriers want a regular expression or a prefix).
    #[serde(default)]
    pub address_range: Option<Spanned<String>>,
    #[serde(default = "one")]
    pub binds: Spanned<usize>,
    #[serde(default = "default_window")]
    pub window: Spanned<usize>,
    #[serde(default = "default_enquire")]
    pub enquire_link: Dur,
    #[serde(default = "default_resp_timeout")]
    pub response_timeout: Dur,
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: Dur,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Dur,
    #[serde(default = "default_max_command_length")]
    pub max_command_length: usize,
    #[serde(default)]
    pub dlr_id_format: IdFormat,
    #[serde(default)]
    pub simulator: bool,
    #[serde(default)]
    pub simulator_receipt_delay: Dur,
    #[serde(default)]
    pub mo_default_alphabet: MoAlphabet,
    /// How parts of long texts are tied together: udh8 (default), udh16, sar, payload.
    #[serde(default)]
    pub concat: ConcatMethod,
    /// National language shift tables the carrier supports: turkish, spanish, portuguese.
    #[serde(default)]
    pub national_languages: Vec<NationalLanguageName>,
    /// The carrier accepts Latin-1 (data_coding 3).
    #[serde(default)]
    pub latin1: bool,
    /// Most parts a message may have (default 10).
    #[serde(default = "default_max_parts")]
    pub max_parts: usize,
    /// How long this carrier may be without a bind before lines listing fallback carriers use
    /// them.
    #[serde(default = "default_failover_after")]
    pub failover_after: Dur,
    /// Most submits per second the carrier contract allows (0: no limit).
    #[serde(default)]
    pub max_rate: f64,
    /// What this carrier's statuses mean, overriding the built-in table: keys are
    /// command_status values ("0x45" or "69"), values "throttled", "temporary" or "permanent".
    #[serde(default)]
    pub status_overrides: std::collections::BTreeMap<String, Spanned<StatusMeaning>>,
    /// `submit_sm_resp` statuses that mean "this number cannot take texts" on this carrier.
    #[serde(default)]
    pub not_textable_statuses: Vec<u32>,
    /// Receipt error codes (`err:` / network_error_code) that mean the same.
    #[serde(default)]
    pub not_textable_receipt_errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLine {
    pub number: Spanned<String>,
    pub app: Spanned<String>,
    pub carrier: Spanned<String>,
    #[serde(default)]
    pub rate_class: RateClass,
    /// Answer to HELP on this line (default: `[opt_out].help_reply`).
    #[serde(default)]
    pub help_text: Option<String>,
    /// A message not sent within this long after it was accepted expires instead of going
    /// out late (default 24h; a submit's `validity_secs` overrides it).
    #[serde(default = "default_validity")]
    pub validity: Dur,
    /// Segments per second this line may send (default by `rate_class`).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Segments that may go back to back after the line was idle (default: a tenth of a
    /// second's worth, at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Replace look-alike characters (curly quotes, long dashes...) with GSM-7 ones when that
    /// avoids UCS-2 or saves parts; the API answer says when it happened.
    #[serde(default)]
    pub smart_encoding: bool,
    /// Carriers that take over this line's messages when its carrier has had no bound session
    /// for its `failover_after`.
    #[serde(default)]
    pub fallback_carriers: Vec<Spanned<String>>,
    /// Refuse sends when the line-type lookup cannot answer (default: send anyway).
    #[serde(default)]
    pub lookup_fail_closed: bool,
    /// Opening hours, after-hours reply and staff notification.
    #[serde(default)]
    pub hours: Option<Spanned<crate::policy::HoursConfig>>,
}

/// A duration written like "30s", "250ms" or "1h 30m".
#[derive(Debug, Clone, Copy, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusMeaning {
    Throttled,
    Temporary,
    Permanent,
}

fn default_max_parts() -> usize {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConcatMethod {
    #[default]
    Udh8,
    Udh16,
    Sar,
    Payload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NationalLanguageName {
    Turkish,
    Spanish,
    Portuguese,
}

fn default_failover_after() -> Dur {
    Dur(Duration::from_secs(30))
}

fn default_validity() -> Dur {
    Dur(Duration::from_secs(24 * 3600))
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_bind_type() -> BindType {
    BindType::Transceiver
}
fn one() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}
fn default_window() -> Spanned<usize> {
    Spanned::new(0..0, 64)
}
fn default_enquire() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_resp_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_reconnect_min() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_reconnect_max() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_max_command_length() -> usize {
    4096
}
