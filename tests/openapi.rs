//! The OpenAPI spec: the committed `docs/openapi.json` is what the code generates, it covers
//! exactly the router's operations, and the daemon serves it at `/v1/openapi.json`.

mod common;

use std::{collections::BTreeSet, path::PathBuf};

use common::*;
use serde_json::Value;

const REGENERATE: &str = "run `cargo test --test openapi -- --ignored regenerate` \
    (or `UPDATE_OPENAPI=1 cargo test --test openapi`) to rewrite it";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

fn write_committed() {
    let path = committed_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, smsgate::api::openapi_json()).unwrap();
}

/// Rewrites `docs/openapi.json` from the code.
#[test]
#[ignore = "rewrites docs/openapi.json"]
fn regenerate() {
    write_committed();
}

#[test]
fn the_committed_spec_is_what_the_code_generates() {
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        write_committed();
    }
    let generated = smsgate::api::openapi_json();
    let committed = std::fs::read_to_string(committed_path())
        .unwrap_or_else(|e| panic!("cannot read docs/openapi.json ({e}); {REGENERATE}"));
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!("docs/openapi.json differs from the generated spec from line {line}; {REGENERATE}");
    }
}

fn spec() -> Value {
    serde_json::from_str(&smsgate::api::openapi_json()).unwrap()
}

#[test]
fn every_route_of_the_router_is_in_the_spec_and_nothing_else_is() {
    let routed: BTreeSet<(String, String)> = smsgate::api::endpoints()
        .iter()
        .map(|e| (e.method.as_str().to_owned(), e.spec_path.to_owned()))
        .collect();
    let spec = spec();
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| {
                    ["get", "put", "post", "delete", "patch", "head", "options"]
                        .contains(&k.as_str())
                })
                .map(|m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routed but not in the spec (add #[utoipa::path] and list it in api/openapi.rs): {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "in the spec but not routed (api::endpoints): {unrouted:?}"
    );
}

#[test]
fn every_operation_documents_its_errors_with_the_error_schema() {
    let spec = spec();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("503"),
                "{method} {path} documents 503 (overloaded, timeout)"
            );
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().any(|r| r.get("api_key").is_some()));
            let public = path == "/v1/openapi.json" || path.starts_with("/v1/triggers/");
            assert_eq!(
                secured, !public,
                "{method} {path}: api key required unless public"
            );
            assert_eq!(
                responses.contains_key("401"),
                secured,
                "{method} {path}: 401 documented exactly when an api key is required"
            );
            for (status, response) in responses {
                if !status.starts_with(['4', '5']) {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["allOf"][0]["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
                let codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} {status} lists its codes"));
                assert!(!codes.is_empty());
            }
        }
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_daemon_serves_the_spec_without_an_api_key() {
    let dir = tempfile::tempdir().unwrap();
    // No carrier is listening there: the API answers all the same.
    let d = Daemon::start(&config_text(&dir.path().join("t.db"), free_port(), "")).await;
    // The listener is bound before the daemon starts: the request waits for it to serve.
    let r = reqwest::get(d.url("/v1/openapi.json")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), smsgate::api::openapi_json());
    d.stop().await;
}
