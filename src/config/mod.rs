//! Configuration: TOML with `deny_unknown_fields`, human durations ("30s"), secrets as
//! `env:NAME`. [`load`] parses (serde types in [`raw`]) and validates into the typed
//! [`Config`] the rest of the crate uses, reporting every problem with its line.

mod raw;
mod validate;

use std::{collections::HashMap, fmt, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use crate::domain::PhoneNumber;

pub use raw::{BindType, IdFormat, MoAlphabet, RateClass, TriggerKind};
pub use validate::validate;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: Http,
    pub admin: Admin,
    pub store: Store,
    pub apps: Vec<Arc<App>>,
    pub carriers: Vec<Arc<Carrier>>,
    /// Lines by E.164 number.
    pub lines: HashMap<PhoneNumber, Arc<Line>>,
    /// Opt-out keywords and their replies.
    pub keywords: Arc<crate::policy::Keywords>,
    pub inbound: Inbound,
    pub triggers: Vec<Arc<Trigger>>,
    pub numbers: Numbers,
    pub webhooks: crate::webhook::WebhookConfig,
}

/// Number intelligence settings.
#[derive(Clone)]
pub struct Numbers {
    pub not_textable_ttl: Duration,
    pub lookup: Option<Lookup>,
}

impl fmt::Debug for Numbers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Numbers")
            .field("not_textable_ttl", &self.not_textable_ttl)
            .field("lookup", &self.lookup.as_ref().map(|l| &l.url))
            .finish()
    }
}

/// A line-type lookup service.
#[derive(Clone)]
pub struct Lookup {
    pub url: String,
    pub token: Option<String>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub cache_ttl: Duration,
    pub line_type_field: String,
    pub textable_types: Vec<String>,
}

/// A call-center trigger: the phone system calls `POST /v1/triggers/{token}` with the caller's
/// number and the caller gets `template` from `line`.
#[derive(Clone)]
pub struct Trigger {
    pub id: String,
    pub token: String,
    pub kind: TriggerKind,
    pub line: PhoneNumber,
    pub language: Option<String>,
    pub template: String,
    pub active_hours: Option<crate::policy::Hours>,
    pub dedupe_window: Duration,
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trigger")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Inbound {
    pub reassembly_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Http {
    pub listen: SocketAddr,
    /// HTTPS: the server config built from `tls_cert`/`tls_key`, and their paths (for reload).
    pub tls: Option<(Arc<rustls::ServerConfig>, PathBuf, PathBuf)>,
    pub max_body_bytes: usize,
    pub concurrency_limit: usize,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Per-line series on /metrics (one per configured line).
    pub line_metrics: bool,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub path: PathBuf,
    /// Most writes folded into one transaction (group commit).
    pub commit_batch_max: usize,
    /// Refuse writes (503 at the API) once the database is this large.
    pub max_size_mb: Option<u64>,
    pub retention: Option<Duration>,
}

#[derive(Clone)]
pub struct App {
    pub id: String,
    pub api_keys: Vec<String>,
    pub webhook_url: Option<String>,
    /// Signing keys (decoded `whsec_` secrets); the first signs, all are sent while rotating.
    pub webhook_secrets: Vec<Vec<u8>>,
    /// The states whose `message.status` events this app gets (default: all of them).
    pub status_events: crate::domain::StateSet,
}

/// Hand-written so api keys and secrets never reach a log through `{:?}`.
impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("webhook_url", &self.webhook_url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Carrier {
    pub id: String,
    pub host: String,
    pub port: u16,
    /// TLS (`smpps`): the client config and the name to verify.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub bind_type: BindType,
    /// `interface_version` of the bind PDUs (0x34 for 3.4, 0x50 for 5.0).
    pub interface_version: u8,
    pub address_range: String,
    /// Everything a session is opened with (address, TLS files, credentials, bind options,
    /// window and timers): when it changes on reload, the carrier's binds are renewed.
    pub connection: String,
    pub binds: usize,
    pub window: usize,
    pub enquire_link: Duration,
    pub response_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub max_command_length: usize,
    pub dlr_id_format: IdFormat,
    /// Start the built-in simulator on host:port (development and demos).
    pub simulator: bool,
    /// Simulator receipt delay when `simulator` is set.
    pub simulator_receipt_delay: Duration,
    pub mo_default_alphabet: MoAlphabet,
    pub not_textable_statuses: Vec<u32>,
    /// Carrier-specific meanings of command statuses (over the built-in table).
    pub status_overrides: HashMap<u32, crate::smpp::status::StatusClass>,
    pub failover_after: Duration,
    /// Encoding and concatenation this carrier supports.
    pub segment: crate::segment::Options,
    /// Submits per second allowed by the carrier (None: no limit).
    pub max_rate: Option<f64>,
    pub not_textable_receipt_errors: Vec<String>,
    /// From `[numbers]`: how long a mark from this carrier lasts.
    pub not_textable_ttl: Duration,
}

impl Carrier {
    /// What a command status from this carrier means: its overrides, else the built-in table.
    pub fn classify(&self, status: u32) -> crate::smpp::status::StatusClass {
        self.status_overrides
            .get(&status)
            .copied()
            .unwrap_or_else(|| crate::smpp::status::classify(status))
    }
}

impl fmt::Debug for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Carrier")
            .field("id", &self.id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("system_id", &self.system_id)
            .field("window", &self.window)
            .field("simulator", &self.simulator)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Line {
    pub number: PhoneNumber,
    pub app: String,
    pub carrier: String,
    /// Segmentation for this line: its carrier's options plus the line's smart encoding.
    pub segment: crate::segment::Options,
    /// Carriers used, in order, while `carrier` has been unbound for its `failover_after`.
    pub fallback_carriers: Vec<String>,
    pub rate_class: RateClass,
    pub help_text: Option<String>,
    pub lookup_fail_closed: bool,
    pub validity: Duration,
    /// Segments per second and burst.
    pub rate: crate::ratelimit::LineLimit,
    pub hours: Option<crate::policy::Hours>,
    /// On-call number told about after-hours texts.
    pub staff_notify: Option<PhoneNumber>,
}

/// The config in force, swapped whole on reload; readers take a cheap snapshot per use.
#[derive(Clone)]
pub struct Live(Arc<std::sync::RwLock<Arc<Config>>>);

impl Live {
    pub fn new(config: Arc<Config>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(config)))
    }

    pub fn get(&self) -> Arc<Config> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, config: Arc<Config>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

/// One problem found in a config file, with the 1-based line it was found on when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub path: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match e.line {
                Some(line) => write!(f, "{}:{}: {}", self.path, line, e.message)?,
                None => write!(f, "{}: {}", self.path, e.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and validates a config file.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        path: shown.clone(),
        errors: vec![ConfigError {
            line: None,
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse(&text).map_err(|errors| ConfigErrors {
        path: shown,
        errors,
    })
}

/// Parses and validates config text (tests and `check-config` use this directly).
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
        vec![ConfigError {
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().to_owned(),
        }]
    })?;
    validate(text, raw)
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
