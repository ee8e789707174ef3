//! The `smsc-sim` command line: flags, the settings file, the MO traffic generator and the
//! periodic counts line. `src/bin/smsc-sim.rs` only parses, binds and waits for Ctrl-C.

use std::{future::Future, net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use tokio::{net::TcpListener, task::JoinSet, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{
    ConfigError, MoMessage, PrefixError, PrefixStatus, SimConfig, SimError, SimSettings, SimStats,
    Simulator,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:2775";

/// SMPP 3.4 SMSC simulator: binds, submits, receipts and MO traffic on demand.
///
/// Every flag can also be set in a TOML file (--config) under the same name with `_` for
/// `-`; flags win over the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "smsc-sim", version)]
pub struct Args {
    /// Address to listen on [default: 127.0.0.1:2775].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TOML file with the same settings (unknown keys are an error).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// system_id a bind must carry [default: smsgate].
    #[arg(long)]
    pub system_id: Option<String>,
    /// Password a bind must carry [default: secret].
    #[arg(long)]
    pub password: Option<String>,
    /// Largest accepted command_length; a larger one closes the connection [default: 4096].
    #[arg(long)]
    pub max_command_length: Option<usize>,
    /// Delay before each submit_sm_resp, e.g. 5ms [default: 0s].
    #[arg(long, value_name = "DURATION")]
    pub response_delay: Option<String>,
    /// Draw each response delay uniformly up to this.
    #[arg(long, value_name = "DURATION")]
    pub response_delay_max: Option<String>,
    /// Delay between a submit and its receipt, e.g. 200ms [default: 0s].
    #[arg(long, value_name = "DURATION")]
    pub receipt_delay: Option<String>,
    /// delivered, undeliverable, expired, rejected, unknown, or none (never send receipts).
    #[arg(long, value_name = "STATE")]
    pub receipt_state: Option<String>,
    /// err: code of receipts that are not delivered [default: 1].
    #[arg(long)]
    pub receipt_error_code: Option<u16>,
    /// hex or decimal message ids [default: hex].
    #[arg(long, value_name = "FORMAT")]
    pub id_format: Option<String>,
    /// Receipts carry the id in the other format (hex response, decimal receipt).
    #[arg(long)]
    pub receipt_id_other_format: bool,
    /// Fraction of submits answered ESME_RTHROTTLED, 0.0 to 1.0.
    #[arg(long)]
    pub throttle_fraction: Option<f64>,
    /// Fraction of submits answered ESME_RMSGQFUL, 0.0 to 1.0.
    #[arg(long)]
    pub msgqful_fraction: Option<f64>,
    /// PREFIX=STATUS: answer submits to these numbers with that command_status (0x0B or 11).
    #[arg(long, value_name = "PREFIX=STATUS")]
    pub error_prefix: Vec<String>,
    /// PREFIX=CODE: receipts for these numbers say UNDELIV with that error code.
    #[arg(long, value_name = "PREFIX=CODE")]
    pub receipt_error_prefix: Vec<String>,
    /// Send each receipt before its submit_sm_resp.
    #[arg(long)]
    pub receipt_before_response: bool,
    /// Send every receipt twice.
    #[arg(long)]
    pub duplicate_receipts: bool,
    /// Drop the connection on every Nth submit, without answering it.
    #[arg(long, value_name = "N")]
    pub drop_every: Option<u64>,
    /// Answer binds with ESME_RBINDFAIL for this long after start.
    #[arg(long, value_name = "DURATION")]
    pub refuse_binds_for: Option<String>,
    /// Send mobile-originated messages at this rate, e.g. 10/s (needs --mo-from and --mo-to).
    #[arg(long, value_name = "N/s")]
    pub mo_rate: Option<String>,
    /// Handset number the MO messages come from.
    #[arg(long, value_name = "NUMBER")]
    pub mo_from: Option<String>,
    /// Number (line) the MO messages are sent to.
    #[arg(long, value_name = "NUMBER")]
    pub mo_to: Option<String>,
    /// MO text; `{seq}` becomes the message number; long texts go as concatenated parts.
    #[arg(long, value_name = "TEXT")]
    pub mo_text: Option<String>,
    /// Print a one-line counts summary this often, e.g. 5s.
    #[arg(long, value_name = "DURATION")]
    pub stats_every: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error("reading {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    ConfigFile { path: PathBuf, source: ConfigError },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Args {
    /// The settings in force: the --config file (if any) with the flags written over it.
    pub fn settings(&self) -> Result<SimSettings, CliError> {
        let file = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| CliError::ReadConfig {
                        path: path.clone(),
                        source,
                    })?;
                SimSettings::from_toml(&text).map_err(|source| CliError::ConfigFile {
                    path: path.clone(),
                    source,
                })?
            }
            None => SimSettings::default(),
        };
        let flags = self.flag_settings()?;
        Ok(overlay(file, flags))
    }

    fn flag_settings(&self) -> Result<SimSettings, ConfigError> {
        let error_prefixes = self
            .error_prefix
            .iter()
            .map(|spec| {
                let (prefix, status) = split_pair("error_prefix", spec)?;
                Ok(PrefixStatus {
                    prefix,
                    status: parse_u32("error_prefix", &status)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let receipt_error_prefixes = self
            .receipt_error_prefix
            .iter()
            .map(|spec| {
                let (prefix, code) = split_pair("receipt_error_prefix", spec)?;
                let error = parse_u32("receipt_error_prefix", &code)?;
                Ok(PrefixError {
                    prefix,
                    error: u16::try_from(error).map_err(|_| ConfigError::Invalid {
                        field: "receipt_error_prefix",
                        message: format!("{error} does not fit in 16 bits"),
                    })?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let mo_rate = self.mo_rate.as_deref().map(parse_rate).transpose()?;
        Ok(SimSettings {
            listen: self.listen,
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            max_command_length: self.max_command_length,
            response_delay: self.response_delay.clone(),
            response_delay_max: self.response_delay_max.clone(),
            receipt_state: self.receipt_state.clone(),
            receipt_delay: self.receipt_delay.clone(),
            receipt_error_code: self.receipt_error_code,
            id_format: self.id_format.clone(),
            receipt_id_other_format: self.receipt_id_other_format.then_some(true),
            throttle_fraction: self.throttle_fraction,
            msgqful_fraction: self.msgqful_fraction,
            error_prefixes: (!error_prefixes.is_empty()).then_some(error_prefixes),
            receipt_error_prefixes: (!receipt_error_prefixes.is_empty())
                .then_some(receipt_error_prefixes),
            receipt_before_response: self.receipt_before_response.then_some(true),
            duplicate_receipts: self.duplicate_receipts.then_some(true),
            drop_every: self.drop_every,
            refuse_binds_for: self.refuse_binds_for.clone(),
            first_message_id: None,
            submit_log_capacity: None,
            mo_rate,
            mo_from: self.mo_from.clone(),
            mo_to: self.mo_to.clone(),
            mo_text: self.mo_text.clone(),
            stats_every: self.stats_every.clone(),
        })
    }
}

/// `top`'s settings where present, else `base`'s.
fn overlay(base: SimSettings, top: SimSettings) -> SimSettings {
    macro_rules! pick {
        ($($field:ident),*) => { SimSettings { $($field: top.$field.or(base.$field)),* } };
    }
    pick!(
        listen,
        system_id,
        password,
        max_command_length,
        response_delay,
        response_delay_max,
        receipt_state,
        receipt_delay,
        receipt_error_code,
        id_format,
        receipt_id_other_format,
        throttle_fraction,
        msgqful_fraction,
        error_prefixes,
        receipt_error_prefixes,
        receipt_before_response,
        duplicate_receipts,
        drop_every,
        refuse_binds_for,
        first_message_id,
        submit_log_capacity,
        mo_rate,
        mo_from,
        mo_to,
        mo_text,
        stats_every
    )
}

fn split_pair(field: &'static str, spec: &str) -> Result<(String, String), ConfigError> {
    spec.split_once('=')
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .ok_or_else(|| ConfigError::Invalid {
            field,
            message: format!("{spec:?} is not PREFIX=VALUE"),
        })
}

fn parse_u32(field: &'static str, text: &str) -> Result<u32, ConfigError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| ConfigError::Invalid {
        field,
        message: format!("{text:?}: {e}"),
    })
}

/// `10/s`, `10` or `0.5/s`.
fn parse_rate(text: &str) -> Result<f64, ConfigError> {
    let number = text.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(ConfigError::Invalid {
            field: "mo_rate",
            message: format!("{text:?} is not a positive rate like 10/s"),
        }),
    }
}

fn duration(field: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| ConfigError::Invalid {
        field,
        message: format!("{text:?}: {e}"),
    })
}

/// The MO generator's part of the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MoTraffic {
    pub rate: f64,
    pub from: String,
    pub to: String,
    pub text: String,
}

impl MoTraffic {
    pub fn from_settings(settings: &SimSettings) -> Result<Option<MoTraffic>, ConfigError> {
        let Some(rate) = settings.mo_rate else {
            return Ok(None);
        };
        let missing = |field| ConfigError::Invalid {
            field,
            message: "required with mo_rate".into(),
        };
        Ok(Some(MoTraffic {
            rate,
            from: settings.mo_from.clone().ok_or_else(|| missing("mo_from"))?,
            to: settings.mo_to.clone().ok_or_else(|| missing("mo_to"))?,
            text: settings
                .mo_text
                .clone()
                .unwrap_or_else(|| "smsc-sim MO {seq}".into()),
        }))
    }
}

/// Runs the simulator on `listener` with `settings` until `shutdown` resolves, printing a
/// counts line every `stats_every`; returns the final counts.
pub async fn run(
    settings: SimSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<SimStats, CliError> {
    let mut cfg = SimConfig {
        // Nothing reads the submit log of the command-line tool; it would only cost time.
        submit_log_capacity: 0,
        ..SimConfig::default()
    };
    settings.apply(&mut cfg)?;
    let mo = MoTraffic::from_settings(&settings)?;
    let stats_every = settings
        .stats_every
        .as_deref()
        .map(|text| duration("stats_every", text))
        .transpose()?;

    let sim = Simulator::start(listener, cfg).await;
    println!("smsc-sim listening on {}", sim.local_addr());
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    if let Some(mo) = mo {
        tasks.spawn(generate_mo(sim.clone(), mo, stop.clone()));
    }
    if let Some(every) = stats_every.filter(|d| !d.is_zero()) {
        let (sim, stop) = (sim.clone(), stop.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => println!("{}", sim.stats()),
                }
            }
        });
    }
    shutdown.await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    let stats = sim.stats();
    sim.shutdown().await;
    Ok(stats)
}

/// Injects MO messages at `mo.rate` per second while a receiver is bound. Each message's
/// parts go in order; messages overlap, up to a bound, so a slow ESME lowers the rate
/// instead of queueing without limit.
async fn generate_mo(sim: Simulator, mo: MoTraffic, stop: CancellationToken) {
    const MAX_IN_FLIGHT: usize = 256;
    let period = Duration::from_secs_f64((1.0 / mo.rate).max(0.01));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        while in_flight.try_join_next().is_some() {}
        let due = (started.elapsed().as_secs_f64() * mo.rate) as u64;
        while sent < due && in_flight.len() < MAX_IN_FLIGHT {
            sent += 1;
            let body = mo.text.replace("{seq}", &sent.to_string());
            let parts = MoMessage::concatenated(&mo.from, &mo.to, &body, sent as u8);
            let sim = sim.clone();
            in_flight.spawn(async move {
                for part in parts {
                    match sim.inject_mo(part).await {
                        Ok(()) => {}
                        Err(SimError::NoReceiver) => break,
                        Err(error) => {
                            debug!(%error, "MO not delivered");
                            break;
                        }
                    }
                }
            });
        }
        // Without a receiver nothing can be sent; don't build up a backlog meanwhile.
        sent = sent.max(due.saturating_sub(MAX_IN_FLIGHT as u64));
    }
    in_flight.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_settings_file() {
        let dir = std::env::temp_dir().join(format!("smsc-sim-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sim.toml");
        std::fs::write(
            &path,
            "password = \"filepw\"\nreceipt_delay = \"1s\"\nmo_rate = 2.0\nmo_from = \"+1\"\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "smsc-sim",
            "--config",
            path.to_str().unwrap(),
            "--receipt-delay",
            "200ms",
            "--error-prefix",
            "1555000=0x0B",
            "--mo-to",
            "12125551000",
        ]);
        let settings = args.settings().unwrap();
        assert_eq!(settings.password.as_deref(), Some("filepw"));
        assert_eq!(settings.receipt_delay.as_deref(), Some("200ms"));
        assert_eq!(
            settings.error_prefixes,
            Some(vec![PrefixStatus {
                prefix: "1555000".into(),
                status: 0x0B
            }])
        );
        let mo = MoTraffic::from_settings(&settings).unwrap().unwrap();
        assert_eq!((mo.rate, mo.to.as_str()), (2.0, "12125551000"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mo_rate_accepts_per_second_suffix_and_rejects_zero() {
        assert_eq!(parse_rate("10/s").unwrap(), 10.0);
        assert_eq!(parse_rate("0.5").unwrap(), 0.5);
        assert!(parse_rate("0/s").is_err());
    }

    #[test]
    fn mo_rate_without_numbers_is_an_error() {
        let settings = SimSettings {
            mo_rate: Some(1.0),
            ..Default::default()
        };
        assert!(MoTraffic::from_settings(&settings).is_err());
    }

    #[test]
    fn bad_error_prefix_flag_is_reported() {
        let args = Args::parse_from(["smsc-sim", "--error-prefix", "1555"]);
        assert!(
            args.settings()
                .unwrap_err()
                .to_string()
                .contains("error_prefix")
        );
    }
}
