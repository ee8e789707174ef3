//! The app-facing HTTP API with arbitrary request bodies: the real axum router (limits,
//! auth, handlers) over a real SQLite store, driven in-process with `tower::ServiceExt`.
//!
//! Checked for every answer:
//! - no panic, and no 5xx except `503 unavailable`/`overloaded` (a 500 means a body reached
//!   code that did not expect it);
//! - every non-2xx answer is JSON `{"error": {"code": "...", "message": "..."}}`, and its
//!   status and code are among those the OpenAPI spec documents for the operation;
//! - every 2xx answer is JSON; a `202` from `POST /v1/messages` names a message that
//!   `GET /v1/messages/{id}` then finds.
//!
//! Input: `sel`, then the body. `sel & 7` picks the operation (`POST /v1/messages`,
//! `POST /v1/messages:estimate`, `POST /v1/triggers/{token}` as JSON and as a form,
//! `PUT /v1/numbers/{number}`, `POST /v1/lines/{line}/opt-outs:import` for 5 to 7); the
//! other bits pick the api key (`0x08`: the other app's), the path number (`0x10`: an
//! invalid one), the line (`0x20`: the other app's) and the headers (`sel >> 6`: the
//! operation's `Content-Type`, `text/plain`, none, or none and an `Idempotency-Key`).
#![no_main]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use smsgate::{
    api::{ApiState, openapi_json, router},
    config,
    store::{Store, sqlite::SqliteStore},
    telemetry::Metrics,
};
use tokio::sync::Notify;
use tower::ServiceExt;

const CLINIC_KEY: &str = "fuzz-key-clinic-0001";
const DENTAL_KEY: &str = "fuzz-key-dental-0001";
const CLINIC_LINE: &str = "+12125551000";
const DENTAL_LINE: &str = "+12125552000";
const TOKEN: &str = "ctt0123456789abcdefghijklmnopqrstuvwxyzAB";

fn config_text(db: &std::path::Path) -> String {
    format!(
        r#"
[store]
path = "{db}"

[[apps]]
id = "clinic"
api_keys = ["{CLINIC_KEY}"]

[[apps]]
id = "dental"
api_keys = ["{DENTAL_KEY}"]

[[carriers]]
id = "sim"
host = "127.0.0.1"
port = 9
system_id = "smsgate"
password = "secret"

[[lines]]
number = "{CLINIC_LINE}"
app = "clinic"
carrier = "sim"
rate = 10000.0
burst = 1000

[[lines]]
number = "{DENTAL_LINE}"
app = "dental"
carrier = "sim"
rate = 10000.0
burst = 1000

[[triggers]]
id = "ctt-en"
token = "{TOKEN}"
kind = "call_to_text"
line = "{CLINIC_LINE}"
template = "Sorry for the hold, how can we help?"
"#,
        db = db.display()
    )
}

/// (method, spec path) -> status -> the error codes documented for it.
type Documented = BTreeMap<(String, String), BTreeMap<u16, BTreeSet<String>>>;

struct World {
    rt: tokio::runtime::Runtime,
    app: Router,
    documented: Documented,
}

/// A store directory per process, on tmpfs when there is one (the store fsyncs every commit).
/// libFuzzer exits without running destructors, so directories of dead fuzzers are removed
/// here instead.
fn store_dir() -> PathBuf {
    let base = ["/dev/shm", "/tmp"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("smsgate-fuzz-api-")
                && !PathBuf::from(format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("smsgate-fuzz-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("store dir");
    dir
}

fn documented() -> Documented {
    let spec: Value = serde_json::from_str(&openapi_json()).expect("the spec is JSON");
    let mut out = Documented::new();
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            let by_status = out
                .entry((method.to_ascii_uppercase(), path.clone()))
                .or_default();
            for (status, r) in responses {
                let codes = by_status
                    .entry(status.parse().expect("numeric status"))
                    .or_default();
                let schema = &r["content"]["application/json"]["schema"];
                if let Some(all) = schema["allOf"].as_array() {
                    for part in all {
                        for c in part["properties"]["error"]["properties"]["code"]["enum"]
                            .as_array()
                            .into_iter()
                            .flatten()
                        {
                            codes.insert(c.as_str().expect("a code").to_owned());
                        }
                    }
                }
            }
        }
    }
    assert!(
        out[&("POST".to_owned(), "/v1/messages".to_owned())][&400].contains("invalid_request"),
        "the spec's error responses are not where this target looks for them"
    );
    out
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = store_dir();
        let db = dir.join("smsgate.db");
        let cfg = config::parse(&config_text(&db)).expect("the fuzz config is valid");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let app = rt.block_on(async {
            let metrics = Arc::new(Metrics::new());
            let store = SqliteStore::open(&db, 64, metrics.clone()).expect("store opens");
            let webhook_wake = store.event_notify();
            let store: Arc<dyn Store> = Arc::new(store);
            let wake = HashMap::from([("sim".to_owned(), Arc::new(Notify::new()))]);
            router(ApiState::new(
                Arc::new(cfg),
                store,
                metrics,
                wake,
                webhook_wake,
            ))
        });
        World {
            rt,
            app,
            documented: documented(),
        }
    })
}

async fn call(w: &World, req: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    let resp = w
        .app
        .clone()
        .oneshot(req)
        .await
        .expect("the router is infallible");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the body streams")
        .to_bytes()
        .to_vec();
    (status, ctype, body)
}

fn check(
    w: &World,
    method: &Method,
    spec_path: &str,
    status: StatusCode,
    ctype: Option<&str>,
    body: &[u8],
) -> Value {
    let shown = String::from_utf8_lossy(body);
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("{method} {spec_path} -> {status} {shown}");
    }
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("{method} {spec_path}: {status} with a non-JSON body ({e}): {shown}")
    });
    assert!(
        ctype.is_some_and(|c| c.starts_with("application/json")),
        "{method} {spec_path}: {status} with Content-Type {ctype:?}"
    );
    if status.is_success() {
        return json;
    }
    let code = json["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {spec_path}: {status} without error.code: {shown}"));
    assert!(
        json["error"]["message"].is_string(),
        "{method} {spec_path}: {status} without error.message: {shown}"
    );
    assert!(
        !status.is_server_error()
            || (status == StatusCode::SERVICE_UNAVAILABLE
                && matches!(code, "unavailable" | "overloaded")),
        "{method} {spec_path}: {status} {code}: {shown}"
    );
    let documented = &w.documented[&(method.as_str().to_owned(), spec_path.to_owned())];
    assert!(
        documented
            .get(&status.as_u16())
            .is_some_and(|codes| codes.contains(code)),
        "{method} {spec_path}: {status} {code} is not in the spec ({documented:?}): {shown}"
    );
    json
}

fuzz_target!(|data: &[u8]| {
    let [sel, body @ ..] = data else {
        return;
    };
    let sel = *sel;
    let w = world();
    let key = if sel & 0x08 == 0 {
        CLINIC_KEY
    } else {
        DENTAL_KEY
    };
    let number = if sel & 0x10 == 0 { "+19175551234" } else { "x" };
    let line = if sel & 0x20 == 0 {
        CLINIC_LINE
    } else {
        DENTAL_LINE
    };
    let (method, uri, spec_path, default_ctype) = match sel & 7 {
        0 => (
            Method::POST,
            "/v1/messages".to_owned(),
            "/v1/messages",
            "application/json",
        ),
        1 => (
            Method::POST,
            "/v1/messages:estimate".to_owned(),
            "/v1/messages:estimate",
            "application/json",
        ),
        2 => (
            Method::POST,
            format!("/v1/triggers/{TOKEN}"),
            "/v1/triggers/{token}",
            "application/json",
        ),
        3 => (
            Method::POST,
            format!("/v1/triggers/{TOKEN}"),
            "/v1/triggers/{token}",
            "application/x-www-form-urlencoded",
        ),
        4 => (
            Method::PUT,
            format!("/v1/numbers/{number}"),
            "/v1/numbers/{number}",
            "application/json",
        ),
        _ => (
            Method::POST,
            format!("/v1/lines/{line}/opt-outs:import"),
            "/v1/lines/{line}/opt-outs:import",
            "text/csv",
        ),
    };
    let mut req = Request::builder()
        .method(method.clone())
        .uri(&uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    match sel >> 6 {
        0 => req = req.header(header::CONTENT_TYPE, default_ctype),
        1 => req = req.header(header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        2 => {}
        _ => req = req.header("idempotency-key", "fuzz-key-1"),
    }
    let req = req.body(Body::from(body.to_vec())).unwrap();
    w.rt.block_on(async {
        let (status, ctype, out) = call(w, req).await;
        let json = check(w, &method, spec_path, status, ctype.as_deref(), &out);
        if spec_path == "/v1/messages" && status == StatusCode::ACCEPTED {
            assert_eq!(json["status"], "queued", "{json}");
            let id = json["id"].as_str().expect("an id");
            let get = Request::get(format!("/v1/messages/{id}"))
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap();
            let (status, ctype, out) = call(w, get).await;
            let found = check(
                w,
                &Method::GET,
                "/v1/messages/{id}",
                status,
                ctype.as_deref(),
                &out,
            );
            assert_eq!(status, StatusCode::OK, "{found}");
            assert_eq!(found["id"], id);
        }
    });
});
