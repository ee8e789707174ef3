//! Simulator behaviour: the typed [`SimConfig`] used at run time, and [`SimSettings`], the same
//! knobs as they appear in a TOML file (`smsc-sim --config FILE`, or a simulated carrier).

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use serde::Deserialize;

/// How message ids are rendered in `submit_sm_resp` and in receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdFormat {
    /// Lower-case hexadecimal, e.g. `1a2b3c`.
    #[default]
    Hex,
    /// Decimal, e.g. `1715004`.
    Decimal,
}

impl IdFormat {
    /// Renders message number `n` in this format.
    pub fn render(self, n: u64) -> String {
        match self {
            IdFormat::Hex => format!("{n:x}"),
            IdFormat::Decimal => n.to_string(),
        }
    }

    /// The other format: the carrier quirk of hex ids in responses and decimal ids in receipts.
    pub fn other(self) -> Self {
        match self {
            IdFormat::Hex => IdFormat::Decimal,
            IdFormat::Decimal => IdFormat::Hex,
        }
    }
}

impl FromStr for IdFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "hex" => Ok(IdFormat::Hex),
            "decimal" | "dec" => Ok(IdFormat::Decimal),
            other => Err(format!(
                "unknown id format {other:?} (expected hex or decimal)"
            )),
        }
    }
}

/// The final state a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptState {
    Delivered,
    Undeliverable,
    Expired,
    Rejected,
    Unknown,
}

impl ReceiptState {
    /// The `stat:` word of the receipt text.
    pub fn stat(self) -> &'static str {
        match self {
            ReceiptState::Delivered => "DELIVRD",
            ReceiptState::Undeliverable => "UNDELIV",
            ReceiptState::Expired => "EXPIRED",
            ReceiptState::Rejected => "REJECTD",
            ReceiptState::Unknown => "UNKNOWN",
        }
    }

    /// The `message_state` TLV value (SMPP 3.4 section 5.2.28).
    pub fn message_state(self) -> u8 {
        match self {
            ReceiptState::Delivered => 2,
            ReceiptState::Expired => 3,
            ReceiptState::Undeliverable => 5,
            ReceiptState::Unknown => 7,
            ReceiptState::Rejected => 8,
        }
    }

    pub fn is_delivered(self) -> bool {
        self == ReceiptState::Delivered
    }

    /// Parses a state name; `none` (never send a receipt) gives `Ok(None)`.
    pub fn parse_optional(s: &str) -> Result<Option<Self>, String> {
        let state = match s.to_ascii_lowercase().as_str() {
            "none" | "never" => return Ok(None),
            "delivered" | "delivrd" => ReceiptState::Delivered,
            "undeliverable" | "undeliv" => ReceiptState::Undeliverable,
            "expired" => ReceiptState::Expired,
            "rejected" | "rejectd" => ReceiptState::Rejected,
            "unknown" => ReceiptState::Unknown,
            other => {
                return Err(format!(
                    "unknown receipt state {other:?} (expected delivered, undeliverable, \
                     expired, rejected, unknown or none)"
                ));
            }
        };
        Ok(Some(state))
    }
}

/// What happens after a submit that asked for a receipt (`registered_delivery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptMode {
    /// The state to report; `None` never sends a receipt.
    pub state: Option<ReceiptState>,
    /// Time between the submit and its receipt.
    pub delay: Duration,
    /// `err:` and `network_error_code` for states other than delivered.
    pub error_code: u16,
}

impl Default for ReceiptMode {
    fn default() -> Self {
        Self {
            state: Some(ReceiptState::Delivered),
            delay: Duration::ZERO,
            // GSM MAP "unknown subscriber": the most common real reason for UNDELIV.
            error_code: 1,
        }
    }
}

/// Everything that shapes the simulator's answers. Change it at run time with
/// [`Simulator::set_config`](super::Simulator::set_config); sessions pick changes up on their
/// next read.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Credentials a bind must carry; others get `ESME_RINVSYSID` / `ESME_RINVPASWD`.
    pub system_id: String,
    pub password: String,
    /// A PDU whose `command_length` is larger closes its connection.
    pub max_command_length: usize,
    /// Delay before each `submit_sm_resp`.
    pub response_delay: Duration,
    /// When set, each response delay is drawn uniformly from `response_delay..=max`
    /// (responses then come back out of order, as from a real SMSC cluster).
    pub response_delay_max: Option<Duration>,
    pub receipt: ReceiptMode,
    pub message_id_format: IdFormat,
    /// Receipts carry the id in the other format (hex in the response, decimal in the receipt).
    pub receipt_id_other_format: bool,
    /// Fraction of submits answered `ESME_RTHROTTLED` (0.0..=1.0).
    pub throttle_fraction: f64,
    /// Fraction of submits answered `ESME_RMSGQFUL` (0.0..=1.0).
    pub msgqful_fraction: f64,
    /// `(destination prefix, command_status)`: submits to these numbers are answered with
    /// that error. A leading `+` on either side is ignored.
    pub error_prefixes: Vec<(String, u32)>,
    /// `(destination prefix, error code)`: submits to these numbers are accepted but their
    /// receipt says UNDELIV with that error (e.g. a landline).
    pub receipt_error_prefixes: Vec<(String, u16)>,
    /// Send the receipt before the `submit_sm_resp` (a quirk some carriers have).
    pub receipt_before_response: bool,
    /// Send every receipt twice.
    pub duplicate_receipts: bool,
    /// Drop a connection on every Nth submit (counted across the simulator), without
    /// answering that submit.
    pub drop_every: Option<u64>,
    /// Answer binds with `ESME_RBINDFAIL` for this long after start.
    pub refuse_binds_for: Option<Duration>,
    /// The first message number; `None` derives it from the clock so that ids stay unique
    /// across restarts of the simulator.
    pub first_message_id: Option<u64>,
    /// How many submits [`Simulator::submits`](super::Simulator::submits) keeps (the most
    /// recent ones); bounds memory in long runs. 0 keeps none and saves the copying, which
    /// is what load tests want (`smsc-sim` uses 0).
    pub submit_log_capacity: usize,
    /// How long [`Simulator::inject_mo`](super::Simulator::inject_mo) waits for its
    /// `deliver_sm_resp`.
    pub mo_ack_timeout: Duration,
    /// When a receipt is refused (`deliver_sm_resp` with an error), when to try again.
    pub receipt_retry_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            system_id: "smsgate".into(),
            password: "secret".into(),
            max_command_length: 4096,
            response_delay: Duration::ZERO,
            response_delay_max: None,
            receipt: ReceiptMode::default(),
            message_id_format: IdFormat::Hex,
            receipt_id_other_format: false,
            throttle_fraction: 0.0,
            msgqful_fraction: 0.0,
            error_prefixes: Vec::new(),
            receipt_error_prefixes: Vec::new(),
            receipt_before_response: false,
            duplicate_receipts: false,
            drop_every: None,
            refuse_binds_for: None,
            first_message_id: None,
            submit_log_capacity: 100_000,
            mo_ack_timeout: Duration::from_secs(10),
            receipt_retry_delay: Duration::from_secs(1),
        }
    }
}

impl SimConfig {
    /// Checks the values a typo could make nonsensical.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &'static str, message: String| ConfigError::Invalid { field, message };
        for (field, value) in [
            ("throttle_fraction", self.throttle_fraction),
            ("msgqful_fraction", self.msgqful_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(field, format!("{value} is not within 0.0..=1.0")));
            }
        }
        if self.max_command_length < 16 {
            return Err(invalid(
                "max_command_length",
                format!(
                    "{} is below the 16-byte PDU header",
                    self.max_command_length
                ),
            ));
        }
        if self.drop_every == Some(0) {
            return Err(invalid("drop_every", "must be at least 1".into()));
        }
        if let Some(max) = self.response_delay_max
            && max < self.response_delay
        {
            return Err(invalid(
                "response_delay_max",
                "must not be below response_delay".into(),
            ));
        }
        if self
            .error_prefixes
            .iter()
            .any(|(p, _)| normalise(p).is_empty())
            || self
                .receipt_error_prefixes
                .iter()
                .any(|(p, _)| normalise(p).is_empty())
        {
            return Err(invalid("error_prefixes", "a prefix is empty".into()));
        }
        Ok(())
    }

    /// The submit error configured for this destination, if any.
    pub(crate) fn error_for(&self, destination: &str) -> Option<u32> {
        let dest = normalise(destination);
        self.error_prefixes
            .iter()
            .find(|(prefix, _)| dest.starts_with(normalise(prefix)))
            .map(|(_, status)| *status)
    }

    /// The receipt error configured for this destination, if any.
    pub(crate) fn receipt_error_for(&self, destination: &str) -> Option<u16> {
        let dest = normalise(destination);
        self.receipt_error_prefixes
            .iter()
            .find(|(prefix, _)| dest.starts_with(normalise(prefix)))
            .map(|(_, code)| *code)
    }
}

/// Carriers disagree on whether numbers carry the `+`; prefixes match either way.
fn normalise(number: &str) -> &str {
    number.trim().trim_start_matches('+')
}

/// A bad settings file or value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Returned by [`SimSettings::from_toml`] for a file that is not valid TOML for these settings.
    #[error("{0}")]
    Parse(String),
    /// Returned by [`SimSettings::apply`] and [`SimConfig::validate`].
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// `prefix = status` entry of `error_prefixes` in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixStatus {
    pub prefix: String,
    /// An SMPP `command_status`, e.g. `0x0B` (ESME_RINVDSTADR).
    pub status: u32,
}

/// `prefix = error` entry of `receipt_error_prefixes` in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixError {
    pub prefix: String,
    pub error: u16,
}

/// The simulator's settings as written in TOML; every key is optional and named like the
/// matching `smsc-sim` flag. Durations are humantime strings (`"200ms"`).
///
/// ```toml
/// listen = "127.0.0.1:2775"
/// system_id = "smsgate"
/// password = "secret"
/// receipt_state = "delivered"
/// receipt_delay = "200ms"
/// error_prefixes = [{ prefix = "1555000", status = 0x0B }]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    pub listen: Option<SocketAddr>,
    pub system_id: Option<String>,
    pub password: Option<String>,
    pub max_command_length: Option<usize>,
    pub response_delay: Option<String>,
    pub response_delay_max: Option<String>,
    /// delivered, undeliverable, expired, rejected, unknown or none.
    pub receipt_state: Option<String>,
    pub receipt_delay: Option<String>,
    pub receipt_error_code: Option<u16>,
    /// hex or decimal.
    pub id_format: Option<String>,
    pub receipt_id_other_format: Option<bool>,
    pub throttle_fraction: Option<f64>,
    pub msgqful_fraction: Option<f64>,
    pub error_prefixes: Option<Vec<PrefixStatus>>,
    pub receipt_error_prefixes: Option<Vec<PrefixError>>,
    pub receipt_before_response: Option<bool>,
    pub duplicate_receipts: Option<bool>,
    pub drop_every: Option<u64>,
    pub refuse_binds_for: Option<String>,
    pub first_message_id: Option<u64>,
    pub submit_log_capacity: Option<usize>,
    /// Mobile-originated traffic generator (CLI only): messages per second.
    pub mo_rate: Option<f64>,
    pub mo_from: Option<String>,
    pub mo_to: Option<String>,
    /// `{seq}` is replaced by the message's sequence number.
    pub mo_text: Option<String>,
    /// Print a counts summary this often (CLI only).
    pub stats_every: Option<String>,
}

impl SimSettings {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Writes every setting present here over `cfg`, then validates the result.
    pub fn apply(&self, cfg: &mut SimConfig) -> Result<(), ConfigError> {
        if let Some(v) = &self.system_id {
            cfg.system_id = v.clone();
        }
        if let Some(v) = &self.password {
            cfg.password = v.clone();
        }
        if let Some(v) = self.max_command_length {
            cfg.max_command_length = v;
        }
        if let Some(v) = &self.response_delay {
            cfg.response_delay = duration("response_delay", v)?;
        }
        if let Some(v) = &self.response_delay_max {
            cfg.response_delay_max = Some(duration("response_delay_max", v)?);
        }
        if let Some(v) = &self.receipt_state {
            cfg.receipt.state =
                ReceiptState::parse_optional(v).map_err(|message| ConfigError::Invalid {
                    field: "receipt_state",
                    message,
                })?;
        }
        if let Some(v) = &self.receipt_delay {
            cfg.receipt.delay = duration("receipt_delay", v)?;
        }
        if let Some(v) = self.receipt_error_code {
            cfg.receipt.error_code = v;
        }
        if let Some(v) = &self.id_format {
            cfg.message_id_format = v.parse().map_err(|message| ConfigError::Invalid {
                field: "id_format",
                message,
            })?;
        }
        if let Some(v) = self.receipt_id_other_format {
            cfg.receipt_id_other_format = v;
        }
        if let Some(v) = self.throttle_fraction {
            cfg.throttle_fraction = v;
        }
        if let Some(v) = self.msgqful_fraction {
            cfg.msgqful_fraction = v;
        }
        if let Some(v) = &self.error_prefixes {
            cfg.error_prefixes = v.iter().map(|p| (p.prefix.clone(), p.status)).collect();
        }
        if let Some(v) = &self.receipt_error_prefixes {
            cfg.receipt_error_prefixes = v.iter().map(|p| (p.prefix.clone(), p.error)).collect();
        }
        if let Some(v) = self.receipt_before_response {
            cfg.receipt_before_response = v;
        }
        if let Some(v) = self.duplicate_receipts {
            cfg.duplicate_receipts = v;
        }
        if let Some(v) = self.drop_every {
            cfg.drop_every = Some(v);
        }
        if let Some(v) = &self.refuse_binds_for {
            cfg.refuse_binds_for = Some(duration("refuse_binds_for", v)?);
        }
        if let Some(v) = self.first_message_id {
            cfg.first_message_id = Some(v);
        }
        if let Some(v) = self.submit_log_capacity {
            cfg.submit_log_capacity = v;
        }
        cfg.validate()
    }
}

fn duration(field: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| ConfigError::Invalid {
        field,
        message: format!("{text:?}: {e}"),
    })
}

impl fmt::Display for IdFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdFormat::Hex => "hex",
            IdFormat::Decimal => "decimal",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_file_overrides_only_the_keys_it_names() {
        let settings = SimSettings::from_toml(
            r#"
            password = "pw"
            receipt_state = "undeliverable"
            receipt_delay = "250ms"
            id_format = "decimal"
            error_prefixes = [{ prefix = "+1555000", status = 0x0B }]
            drop_every = 10
            "#,
        )
        .unwrap();
        let mut cfg = SimConfig::default();
        settings.apply(&mut cfg).unwrap();
        assert_eq!(cfg.system_id, "smsgate");
        assert_eq!(cfg.password, "pw");
        assert_eq!(cfg.receipt.state, Some(ReceiptState::Undeliverable));
        assert_eq!(cfg.receipt.delay, Duration::from_millis(250));
        assert_eq!(cfg.message_id_format, IdFormat::Decimal);
        assert_eq!(cfg.error_for("15550001234"), Some(0x0B));
        assert_eq!(cfg.error_for("+15550001234"), Some(0x0B));
        assert_eq!(cfg.error_for("15551001234"), None);
        assert_eq!(cfg.drop_every, Some(10));
    }

    #[test]
    fn settings_file_with_an_unknown_key_is_rejected() {
        let err = SimSettings::from_toml("pasword = \"x\"").unwrap_err();
        assert!(err.to_string().contains("pasword"), "{err}");
    }

    #[test]
    fn receipt_state_none_means_never_send_a_receipt() {
        let mut cfg = SimConfig::default();
        SimSettings {
            receipt_state: Some("none".into()),
            ..Default::default()
        }
        .apply(&mut cfg)
        .unwrap();
        assert_eq!(cfg.receipt.state, None);
    }

    #[test]
    fn out_of_range_fraction_and_bad_duration_are_rejected() {
        let mut cfg = SimConfig::default();
        let bad_fraction = SimSettings {
            throttle_fraction: Some(1.5),
            ..Default::default()
        };
        assert!(bad_fraction.apply(&mut cfg).is_err());
        let bad_duration = SimSettings {
            receipt_delay: Some("soon".into()),
            ..Default::default()
        };
        let err = bad_duration.apply(&mut SimConfig::default()).unwrap_err();
        assert!(err.to_string().contains("receipt_delay"), "{err}");
    }

    #[test]
    fn ids_render_in_hex_and_decimal() {
        assert_eq!(IdFormat::Hex.render(0x1a2b3c), "1a2b3c");
        assert_eq!(IdFormat::Decimal.render(0x1a2b3c), "1715004");
        assert_eq!(IdFormat::Hex.other(), IdFormat::Decimal);
    }
}
