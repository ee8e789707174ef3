//! The app-facing HTTP API (axum) and the admin listener. [`router`] and [`admin_router`]
//! take their state so tests drive them without a socket.

mod conversations;
mod error;
mod messages;
mod numbers;
mod openapi;
mod optouts;
mod triggers;
mod webhooks;

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    error_handling::HandleErrorLayer,
    extract::{
        DefaultBodyLimit, Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    handler::Handler,
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, get},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tower::ServiceBuilder;

pub use error::ApiError;
pub use openapi::{openapi, openapi_json};

use crate::{
    config::{App, Config},
    smpp::carrier::CarrierHandle,
    store::Store,
    telemetry::Metrics,
};

/// What the handlers share; a cheap clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    /// What a config reload replaces as a whole; read per request.
    // std RwLock: held only to clone the Arc, never across an await.
    live: std::sync::RwLock<Arc<Snapshot>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Wakes a carrier's dispatcher when new work is queued.
    wake: HashMap<String, Arc<Notify>>,
    segment: crate::segment::Options,
    numbers: crate::policy::NumberIntel,
    /// Wakes the webhook dispatcher after a replay.
    webhook_wake: Arc<Notify>,
}

/// The config and what is derived from it, swapped together on reload.
struct Snapshot {
    config: Arc<Config>,
    /// SHA-256 of every api key, so comparing takes the same time whatever the key's length.
    keys: Vec<([u8; 32], Arc<App>)>,
    triggers: crate::triggers::TriggerSet,
}

impl Snapshot {
    fn new(config: Arc<Config>) -> Self {
        let keys = config
            .apps
            .iter()
            .flat_map(|a| {
                a.api_keys
                    .iter()
                    .map(move |k| (digest(k.as_bytes()), a.clone()))
            })
            .collect();
        let triggers = crate::triggers::TriggerSet::new(&config.triggers);
        Self {
            config,
            keys,
            triggers,
        }
    }
}

impl ApiState {
    fn snap(&self) -> Arc<Snapshot> {
        self.inner
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serves a reloaded config (apps, keys, lines, triggers) from the next request on.
    pub fn reload(&self, config: Arc<Config>) {
        let snap = Arc::new(Snapshot::new(config));
        *self.inner.live.write().unwrap_or_else(|p| p.into_inner()) = snap;
    }

    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        wake: HashMap<String, Arc<Notify>>,
        webhook_wake: Arc<Notify>,
    ) -> Self {
        let numbers = crate::policy::NumberIntel::new(
            store.clone(),
            config.numbers.lookup.clone(),
            metrics.number_checks.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                numbers,
                webhook_wake,
                live: std::sync::RwLock::new(Arc::new(Snapshot::new(config))),
                store,
                metrics,
                wake,
                segment: crate::segment::Options::default(),
            }),
        }
    }

    /// The app whose api key is in the `Authorization` header. Every key is compared, in
    /// constant time, so timing does not reveal which key or how much of it matched.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<App>, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        let presented = digest(token.as_bytes());
        let mut found = None;
        let snap = self.snap();
        for (key, app) in &snap.keys {
            if bool::from(key.ct_eq(&presented)) {
                found = Some(app.clone());
            }
        }
        found.ok_or_else(ApiError::unauthorized)
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// One operation of the app-facing API.
pub struct Endpoint {
    pub method: Method,
    /// The path as the router matches it.
    pub route: &'static str,
    /// The path as the OpenAPI spec writes it: the same, except where the handler reads an
    /// action out of an id's path segment (`/v1/webhooks/dead/{id}:replay`).
    pub spec_path: &'static str,
    handler: MethodRouter<ApiState>,
}

impl Endpoint {
    fn new<H, T>(method: Method, route: &'static str, handler: H) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method the router knows");
        Self {
            method,
            route,
            spec_path: route,
            handler: axum::routing::on(filter, handler),
        }
    }

    fn documented_as(mut self, spec_path: &'static str) -> Self {
        self.spec_path = spec_path;
        self
    }
}

/// Every operation of the app-facing API, in one place: [`router`] is built from this list,
/// and `tests/openapi.rs` checks the OpenAPI spec against it both ways.
pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        Endpoint::new(M::POST, "/v1/messages", messages::submit),
        Endpoint::new(M::POST, "/v1/messages:estimate", messages::estimate),
        Endpoint::new(M::GET, "/v1/messages/{id}", messages::get),
        Endpoint::new(M::POST, "/v1/triggers/{token}", triggers::fire),
        Endpoint::new(M::GET, "/v1/numbers/{number}", numbers::get),
        Endpoint::new(M::PUT, "/v1/numbers/{number}", numbers::put),
        Endpoint::new(M::GET, "/v1/webhooks/dead", webhooks::list),
        Endpoint::new(M::POST, "/v1/webhooks/dead:replay", webhooks::replay_all),
        Endpoint::new(M::POST, "/v1/webhooks/dead/{id}", webhooks::replay_one)
            .documented_as("/v1/webhooks/dead/{id}:replay"),
        Endpoint::new(M::GET, "/v1/lines/{line}/opt-outs", optouts::list),
        Endpoint::new(M::POST, "/v1/lines/{line}/opt-outs:import", optouts::import),
        Endpoint::new(M::GET, "/v1/lines/{line}/opt-outs/{number}", optouts::get),
        Endpoint::new(M::PUT, "/v1/lines/{line}/opt-outs/{number}", optouts::put),
        Endpoint::new(
            M::DELETE,
            "/v1/lines/{line}/opt-outs/{number}",
            optouts::delete,
        ),
        Endpoint::new(
            M::GET,
            "/v1/lines/{line}/conversations",
            conversations::list,
        ),
        Endpoint::new(
            M::GET,
            "/v1/lines/{line}/conversations/{number}/messages",
            conversations::messages,
        ),
        Endpoint::new(
            M::POST,
            "/v1/lines/{line}/conversations/{number}/read",
            conversations::read,
        ),
        Endpoint::new(M::GET, "/v1/openapi.json", openapi::serve),
    ]
}

/// The app-facing router with its limits: body size, concurrency (excess is shed with 503
/// `overloaded`, not queued), and a per-request timeout.
pub fn router(state: ApiState) -> Router {
    let snap = state.snap();
    let http = &snap.config.http;
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|e: tower::BoxError| async move {
            if e.is::<tower::timeout::error::Elapsed>() {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "request timed out",
                )
                .into_response()
            } else {
                ApiError::overloaded().into_response()
            }
        }))
        .load_shed()
        .concurrency_limit(http.concurrency_limit)
        .timeout(http.request_timeout);
    let mut api = Router::new();
    for e in endpoints() {
        api = api.route(e.route, e.handler);
    }
    api.fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(limits)
        .with_state(state)
}

/// Readiness needs the store open and at least one carrier bind up.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub carriers: Vec<Arc<CarrierHandle>>,
    pub store: Arc<dyn Store>,
    /// Lines' rate classes, for the queue depth per class.
    pub config: crate::config::Live,
    /// Where `POST /admin/reload` asks for a reload (None: started without a config file).
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
}

/// A reload request; answered with a summary or the new config's errors.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

async fn reload(State(s): State<AdminState>) -> Response {
    let Some(tx) = &s.reload else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "reload needs a daemon started with a config file",
        )
        .into_response();
    };
    let (done, answer) = tokio::sync::oneshot::channel();
    if tx.send(done).await.is_err() {
        return ApiError::unavailable().into_response();
    }
    match answer.await {
        Ok(Ok(msg)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": msg })),
        )
            .into_response(),
        Ok(Err(errors)) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            "the new config was refused; the running config stays",
        )
        .with_details(serde_json::json!({ "errors": errors.lines().collect::<Vec<_>>() }))
        .into_response(),
        Err(_) => ApiError::unavailable().into_response(),
    }
}

pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/admin/reload", axum::routing::post(reload))
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> Response {
    // Counted per line at scrape time (a read connection, bounded in time), then summed by
    // the lines' rate classes as configured now.
    if let Ok(Ok(by_line)) =
        tokio::time::timeout(Duration::from_millis(500), s.store.queue_depth_by_line()).await
    {
        use crate::config::RateClass;
        let config = s.config.get();
        let mut by_class = [0u64; 3];
        let class_index = |c: RateClass| match c {
            RateClass::LongCode => 0,
            RateClass::TollFree => 1,
            RateClass::ShortCode => 2,
        };
        for (line, n) in by_line {
            // Stored numbers are already normalised: no parsing per line and scrape.
            let class = config
                .lines
                .get(&crate::domain::PhoneNumber::from_store(line))
                .map(|l| l.rate_class)
                .unwrap_or_default();
            by_class[class_index(class)] += n;
        }
        s.metrics
            .queue_depth
            .set(by_class.iter().sum::<u64>() as i64);
        for (name, n) in ["long_code", "toll_free", "short_code"]
            .iter()
            .zip(by_class)
        {
            s.metrics
                .queue_depth_by_class
                .with_label_values(&[name])
                .set(n as i64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let bound: Vec<String> = s
        .carriers
        .iter()
        .map(|c| format!("{}={}", c.id, c.bound()))
        .collect();
    let store_ok = tokio::time::timeout(Duration::from_millis(500), s.store.queue_depth())
        .await
        .is_ok_and(|r| r.is_ok());
    let ready = store_ok && s.carriers.iter().any(|c| c.bound() > 0);
    let body = format!(
        "{}\nstore={}\nbinds: {}\n",
        if ready { "ready" } else { "not ready" },
        if store_ok { "ok" } else { "unavailable" },
        bound.join(" ")
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Query parameters, refused with our JSON error shape (axum's own rejection is plain text).
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::invalid_request(e.body_text()))
}

/// Path parameters, refused with our JSON error shape (axum's own rejection is plain text);
/// only a segment that is not UTF-8 once percent-decoded is refused.
fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(p)| p)
        .map_err(|e| ApiError::invalid_request(e.body_text()))
}

/// Parses a JSON body ourselves so every malformed request gets our JSON error shape.
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
}
