//! The opt-out list of a line: `GET|PUT|DELETE /v1/lines/{line}/opt-outs/{number}`,
//! `GET /v1/lines/{line}/opt-outs` (paged), `POST /v1/lines/{line}/opt-outs:import`.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::{
    config::{App, Line},
    domain::{PhoneNumber, rfc3339},
    store::{OptOut, OptOutChange},
};

const MAX_PAGE: usize = 1000;

/// The caller's line, or the error that says why not.
pub(super) fn own_line(state: &ApiState, app: &App, raw: &str) -> Result<Arc<Line>, ApiError> {
    let number = super::messages::number("line", raw)?;
    let line = state.inner.config.lines.get(&number).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_line",
            "no such line on this gateway",
        )
    })?;
    if line.app != app.id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_line",
            "this line belongs to another app",
        ));
    }
    Ok(line.clone())
}

fn view(o: &OptOut) -> Value {
    json!({
        "line": o.line.as_str(),
        "number": o.number.as_str(),
        "opted_out": true,
        "source": o.source,
        "created_at": rfc3339(o.created_at),
    })
}

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(line): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = own_line(&state, &app, &line)?;
        let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
        let after = page.after.unwrap_or_default();
        let list = state
            .inner
            .store
            .opt_outs(line.number.clone(), after, limit)
            .await?;
        let next = (list.len() == limit).then(|| list.last().map(|o| o.number.as_str().to_owned()));
        Ok::<_, ApiError>(Json(json!({
            "opt_outs": list.iter().map(view).collect::<Vec<_>>(),
            "next_after": next.flatten(),
        })))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

pub async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((line, number)): Path<(String, String)>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = own_line(&state, &app, &line)?;
        let number = super::messages::number("number", &number)?;
        match state
            .inner
            .store
            .opt_out(line.number.clone(), number.clone())
            .await?
        {
            Some(o) => Ok::<_, ApiError>(Json(view(&o))),
            None => Err(ApiError::not_found(
                "this number has not opted out of this line",
            )),
        }
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

async fn change(
    state: &ApiState,
    headers: &HeaderMap,
    line: &str,
    number: &str,
    opted_out: bool,
) -> Result<Response, ApiError> {
    let app = state.authenticate(headers)?;
    let line = own_line(state, &app, line)?;
    let number = super::messages::number("number", number)?;
    state
        .inner
        .store
        .change_opt_out(
            app.id.clone(),
            OptOutChange {
                lines: vec![line.number.clone()],
                number: number.clone(),
                opted_out,
                source: "api".into(),
            },
        )
        .await?;
    Ok(Json(json!({
        "line": line.number.as_str(),
        "number": number.as_str(),
        "opted_out": opted_out,
    }))
    .into_response())
}

pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((line, number)): Path<(String, String)>,
) -> Response {
    change(&state, &headers, &line, &number, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn delete(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((line, number)): Path<(String, String)>,
) -> Response {
    change(&state, &headers, &line, &number, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRow {
    number: String,
    #[serde(default = "yes")]
    opted_out: bool,
}

fn yes() -> bool {
    true
}

/// Bulk sync from a system of record: CSV (`number[,opted_out]`, optional header) or JSON lines
/// (`{"number": "...", "opted_out": true}`). Rows that fail are reported with their line
/// number; the others are applied.
pub async fn import(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(line): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = own_line(&state, &app, &line)?;
        let body = super::messages::body_or_error(body)?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::invalid_request("import body must be UTF-8 text"))?;
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let row = raw.trim();
            if row.is_empty() || (i == 0 && row.to_ascii_lowercase().starts_with("number")) {
                continue;
            }
            let parsed = if row.starts_with('{') {
                serde_json::from_str::<ImportRow>(row).map_err(|e| e.to_string())
            } else {
                let mut cols = row.split(',').map(str::trim);
                let number = cols.next().unwrap_or_default().to_owned();
                match cols.next() {
                    None | Some("") | Some("true") | Some("1") | Some("yes") => Ok(ImportRow {
                        number,
                        opted_out: true,
                    }),
                    Some("false") | Some("0") | Some("no") => Ok(ImportRow {
                        number,
                        opted_out: false,
                    }),
                    Some(other) => Err(format!("opted_out {other:?} is not true/false")),
                }
            };
            match parsed.and_then(|r| {
                PhoneNumber::parse(&r.number)
                    .map(|n| (n, r.opted_out))
                    .map_err(|e| e.to_string())
            }) {
                Ok(r) => rows.push(r),
                Err(message) => errors.push(json!({ "line": i + 1, "message": message })),
            }
        }
        let mut changed = 0;
        for (number, opted_out) in rows.iter().cloned() {
            changed += state
                .inner
                .store
                .change_opt_out(
                    app.id.clone(),
                    OptOutChange {
                        lines: vec![line.number.clone()],
                        number,
                        opted_out,
                        source: "import".into(),
                    },
                )
                .await?;
        }
        Ok::<_, ApiError>(Json(json!({
            "rows": rows.len(),
            "changed": changed,
            "errors": errors,
        })))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}
