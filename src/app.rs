//! Wires the services together. Start order: store (and crash recovery), simulated carriers,
//! carrier sessions, dispatchers, admin, HTTP. Drain order on shutdown: HTTP stops taking
//! requests, dispatchers stop claiming, sessions wait (bounded) for outstanding responses and
//! unbind, outcomes are recorded, the store commits and closes.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{
    net::TcpListener,
    sync::{Notify, mpsc, watch},
    task::JoinSet,
};

use crate::{
    api::{self, AdminState, ApiState},
    config::Config,
    dispatch::{self, Tracker},
    mo::Inbound,
    sim,
    smpp::carrier,
    store::{Store, sqlite::SqliteStore},
    telemetry::Metrics,
};

/// The sockets the daemon serves on; tests pass listeners bound to `127.0.0.1:0`.
pub struct Listeners {
    pub http: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            http: TcpListener::bind(config.http.listen)
                .await
                .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?,
            admin: TcpListener::bind(config.admin.listen)
                .await
                .with_context(|| {
                    format!("cannot listen on admin.listen {}", config.admin.listen)
                })?,
        })
    }
}

/// Longest a drain may take before the remaining tasks are abandoned (nothing accepted is
/// lost either way: unsent work stays queued in the store).
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the daemon until `shutdown` turns true, then drains.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_with_reload(config, None, listeners, shutdown).await
}

/// Like [`run`]; with `config_path`, SIGHUP and `POST /admin/reload` re-read that file and
/// apply apps, keys, lines, triggers, keywords and webhook endpoints without touching binds.
pub async fn run_with_reload(
    config: Config,
    config_path: Option<std::path::PathBuf>,
    listeners: Listeners,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let live = crate::config::Live::new(config.clone());
    let metrics = Arc::new(Metrics::new());

    let sqlite = SqliteStore::open_with_limit(
        &config.store.path,
        config.store.commit_batch_max,
        config.store.max_size_mb,
        metrics.clone(),
    )
    .with_context(|| format!("cannot open store {}", config.store.path.display()))?;
    sqlite.set_webhook_apps(webhook_apps(&config));
    let webhook_wake = sqlite.event_notify();
    let checkpoints = sqlite
        .spawn_checkpoints(
            &config.store.path,
            Duration::from_millis(500),
            shutdown.clone(),
        )
        .context("cannot start WAL checkpoints")?;
    let sqlite = Arc::new(sqlite);
    let store: Arc<dyn Store> = sqlite.clone();
    let requeued = store.requeue_in_flight().await?;
    metrics.requeued_at_start.inc_by(requeued);
    if requeued > 0 {
        tracing::info!(
            requeued,
            "messages left mid-send by the last run are queued again"
        );
    }

    let pruner = config.store.retention.map(|keep| {
        let (store, mut sd) = (store.clone(), shutdown.clone());
        tokio::spawn(async move {
            let every = (keep / 4).clamp(Duration::from_millis(50), Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = sd.wait_for(|s| *s) => return,
                }
                let before = crate::domain::now_millis() - keep.as_millis() as i64;
                // Batches keep each transaction short; loop until a pass finds nothing.
                loop {
                    match store.prune(before, 5000).await {
                        Ok(0) => break,
                        Ok(n) => tracing::info!(texts = n, "retention: pruned old texts"),
                        Err(e) => {
                            tracing::warn!(error = %e, "retention: prune failed");
                            break;
                        }
                    }
                }
            }
        })
    });

    // Built-in simulated carriers, for development and demos.
    let mut sims = Vec::new();
    for c in config.carriers.iter().filter(|c| c.simulator) {
        let addr = format!("{}:{}", c.host, c.port);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot start the simulator of carrier {} on {addr}", c.id))?;
        let cfg = sim::SimConfig {
            system_id: c.system_id.clone(),
            password: c.password.clone(),
            receipt: sim::ReceiptMode {
                delay: c.simulator_receipt_delay,
                ..Default::default()
            },
            // Nothing in the daemon reads the simulator's submit log.
            submit_log_capacity: 0,
            ..Default::default()
        };
        tracing::info!(carrier = %c.id, %addr, "built-in carrier simulator listening");
        sims.push(sim::Simulator::start(listener, cfg).await);
    }

    let inbound = Arc::new(Inbound::new(store.clone(), live.clone(), metrics.clone()));
    let sweeper = tokio::spawn(crate::mo::run_reassembly_sweeper(
        store.clone(),
        inbound.planner(),
        config.inbound.reassembly_timeout,
        shutdown.clone(),
    ));
    let mut carrier_tasks = JoinSet::new();
    let mut handles = Vec::new();
    let mut wake = HashMap::new();
    let mut dispatchers = JoinSet::new();
    let mut completion_tasks = JoinSet::new();
    let mut started = Vec::new();
    for c in &config.carriers {
        let (ctx, crx) = mpsc::unbounded_channel();
        let (handle, tasks) = carrier::start(
            c.clone(),
            inbound.clone(),
            ctx,
            metrics.clone(),
            shutdown.clone(),
        );
        for t in tasks {
            carrier_tasks.spawn(async move {
                let _ = t.await;
            });
        }
        let handle = Arc::new(handle);
        let tracker = Arc::new(Tracker::default());
        let notify = Arc::new(Notify::new());
        wake.insert(c.id.clone(), notify.clone());
        completion_tasks.spawn(dispatch::run_completions(
            crx,
            store.clone(),
            handle.watch_settings(),
            tracker.clone(),
            metrics.clone(),
        ));
        started.push((c.clone(), handle.clone(), tracker, notify));
        handles.push(handle);
    }
    for (c, handle, tracker, notify) in started {
        // Lines of other carriers that name this one as a fallback.
        let failover = handles
            .iter()
            .filter(|h| *h.id != *c.id)
            .filter_map(|h| {
                let lines: Vec<String> = config
                    .lines
                    .values()
                    .filter(|l| *l.carrier == *h.id && l.fallback_carriers.contains(&c.id))
                    .map(|l| l.number.as_str().to_owned())
                    .collect();
                let after = config
                    .carriers
                    .iter()
                    .find(|p| *p.id == *h.id)?
                    .failover_after;
                (!lines.is_empty()).then(|| dispatch::Failover {
                    primary: h.clone(),
                    after,
                    lines,
                })
            })
            .collect();
        dispatchers.spawn(dispatch::run_dispatcher(
            dispatch::Dispatcher {
                store: store.clone(),
                carrier: handle,
                config: live.clone(),
                cfg: c,
                tracker,
                wake: notify,
                metrics: metrics.clone(),
                failover,
            },
            shutdown.clone(),
        ));
    }

    let webhook_metrics = Arc::new(
        crate::webhook::WebhookMetrics::new(&metrics.registry).context("webhook metrics")?,
    );
    let webhooks = Webhooks {
        store: store.clone(),
        metrics: webhook_metrics,
        wake: webhook_wake.clone(),
    };
    let (mut webhook_stop, mut webhook_task) = webhooks.start(&config);

    let (reload_tx, mut reload_rx) = mpsc::channel::<api::ReloadRequest>(4);
    let admin = api::admin_router(AdminState {
        metrics: metrics.clone(),
        carriers: handles.clone(),
        store: store.clone(),
        config: live.clone(),
        reload: config_path.is_some().then(|| reload_tx.clone()),
    });
    let api_state = ApiState::new(
        config.clone(),
        store.clone(),
        metrics.clone(),
        wake,
        webhook_wake,
    );
    let app = api::router(api_state.clone());
    tracing::info!(
        http = %listeners.http.local_addr()?,
        admin = %listeners.admin.local_addr()?,
        "smsgate listening"
    );

    let mut servers = JoinSet::new();
    let sd = shutdown.clone();
    servers.spawn(async move {
        axum::serve(listeners.admin, admin)
            .with_graceful_shutdown(wait_for(sd))
            .await
    });
    let sd = shutdown.clone();
    let https_cert = config
        .http
        .tls
        .as_ref()
        .map(|(cfg, _, _)| crate::net::TlsCert::new((**cfg).clone()));
    match &https_cert {
        None => {
            servers.spawn(async move {
                axum::serve(listeners.http, app)
                    .with_graceful_shutdown(wait_for(sd))
                    .await
            });
        }
        Some(cert) => {
            let tls = crate::net::TlsListener::new(listeners.http, cert.clone())?;
            servers.spawn(async move {
                axum::serve(tls, app)
                    .with_graceful_shutdown(wait_for(sd))
                    .await
            });
        }
    }

    // systemd: ready once the store is open and every carrier has a bind (or after a while
    // without, so a carrier outage does not fail the start); then keep the watchdog fed while
    // the store still answers.
    let notifier = crate::systemd::Notifier::from_env();
    let sd = if notifier.is_enabled() {
        let (n, carriers, st, mut sd_shutdown) = (
            notifier.clone(),
            handles.clone(),
            store.clone(),
            shutdown.clone(),
        );
        Some(tokio::spawn(async move {
            n.notify("STATUS=waiting for carrier binds");
            let all_bound = futures::future::join_all(carriers.iter().map(|c| c.wait_bound()));
            let _ = tokio::time::timeout(Duration::from_secs(30), all_bound).await;
            let bound = carriers.iter().filter(|c| c.bound() > 0).count();
            n.notify(&format!(
                "READY=1\nSTATUS=serving; {bound} of {} carriers bound",
                carriers.len()
            ));
            let Some(every) = n.watchdog_interval() else {
                return;
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = sd_shutdown.wait_for(|s| *s) => return,
                }
                if tokio::time::timeout(every, st.queue_depth())
                    .await
                    .is_ok_and(|r| r.is_ok())
                {
                    n.notify("WATCHDOG=1");
                } else {
                    tracing::warn!(
                        "store not answering; withholding the systemd watchdog keep-alive"
                    );
                }
            }
        }))
    } else {
        None
    };

    // Reloads: SIGHUP or POST /admin/reload, until shutdown.
    if let Some(path) = &config_path {
        let tx = reload_tx.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        let (done, _) = tokio::sync::oneshot::channel();
                        let _ = tx.send(done).await;
                    }
                    _ = sd.changed() => return,
                }
            }
        });
        tracing::debug!(path = %path.display(), "reload enabled");
    }
    drop(reload_tx);
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(done) = reload_rx.recv() => {
                let Some(path) = &config_path else { continue };
                let result = match crate::config::load(path) {
                    Err(errors) => {
                        tracing::error!("config reload refused; the running config stays:\n{errors}");
                        Err(errors.to_string())
                    }
                    Ok(new) => {
                        let new = Arc::new(new);
                        let needs_restart = restart_only_changes(&live.get(), &new);
                        live.set(new.clone());
                        // Carriers whose connection settings changed re-bind, one bind at a time.
                        for h in &handles {
                            if let Some(c) = new.carriers.iter().find(|c| *c.id == *h.id)
                                && h.reconfigure(c.clone())
                            {
                                tracing::info!(carrier = %h.id, "carrier connection settings changed; re-binding");
                            }
                        }
                        api_state.reload(new.clone());
                        sqlite.set_webhook_apps(webhook_apps(&new));
                        // A renewed certificate is served to new connections.
                        if let (Some(cert), Some((cfg, _, _))) = (&https_cert, &new.http.tls) {
                            cert.set((**cfg).clone());
                        }
                        // New endpoints and secrets: the webhook dispatcher restarts (what it
                        // had in flight is simply retried).
                        let _ = webhook_stop.send(true);
                        let _ = webhook_task.await;
                        (webhook_stop, webhook_task) = webhooks.start(&new);
                        let msg = if needs_restart.is_empty() {
                            "reloaded".to_owned()
                        } else {
                            format!("reloaded; these changes need a restart to apply: {}", needs_restart.join(", "))
                        };
                        tracing::info!("{msg}");
                        Ok(msg)
                    }
                };
                let _ = done.send(result);
            }
        }
    }
    tracing::info!("draining");
    notifier.notify("STOPPING=1\nSTATUS=draining");
    if let Some(t) = sd {
        t.abort();
    }
    let drain = async {
        // 1. HTTP stops taking requests (in-flight ones finish).
        while servers.join_next().await.is_some() {}
        // 2. Dispatchers stop claiming; 3. sessions finish outstanding submits and unbind.
        while dispatchers.join_next().await.is_some() {}
        while carrier_tasks.join_next().await.is_some() {}
        // 4. Every outcome is recorded; 5. webhooks in flight finish (the rest stay queued).
        while completion_tasks.join_next().await.is_some() {}
        let _ = webhook_stop.send(true);
        let _ = (&mut webhook_task).await;
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
        tracing::warn!(deadline = ?DRAIN_DEADLINE, "drain deadline passed; stopping anyway (unsent work stays queued)");
    }
    let _ = sweeper.await;
    if let Some(p) = pruner {
        let _ = p.await;
    }
    for s in sims {
        s.shutdown().await;
    }
    // 6. The store commits what it was handed and closes.
    store.close().await;
    let _ = checkpoints.await;
    tracing::info!("stopped");
    Ok(())
}

/// Apps that can be sent events (they have signing secrets), and whether they have an
/// endpoint of their own.
fn webhook_apps(config: &Config) -> Vec<(String, crate::store::WebhookApp)> {
    config
        .apps
        .iter()
        .filter(|a| !a.webhook_secrets.is_empty())
        .map(|a| {
            let app = crate::store::WebhookApp {
                has_url: a.webhook_url.is_some(),
                status_events: a.status_events,
            };
            (a.id.clone(), app)
        })
        .collect()
}

/// Starts webhook dispatchers for a config's endpoints.
struct Webhooks {
    store: Arc<dyn Store>,
    metrics: Arc<crate::webhook::WebhookMetrics>,
    wake: Arc<Notify>,
}

impl Webhooks {
    fn start(&self, config: &Config) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let endpoints = crate::webhook::endpoints(
            config
                .apps
                .iter()
                .filter(|a| !a.webhook_secrets.is_empty())
                .map(|a| crate::webhook::Endpoint {
                    app_id: a.id.clone(),
                    url: a.webhook_url.clone().unwrap_or_default(),
                    keys: a.webhook_secrets.clone(),
                }),
        );
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(crate::webhook::run_dispatcher(
            self.store.clone(),
            endpoints,
            config.webhooks.clone(),
            self.metrics.clone(),
            self.wake.clone(),
            stopped,
        ));
        (stop, task)
    }
}

/// Settings a reload cannot apply to a running daemon (listeners, store, the set of carriers
/// and how many binds each holds). Carrier connection settings are applied by re-binding.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.http.listen != new.http.listen || old.admin.listen != new.admin.listen {
        out.push("listen addresses".to_owned());
    }
    if old.store.path != new.store.path {
        out.push("store.path".to_owned());
    }
    let shape = |c: &crate::config::Carrier| {
        format!(
            "{}|{}|{:?}|{}|{}|{:?}",
            c.id,
            c.binds,
            c.bind_type,
            c.simulator,
            if c.simulator { c.port } else { 0 },
            c.simulator_receipt_delay,
        )
    };
    let old_c: Vec<String> = old.carriers.iter().map(|c| shape(c)).collect();
    let new_c: Vec<String> = new.carriers.iter().map(|c| shape(c)).collect();
    if old_c != new_c {
        out.push("carriers (added, removed, binds, bind_type or simulator)".to_owned());
    }
    out
}

async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(port: u16, carrier_extra: &str) -> Config {
        crate::config::parse(&format!(
            "[[apps]]\nid = \"a\"\napi_keys = [\"test-key-app-000001\"]\n\
             [[carriers]]\nid = \"c\"\nport = {port}\nsystem_id = \"gw\"\npassword = \"pw\"\n{carrier_extra}\n\
             [[lines]]\nnumber = \"+12125551000\"\napp = \"a\"\ncarrier = \"c\"\n"
        ))
        .expect("valid")
    }

    #[test]
    fn only_the_shape_of_the_carriers_needs_a_restart_not_their_connection() {
        let base = config(2775, "");
        for (port, applied) in [
            (2776, ""),
            (2775, "window = 8"),
            (2775, "interface_version = \"5.0\""),
            (2775, "max_rate = 5.0"),
        ] {
            let new = config(port, applied);
            assert!(restart_only_changes(&base, &new).is_empty(), "{applied}");
        }
        for restart in ["binds = 2", "bind_type = \"transmitter_receiver\""] {
            assert_eq!(
                restart_only_changes(&base, &config(2775, restart)),
                ["carriers (added, removed, binds, bind_type or simulator)"],
                "{restart}"
            );
        }
    }
}
