//! Webhook delivery: events waiting in the store's outbox are POSTed, signed per Standard
//! Webhooks ([`signer`]), to each app's endpoint, and every attempt's outcome is recorded
//! ([`dispatcher`]). At-least-once with a stable event id: an event is retried with
//! exponential backoff and full jitter until it is older than `max_age`, then kept as a dead
//! letter (listed and replayable), never dropped. Events of one conversation go out one at a
//! time, in outbox order; each endpoint has its own concurrency limit so a slow or dead
//! endpoint never holds up another.

pub mod dispatcher;
pub mod signer;

use std::{collections::HashMap, time::Duration};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub use dispatcher::run_dispatcher;
pub use signer::{SecretError, Signer, parse_secret, sign, verify};

/// Delivery tuning; `Default` is the production setting.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// An event still failing this long after it was created becomes a dead letter.
    pub max_age: Duration,
    /// Backoff ceiling after the first failure; doubles per attempt (full jitter).
    pub initial_backoff: Duration,
    /// Backoff ceiling never grows beyond this.
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// Whole request: connect, send, response headers and (bounded) body.
    pub request_timeout: Duration,
    /// Requests in flight per endpoint (per app).
    pub per_endpoint_concurrency: usize,
    /// `410 Gone` means "stop sending": dead-letter instead of retrying.
    pub disable_on_410: bool,
    /// How often the outbox is polled when nobody wakes the dispatcher (retries come due).
    pub poll_interval: Duration,
    /// On shutdown, how long in-flight deliveries may take to finish and be recorded.
    pub drain_timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(72 * 3600),
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            per_endpoint_concurrency: 32,
            disable_on_410: true,
            poll_interval: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Where an app's events go and the keys they are signed with (from `[[apps]]`
/// `webhook_url` + `webhook_secrets`, each parsed with [`parse_secret`]).
#[derive(Clone)]
pub struct Endpoint {
    pub app_id: String,
    /// The app's `webhook_url`; empty when it has none (then only events carrying their own
    /// `url`, a per-message status URL, are delivered).
    pub url: String,
    /// Signing keys, newest first; one signature per key goes out.
    pub keys: Vec<Vec<u8>>,
}

/// Hand-written so keys never reach a log through `{:?}`.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("app_id", &self.app_id)
            .field("url", &dispatcher::redact_url(&self.url))
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .finish()
    }
}

/// Builds the endpoint map [`run_dispatcher`] takes, keyed by app id.
pub fn endpoints(list: impl IntoIterator<Item = Endpoint>) -> HashMap<String, Endpoint> {
    list.into_iter().map(|e| (e.app_id.clone(), e)).collect()
}

/// Webhook metrics. Labels are bounded: the app id (from config), a result word, an HTTP
/// status class; never a URL, an event id or a number.
pub struct WebhookMetrics {
    /// Recorded outcome of each attempt: `delivered`, `retry`, `dead`.
    pub deliveries: IntCounterVec,
    /// What each attempt got back: `2xx`, `3xx`, `4xx`, `5xx`, `timeout`, `connect_error`,
    /// `error`.
    pub attempts: IntCounterVec,
    /// Time from sending a request to its response (attempts that got one).
    pub latency: HistogramVec,
    /// Events pending in the outbox (all apps), refreshed about every second.
    pub outbox_depth: IntGauge,
    /// Requests in flight per app.
    pub in_flight: IntGaugeVec,
    /// Events given up on, by reason: `max_age`, `gone`, `invalid_url`.
    pub dead_letters: IntCounterVec,
}

impl WebhookMetrics {
    /// Creates the metrics and registers them in `registry` (fails only if they are already
    /// registered there).
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            deliveries: IntCounterVec::new(
                Opts::new(
                    "smsgate_webhook_deliveries_total",
                    "Webhook delivery attempts by app and recorded result (delivered, retry, dead).",
                ),
                &["app", "result"],
            )?,
            attempts: IntCounterVec::new(
                Opts::new(
                    "smsgate_webhook_attempts_total",
                    "Webhook requests by app and what came back (2xx, 3xx, 4xx, 5xx, timeout, \
                     connect_error, error).",
                ),
                &["app", "class"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "smsgate_webhook_latency_seconds",
                    "Time from sending a webhook request to its response.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["app"],
            )?,
            outbox_depth: IntGauge::new(
                "smsgate_webhook_outbox_depth",
                "Webhook events waiting for delivery (pending, all apps).",
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "smsgate_webhook_in_flight",
                    "Webhook requests in flight per app.",
                ),
                &["app"],
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "smsgate_webhook_dead_letters_total",
                    "Webhook events given up on (kept, replayable), by app and reason.",
                ),
                &["app", "reason"],
            )?,
        };
        registry.register(Box::new(m.deliveries.clone()))?;
        registry.register(Box::new(m.attempts.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.outbox_depth.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.dead_letters.clone()))?;
        Ok(m)
    }
}
