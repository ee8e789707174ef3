//! Cross-field checks over the raw config; every problem is collected, none stops the others.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
};

use sha2::Digest as _;

/// Up to this many lines, per-line metrics are on unless the config says otherwise.
const LINE_METRICS_DEFAULT_MAX: usize = 1000;
use toml::Spanned;

use super::{
    Admin, App, Carrier, Config, ConfigError, Http, Line, Store, line_of,
    raw::{BindType, RawConfig, RawStore},
};
use crate::domain::{MessageState, PhoneNumber, StateSet};

struct Errors<'a> {
    text: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        let span = spanned.span();
        // Defaults carry an empty 0..0 span: no line to point at.
        let line = (span != (0..0)).then(|| line_of(self.text, span.start));
        self.list.push(ConfigError {
            line,
            message: message.into(),
        });
    }

    fn global(&mut self, message: impl Into<String>) {
        self.list.push(ConfigError {
            line: None,
            message: message.into(),
        });
    }

    /// `env:NAME` secrets are read from the environment; anything else is taken literally.
    fn secret(&mut self, value: &Spanned<String>, what: &str) -> String {
        match value.get_ref().strip_prefix("env:") {
            Some(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => v,
                _ => {
                    self.at(
                        value,
                        format!("{what}: environment variable {name} is not set"),
                    );
                    String::new()
                }
            },
            None => value.get_ref().clone(),
        }
    }

    fn addr(&mut self, value: &Spanned<String>, what: &str) -> SocketAddr {
        value.get_ref().parse().unwrap_or_else(|_| {
            self.at(
                value,
                format!(
                    "{what}: {:?} is not an address like 127.0.0.1:8080",
                    value.get_ref()
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }
}

/// Turns the raw config into the typed [`Config`], or every problem found.
pub fn validate(text: &str, raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    let mut e = Errors {
        text,
        list: Vec::new(),
    };

    let tls = match (&raw.http.tls_cert, &raw.http.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let (c, k) = (PathBuf::from(cert.get_ref()), PathBuf::from(key.get_ref()));
            match crate::net::tls_server_config(&c, &k) {
                Ok(cfg) => Some((Arc::new(cfg), c, k)),
                Err(problem) => {
                    e.at(cert, format!("http tls: {problem}"));
                    None
                }
            }
        }
        (Some(s), None) | (None, Some(s)) => {
            e.at(s, "http.tls_cert and http.tls_key go together");
            None
        }
    };
    let http = Http {
        tls,
        listen: e.addr(&raw.http.listen, "http.listen"),
        max_body_bytes: raw.http.max_body_bytes,
        concurrency_limit: raw.http.concurrency_limit.max(1),
        request_timeout: raw.http.request_timeout.0,
    };
    let admin = Admin {
        listen: e.addr(&raw.admin.listen, "admin.listen"),
        // A series per line is what an operator with a few lines wants and what a
        // Prometheus with 100,000 lines does not.
        line_metrics: raw
            .admin
            .line_metrics
            .unwrap_or(raw.lines.len() <= LINE_METRICS_DEFAULT_MAX),
    };
    let RawStore {
        path,
        commit_batch_max,
        max_size_mb,
        retention,
    } = raw.store;
    if commit_batch_max == 0 {
        e.global("store.commit_batch_max must be at least 1");
    }
    let store = Store {
        path: PathBuf::from(path),
        commit_batch_max: commit_batch_max.max(1),
        max_size_mb: (max_size_mb > 0).then_some(max_size_mb),
        retention: retention.map(|r| r.0),
    };

    let mut apps = Vec::new();
    let mut app_ids = HashSet::new();
    let mut all_keys = HashMap::new();
    for a in &raw.apps {
        let id = a.id.get_ref();
        if !valid_id(id) {
            e.at(
                &a.id,
                format!("app id {id:?} must be 1-64 of a-z, 0-9, '-', '_'"),
            );
        } else if !app_ids.insert(id.clone()) {
            e.at(&a.id, format!("duplicate app id {id:?}"));
        }
        if a.api_keys.is_empty() {
            e.at(&a.id, format!("app {id:?} has no api_keys"));
        }
        let mut keys = Vec::new();
        for k in &a.api_keys {
            let key = e.secret(k, "api key");
            if key.is_empty() && !k.get_ref().starts_with("env:") {
                e.at(k, "api key is empty");
            } else if !key.is_empty() && key.len() < 16 {
                e.at(k, "api key must be at least 16 characters");
            } else if let Some(other) = all_keys.insert(key.clone(), id.clone())
                && !key.is_empty()
            {
                e.at(k, format!("api key is also used by app {other:?}"));
            }
            keys.push(key);
        }
        let webhook_url = a.webhook_url.as_ref().map(|u| {
            let s = u.get_ref();
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                e.at(
                    u,
                    format!("webhook_url {s:?} must start with http:// or https://"),
                );
            }
            s.clone()
        });
        let mut webhook_keys = Vec::new();
        for s in &a.webhook_secrets {
            let secret = e.secret(s, "webhook secret");
            if secret.is_empty() {
                continue;
            }
            match crate::webhook::parse_secret(&secret) {
                Ok(k) => webhook_keys.push(k),
                Err(err) => e.at(s, format!("webhook secret: {err}")),
            }
        }
        let webhook_secrets = webhook_keys;
        if webhook_url.is_some() && webhook_secrets.is_empty() {
            e.at(
                &a.id,
                format!("app {id:?} has a webhook_url but no webhook_secrets"),
            );
        }
        let status_events = match &a.status_events {
            None => StateSet::status_events(),
            Some(list) => list.iter().fold(StateSet::EMPTY, |set, s| {
                match MessageState::parse(s.get_ref()).filter(|st| *st != MessageState::Queued) {
                    Some(st) => set.with(st),
                    None => {
                        e.at(
                            s,
                            format!(
                                "status_events: {:?} is not a message state with events; use \
                                 sending, sent, delivered, undelivered, failed or expired",
                                s.get_ref()
                            ),
                        );
                        set
                    }
                }
            }),
        };
        apps.push(Arc::new(App {
            id: id.clone(),
            api_keys: keys,
            webhook_url,
            webhook_secrets,
            status_events,
        }));
    }

    let mut carriers = Vec::new();
    let mut carrier_ids = HashSet::new();
    for c in &raw.carriers {
        let id = c.id.get_ref();
        if !valid_id(id) {
            e.at(
                &c.id,
                format!("carrier id {id:?} must be 1-64 of a-z, 0-9, '-', '_'"),
            );
        } else if !carrier_ids.insert(id.clone()) {
            e.at(&c.id, format!("duplicate carrier id {id:?}"));
        }
        let tls = if c.tls {
            let client = match (&c.tls_client_cert, &c.tls_client_key) {
                (Some(cert), Some(key)) => {
                    Some((std::path::Path::new(cert), std::path::Path::new(key)))
                }
                (None, None) => None,
                _ => {
                    e.at(&c.id, "tls_client_cert and tls_client_key go together");
                    None
                }
            };
            let name = c.tls_server_name.clone().unwrap_or_else(|| c.host.clone());
            let server_name = rustls_pki_types::ServerName::try_from(name.clone());
            let ca = c.tls_ca_file.as_deref().map(std::path::Path::new);
            match (crate::net::tls_client_config(ca, client), server_name) {
                (Ok(cfg), Ok(sn)) => Some((Arc::new(cfg), sn.to_owned())),
                (Err(problem), _) => {
                    e.at(&c.id, format!("carrier tls: {problem}"));
                    None
                }
                (_, Err(_)) => {
                    e.at(
                        &c.id,
                        format!("carrier tls: {name:?} is not a valid server name"),
                    );
                    None
                }
            }
        } else {
            None
        };
        if c.system_id.get_ref().is_empty() || c.system_id.get_ref().len() > 15 {
            e.at(
                &c.system_id,
                "system_id must be 1 to 15 characters (SMPP 3.4)",
            );
        }
        let password = e.secret(&c.password, "carrier password");
        if password.len() > 8 {
            e.at(
                &c.password,
                "password must be at most 8 characters (SMPP 3.4)",
            );
        }
        let window = *c.window.get_ref();
        if !(1..=1000).contains(&window) {
            e.at(
                &c.window,
                format!("window {window} must be between 1 and 1000"),
            );
        }
        let binds = *c.binds.get_ref();
        if !(1..=64).contains(&binds) {
            e.at(&c.binds, format!("binds {binds} must be between 1 and 64"));
        }
        if !(c.max_rate.is_finite() && c.max_rate >= 0.0) {
            e.at(
                &c.id,
                "max_rate must be a number of submits per second (0: no limit)",
            );
        }
        if c.max_command_length < 512 {
            e.at(&c.id, "max_command_length must be at least 512");
        }
        let interface_version = match c.interface_version.as_ref().map(|v| v.get_ref().as_str()) {
            None | Some("3.4") => 0x34,
            Some("5.0") => 0x50,
            Some(other) => {
                if let Some(v) = &c.interface_version {
                    e.at(
                        v,
                        format!("interface_version {other:?} must be \"3.4\" or \"5.0\""),
                    );
                }
                0x34
            }
        };
        let address_range = c
            .address_range
            .as_ref()
            .map(|a| a.get_ref().clone())
            .unwrap_or_default();
        if let Some(a) = &c.address_range
            && a.get_ref().len() > 40
        {
            e.at(a, "address_range must be at most 40 characters (SMPP 3.4)");
        }
        // Certificates are part of the connection: a renewed file re-binds too.
        let file_digest = |path: &Option<String>| {
            path.as_deref().map_or(String::new(), |p| {
                std::fs::read(p).map_or_else(
                    |_| format!("{p}:unreadable"),
                    |b| format!("{p}:{:x}", sha2::Sha256::digest(&b)),
                )
            })
        };
        let connection = format!(
            "{}:{}|tls={}|{}|{}|{}|{}|{}|{}|{:?}|{}|{:?}|{}|{}|{:?}|{:?}|{}",
            c.host,
            c.port,
            c.tls,
            file_digest(&c.tls_ca_file),
            c.tls_server_name.as_deref().unwrap_or(""),
            file_digest(&c.tls_client_cert),
            file_digest(&c.tls_client_key),
            c.system_id.get_ref(),
            sha2::Sha256::digest(password.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            c.system_type,
            interface_version,
            address_range,
            window,
            c.max_command_length,
            c.enquire_link.0,
            c.response_timeout.0,
            match c.bind_type {
                BindType::Transceiver => "trx",
                BindType::TransmitterReceiver => "tx+rx",
            }
        );
        carriers.push(Arc::new(Carrier {
            id: id.clone(),
            host: c.host.clone(),
            port: c.port,
            tls,
            system_id: c.system_id.get_ref().clone(),
            password,
            system_type: c.system_type.clone(),
            bind_type: c.bind_type,
            interface_version,
            address_range,
            connection,
            binds,
            window: window.clamp(1, 1000),
            enquire_link: c.enquire_link.0,
            response_timeout: c.response_timeout.0,
            reconnect_min: c.reconnect_min.0,
            reconnect_max: c.reconnect_max.0.max(c.reconnect_min.0),
            max_command_length: c.max_command_length,
            dlr_id_format: c.dlr_id_format,
            simulator: c.simulator,
            simulator_receipt_delay: c.simulator_receipt_delay.0,
            mo_default_alphabet: c.mo_default_alphabet,
            not_textable_statuses: c.not_textable_statuses.clone(),
            status_overrides: c
                .status_overrides
                .iter()
                .filter_map(|(k, v)| {
                    let parsed = match k.strip_prefix("0x").or_else(|| k.strip_prefix("0X")) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => k.parse::<u32>().ok(),
                    };
                    if parsed.is_none() {
                        e.at(v, format!("status_overrides: {k:?} is not a command_status (\"0x45\" or \"69\")"));
                    }
                    use crate::smpp::status::StatusClass;
                    let class = match v.get_ref() {
                        super::raw::StatusMeaning::Throttled => StatusClass::Throttled,
                        super::raw::StatusMeaning::Temporary => StatusClass::Temporary,
                        super::raw::StatusMeaning::Permanent => StatusClass::Permanent,
                    };
                    parsed.map(|s| (s, class))
                })
                .collect(),
            max_rate: (c.max_rate > 0.0).then_some(c.max_rate),
            failover_after: c.failover_after.0,
            segment: crate::segment::Options {
                max_parts: c.max_parts.clamp(1, 255),
                concat: match c.concat {
                    super::raw::ConcatMethod::Udh8 => crate::segment::Concat::Udh8,
                    super::raw::ConcatMethod::Udh16 => crate::segment::Concat::Udh16,
                    super::raw::ConcatMethod::Sar => crate::segment::Concat::Sar,
                    super::raw::ConcatMethod::Payload => crate::segment::Concat::Payload,
                },
                national: c
                    .national_languages
                    .iter()
                    .map(|n| match n {
                        super::raw::NationalLanguageName::Turkish => {
                            crate::segment::NationalLanguage::Turkish
                        }
                        super::raw::NationalLanguageName::Spanish => {
                            crate::segment::NationalLanguage::Spanish
                        }
                        super::raw::NationalLanguageName::Portuguese => {
                            crate::segment::NationalLanguage::Portuguese
                        }
                    })
                    .collect(),
                latin1: c.latin1,
                ..Default::default()
            },
            not_textable_receipt_errors: c
                .not_textable_receipt_errors
                .iter()
                .map(|e| e.trim_start_matches('0').to_owned())
                .collect(),
            not_textable_ttl: raw.numbers.not_textable_ttl.0,
        }));
    }
    if carriers.is_empty() {
        e.global("at least one [[carriers]] entry is needed");
    }

    let mut lines = HashMap::new();
    for l in &raw.lines {
        let number = match PhoneNumber::parse(l.number.get_ref()) {
            Ok(n) => Some(n),
            Err(err) => {
                e.at(
                    &l.number,
                    format!("line number {:?}: {err}", l.number.get_ref()),
                );
                None
            }
        };
        if !app_ids.contains(l.app.get_ref()) {
            e.at(
                &l.app,
                format!("line refers to unknown app {:?}", l.app.get_ref()),
            );
        }
        if !carrier_ids.contains(l.carrier.get_ref()) {
            e.at(
                &l.carrier,
                format!("line refers to unknown carrier {:?}", l.carrier.get_ref()),
            );
        }
        for f in &l.fallback_carriers {
            if !carrier_ids.contains(f.get_ref()) {
                e.at(
                    f,
                    format!("line refers to unknown fallback carrier {:?}", f.get_ref()),
                );
            } else if f.get_ref() == l.carrier.get_ref() {
                e.at(f, "a line's fallback carrier must differ from its carrier");
            }
        }
        let mut rate = crate::ratelimit::LineLimit::for_class(l.rate_class);
        if let Some(r) = l.rate {
            if !(r.is_finite() && r > 0.0) {
                e.at(
                    &l.number,
                    format!("line rate {r} must be a positive number of segments per second"),
                );
            }
            rate = crate::ratelimit::LineLimit::per_second(r);
        }
        if let Some(b) = l.burst {
            rate.burst = b.max(1);
        }
        let mut hours = None;
        let mut staff_notify = None;
        if let Some(h) = &l.hours {
            match crate::policy::Hours::compile(h.get_ref()) {
                Ok(c) => hours = Some(c),
                Err(problems) => {
                    for p in problems {
                        e.at(h, format!("line hours: {p}"));
                    }
                }
            }
            if let Some(n) = &h.get_ref().staff_notify {
                match PhoneNumber::parse(n) {
                    Ok(n) => staff_notify = Some(n),
                    Err(err) => e.at(h, format!("line hours: staff_notify {n:?}: {err}")),
                }
            }
        }
        // Texts smsgate sends by itself from this line must fit its carrier, or they could
        // only fail later.
        let segment_opts = crate::segment::Options {
            smart_encoding: l.smart_encoding,
            ..carriers
                .iter()
                .find(|c| c.id == *l.carrier.get_ref())
                .map(|c| c.segment.clone())
                .unwrap_or_default()
        };
        let own_replies = [
            ("help_text", l.help_text.as_deref()),
            (
                "after_hours_reply",
                hours
                    .as_ref()
                    .and_then(|h: &crate::policy::Hours| h.after_hours_reply()),
            ),
        ];
        for (what, text) in own_replies {
            if let Some(text) = text
                && let Err(err) = crate::segment::segment(text, &segment_opts, 0)
            {
                e.at(
                    &l.number,
                    format!(
                        "line {what} cannot be sent on carrier {:?}: {err}",
                        l.carrier.get_ref()
                    ),
                );
            }
        }
        if let Some(number) = number {
            if lines.contains_key(&number) {
                e.at(&l.number, format!("duplicate line {}", l.number.get_ref()));
                continue;
            }
            lines.insert(
                number.clone(),
                Arc::new(Line {
                    number,
                    app: l.app.get_ref().clone(),
                    carrier: l.carrier.get_ref().clone(),
                    segment: segment_opts,
                    fallback_carriers: l
                        .fallback_carriers
                        .iter()
                        .map(|f| f.get_ref().clone())
                        .collect(),
                    rate_class: l.rate_class,
                    help_text: l.help_text.clone(),
                    lookup_fail_closed: l.lookup_fail_closed,
                    validity: l.validity.0,
                    rate,
                    hours,
                    staff_notify,
                }),
            );
        }
    }

    let mut triggers = Vec::new();
    let mut trigger_ids = HashSet::new();
    let mut tokens = HashSet::new();
    for t in &raw.triggers {
        let id = t.id.get_ref();
        if !valid_id(id) {
            e.at(
                &t.id,
                format!("trigger id {id:?} must be 1-64 of a-z, 0-9, '-', '_'"),
            );
        } else if !trigger_ids.insert(id.clone()) {
            e.at(&t.id, format!("duplicate trigger id {id:?}"));
        }
        let token = e.secret(&t.token, "trigger token");
        if !token.is_empty() && token.len() < 32 {
            e.at(
                &t.token,
                "trigger token must be at least 32 characters (the URL is the credential)",
            );
        } else if !token.is_empty()
            && !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            e.at(
                &t.token,
                "trigger token may hold only A-Z, a-z, 0-9, '-' and '_' (it goes in a URL)",
            );
        } else if !token.is_empty() && !tokens.insert(token.clone()) {
            e.at(&t.token, "trigger token is used by another trigger");
        }
        let chars = t.template.get_ref().chars().count();
        if chars == 0 || chars > 255 {
            e.at(
                &t.template,
                format!("template must be 1 to 255 characters (it has {chars})"),
            );
        }
        let line = match PhoneNumber::parse(t.line.get_ref()) {
            Ok(n) if lines.contains_key(&n) => Some(n),
            Ok(_) => {
                e.at(
                    &t.line,
                    format!("trigger refers to unknown line {:?}", t.line.get_ref()),
                );
                None
            }
            Err(err) => {
                e.at(
                    &t.line,
                    format!("trigger line {:?}: {err}", t.line.get_ref()),
                );
                None
            }
        };
        let active_hours =
            t.active_hours.as_ref().and_then(|h| {
                match crate::policy::Hours::compile(h.get_ref()) {
                    Ok(c) => Some(c),
                    Err(problems) => {
                        for p in problems {
                            e.at(h, format!("trigger active_hours: {p}"));
                        }
                        None
                    }
                }
            });
        if let Some(line) = line {
            triggers.push(Arc::new(super::Trigger {
                id: id.clone(),
                token,
                kind: t.kind,
                line,
                language: t.language.clone(),
                template: t.template.get_ref().clone(),
                active_hours,
                dedupe_window: t.dedupe_window.0,
            }));
        }
    }

    let n = &raw.numbers;
    let lookup = n.lookup_url.as_ref().map(|u| {
        let url = u.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) || !url.contains("{number}")
        {
            e.at(
                u,
                format!("lookup_url {url:?} must be an http(s) URL containing {{number}}"),
            );
        }
        super::Lookup {
            url: url.clone(),
            token: n.lookup_token.as_ref().map(|t| e.secret(t, "lookup token")),
            timeout: n.lookup_timeout.0,
            concurrency: n.lookup_concurrency.max(1),
            cache_ttl: n.cache_ttl.0,
            line_type_field: n.line_type_field.clone(),
            textable_types: n
                .textable_types
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
        }
    });
    let numbers = super::Numbers {
        not_textable_ttl: n.not_textable_ttl.0,
        lookup,
    };

    let w = &raw.webhooks;
    if w.concurrency == 0 {
        e.global("webhooks.concurrency must be at least 1");
    }
    if w.initial_backoff.0 > w.max_backoff.0 {
        e.global("webhooks.initial_backoff must not be longer than webhooks.max_backoff");
    }
    let webhooks = crate::webhook::WebhookConfig {
        max_age: w.max_age.0,
        initial_backoff: w.initial_backoff.0,
        max_backoff: w.max_backoff.0,
        connect_timeout: w.connect_timeout.0,
        request_timeout: w.request_timeout.0,
        per_endpoint_concurrency: w.concurrency.max(1),
        disable_on_410: w.disable_on_410,
        ..Default::default()
    };

    let keyword_cfg = raw
        .opt_out
        .as_ref()
        .map(|k| k.get_ref().clone())
        .unwrap_or_default();
    let keywords = match crate::policy::Keywords::new(&keyword_cfg) {
        Ok(k) => k,
        Err(problem) => {
            match &raw.opt_out {
                Some(span) => e.at(span, format!("opt_out: {problem}")),
                None => e.global(format!("opt_out: {problem}")),
            }
            crate::policy::Keywords::new(&Default::default()).expect("default keywords are valid")
        }
    };

    // Keyword replies go out from every line; what decides whether they fit is the line's
    // carrier and its smart encoding, so each pair is checked once (not once per line).
    let mut checked = HashSet::new();
    for line in lines.values() {
        if !checked.insert((line.carrier.as_str(), line.segment.smart_encoding)) {
            continue;
        }
        let replies = [
            (
                "stop reply",
                keywords.reply_for(crate::policy::Keyword::Stop, None),
            ),
            (
                "start reply",
                keywords.reply_for(crate::policy::Keyword::Start, None),
            ),
            (
                "help reply",
                keywords.reply_for(crate::policy::Keyword::Help, None),
            ),
        ];
        for (what, text) in replies {
            if let Err(err) = crate::segment::segment(text, &line.segment, 0) {
                let message = format!(
                    "opt_out {what} cannot be sent on carrier {:?}: {err}",
                    line.carrier
                );
                match &raw.opt_out {
                    Some(span) => e.at(span, message),
                    None => e.global(message),
                }
            }
        }
    }

    if e.list.is_empty() {
        Ok(Config {
            webhooks,
            numbers,
            triggers,
            keywords: Arc::new(keywords),
            inbound: super::Inbound {
                reassembly_timeout: raw.inbound.reassembly_timeout.0,
            },
            http,
            admin,
            store,
            apps,
            carriers,
            lines,
        })
    } else {
        e.list.sort_by_key(|x| x.line.unwrap_or(usize::MAX));
        Err(e.list)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const GOOD: &str = r#"
[http]
listen = "127.0.0.1:0"

[[apps]]
id = "clinic"
api_keys = ["0123456789abcdef"]

[[carriers]]
id = "sim"
port = 2775
system_id = "smsgate"
password = "secret"

[[lines]]
number = "2125551000"
app = "clinic"
carrier = "sim"
"#;

    fn errors(text: &str) -> Vec<(Option<usize>, String)> {
        parse(text)
            .expect_err("config should be refused")
            .into_iter()
            .map(|e| (e.line, e.message))
            .collect()
    }

    #[test]
    fn a_good_config_validates_and_normalises_line_numbers() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.lines.len(), 1);
        assert_eq!(cfg.lines.keys().next().unwrap().as_str(), "+12125551000");
        assert_eq!(cfg.carriers[0].window, 64);
    }

    #[test]
    fn an_unknown_key_is_reported_with_its_line() {
        let text = GOOD.replace("port = 2775", "port = 2775\nwindw = 10");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, Some(12), "{errs:?}");
        assert!(errs[0].1.contains("windw"), "{errs:?}");
    }

    #[test]
    fn every_cross_reference_problem_is_reported_with_its_line() {
        let text = GOOD
            .replace("app = \"clinic\"", "app = \"dental\"")
            .replace("carrier = \"sim\"", "carrier = \"att\"")
            .replace("2125551000", "1115550100")
            .replace("password = \"secret\"", "password = \"much-too-long\"");
        let errs = errors(&text);
        let lines: Vec<_> = errs.iter().map(|e| e.0).collect();
        assert_eq!(
            lines,
            vec![Some(13), Some(16), Some(17), Some(18)],
            "{errs:?}"
        );
        assert!(errs[0].1.contains("at most 8"));
        assert!(errs[1].1.contains("area code"));
        assert!(errs[2].1.contains("unknown app \"dental\""));
        assert!(errs[3].1.contains("unknown carrier \"att\""));
    }

    #[test]
    fn duplicate_ids_and_bad_durations_are_refused() {
        let dup = format!("{GOOD}\n[[apps]]\nid = \"clinic\"\napi_keys = [\"fedcba9876543210\"]\n");
        let errs = errors(&dup);
        assert!(
            errs.iter()
                .any(|e| e.1.contains("duplicate app id") && e.0 == Some(21))
        );

        let bad = GOOD.replace("port = 2775", "port = 2775\nenquire_link = \"soon\"");
        let errs = errors(&bad);
        assert!(errs[0].1.contains("invalid duration"), "{errs:?}");
        assert_eq!(errs[0].0, Some(12));
    }

    #[test]
    fn a_trigger_template_over_255_characters_is_refused_with_its_line() {
        let text = format!(
            "{GOOD}\n[[triggers]]\nid = \"ctt\"\ntoken = \"{}\"\nkind = \"call_to_text\"\nline = \"2125551000\"\ntemplate = \"{}\"\n",
            "t".repeat(40),
            "x".repeat(256)
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, Some(25));
        assert!(
            errs[0].1.contains("1 to 255 characters (it has 256)"),
            "{errs:?}"
        );
        let ok = text.replace(&"x".repeat(256), &"x".repeat(255));
        assert!(parse(&ok).is_ok());
        let short = ok.replace(&"t".repeat(40), "short");
        assert!(errors(&short)[0].1.contains("at least 32 characters"));
    }

    #[test]
    fn status_events_are_parsed_and_unknown_states_refused_with_their_line() {
        use crate::domain::MessageState;
        let all = parse(GOOD).unwrap();
        assert!(all.apps[0].status_events.contains(MessageState::Sending));
        let some = GOOD.replace(
            "api_keys = [\"0123456789abcdef\"]",
            "api_keys = [\"0123456789abcdef\"]\nstatus_events = [\"delivered\", \"failed\"]",
        );
        let cfg = parse(&some).unwrap();
        let set = cfg.apps[0].status_events;
        assert!(set.contains(MessageState::Delivered) && set.contains(MessageState::Failed));
        assert!(!set.contains(MessageState::Sending) && !set.contains(MessageState::Sent));

        let bad = some.replace("\"failed\"]", "\"failed\",\n  \"queued\", \"read\"]");
        let errs = errors(&bad);
        let lines: Vec<_> = errs.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![Some(9), Some(9)], "{errs:?}");
        assert!(
            errs[0].1.contains("\"queued\" is not a message state"),
            "{errs:?}"
        );
        assert!(errs[1].1.contains("\"read\""), "{errs:?}");
    }

    #[test]
    fn env_secrets_must_be_set() {
        let text = GOOD.replace("\"0123456789abcdef\"", "\"env:SMSGATE_TEST_UNSET_KEY_X\"");
        let errs = errors(&text);
        assert_eq!(errs[0].0, Some(7));
        assert!(errs[0].1.contains("SMSGATE_TEST_UNSET_KEY_X"));
    }
}
