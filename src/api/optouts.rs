//! The opt-out list of a line: `GET|PUT|DELETE /v1/lines/{line}/opt-outs/{number}`,
//! `GET /v1/lines/{line}/opt-outs` (paged), `POST /v1/lines/{line}/opt-outs:import`.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiError, ApiState,
    error::error_responses,
    openapi::{self, E164, PhoneNumber as PhoneNumberSchema},
};
use crate::{
    config::{App, Line},
    domain::{PhoneNumber, rfc3339},
    store::{OptOut, OptOutChange},
};

const MAX_PAGE: usize = 1000;

/// The caller's line, or the error that says why not.
pub(super) fn own_line(state: &ApiState, app: &App, raw: &str) -> Result<Arc<Line>, ApiError> {
    let number = super::messages::number("line", raw)?;
    let snap = state.snap();
    let line = snap.config.lines.get(&number).ok_or_else(|| {
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

/// A number that opted out of a line.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutView {
    #[schema(value_type = E164)]
    line: String,
    #[schema(value_type = E164)]
    number: String,
    /// Always `true`.
    opted_out: bool,
    /// How: `keyword` (they texted STOP), `api`, `import`.
    source: String,
    #[schema(schema_with = openapi::date_time)]
    created_at: String,
}

fn view(o: &OptOut) -> OptOutView {
    OptOutView {
        line: o.line.as_str().to_owned(),
        number: o.number.as_str().to_owned(),
        opted_out: true,
        source: o.source.clone(),
        created_at: rfc3339(o.created_at),
    }
}

/// A page of a line's opt-outs, by number.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutList {
    opt_outs: Vec<OptOutView>,
    /// Pass as `after` for the next page; `null` on the last page.
    #[schema(value_type = Option<E164>)]
    next_after: Option<String>,
}

/// A number's opt-out of a line after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutChanged {
    #[schema(value_type = E164)]
    line: String,
    #[schema(value_type = E164)]
    number: String,
    opted_out: bool,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    /// Rows read (not counting a header or blank lines) that were valid.
    rows: usize,
    /// Rows that changed something.
    changed: u64,
    /// Rows that were not applied, and why.
    errors: Vec<ImportError>,
}

/// A row that was not applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportError {
    /// The row's line number in the body, from 1.
    line: usize,
    message: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Cursor: numbers after this one (the previous page's `next_after`).
    #[serde(default)]
    after: Option<String>,
    /// Page size: 1 to 1000 (default 100; values outside are brought into range).
    #[serde(default)]
    #[param(nullable = false, minimum = 0, maximum = 18446744073709551615u64)]
    limit: Option<usize>,
}

/// List a line's opt-outs
///
/// By number, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/lines/{line}/opt-outs",
    tag = "opt-outs",
    operation_id = "list_opt_outs",
    params(("line" = PhoneNumberSchema, Path, description = "One of the app's lines"), Page),
    responses(
        (status = 200, description = "A page of opt-outs", body = OptOutList),
        ListErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    line: Result<Path<String>, PathRejection>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = super::path(line)?;
        let page = super::query(page)?;
        let line = own_line(&state, &app, &line)?;
        let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
        let after = page.after.unwrap_or_default();
        let list = state
            .inner
            .store
            .opt_outs(line.number.clone(), after, limit)
            .await?;
        let next = (list.len() == limit).then(|| list.last().map(|o| o.number.as_str().to_owned()));
        Ok::<_, ApiError>(Json(OptOutList {
            opt_outs: list.iter().map(view).collect(),
            next_after: next.flatten(),
        }))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

error_responses!(ListErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    403 => ["forbidden_line"],
    404 => ["unknown_line"],
    422 => ["invalid_number"],
    503 => ["overloaded", "unavailable", "timeout"],
});

/// Read a number's opt-out of a line
#[utoipa::path(
    get,
    path = "/v1/lines/{line}/opt-outs/{number}",
    tag = "opt-outs",
    operation_id = "get_opt_out",
    params(
        ("line" = PhoneNumberSchema, Path, description = "One of the app's lines"),
        ("number" = PhoneNumberSchema, Path, description = "The number"),
    ),
    responses(
        (status = 200, description = "The number opted out of the line", body = OptOutView),
        GetErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let (line, number) = super::path(p)?;
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

error_responses!(GetErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    403 => ["forbidden_line"],
    404 => ["unknown_line", "not_found"],
    422 => ["invalid_number"],
    503 => ["overloaded", "unavailable", "timeout"],
});

error_responses!(ChangeErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    403 => ["forbidden_line"],
    404 => ["unknown_line"],
    422 => ["invalid_number"],
    503 => ["overloaded", "unavailable", "timeout"],
});

async fn change(
    state: &ApiState,
    headers: &HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    opted_out: bool,
) -> Result<Response, ApiError> {
    let app = state.authenticate(headers)?;
    let (line, number) = super::path(p)?;
    let line = own_line(state, &app, &line)?;
    let number = super::messages::number("number", &number)?;
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
    Ok(Json(OptOutChanged {
        line: line.number.as_str().to_owned(),
        number: number.as_str().to_owned(),
        opted_out,
    })
    .into_response())
}

/// Opt a number out of a line
///
/// The line sends it nothing more (sends are refused with `opted_out`) until it opts back in.
#[utoipa::path(
    put,
    path = "/v1/lines/{line}/opt-outs/{number}",
    tag = "opt-outs",
    operation_id = "put_opt_out",
    params(
        ("line" = PhoneNumberSchema, Path, description = "One of the app's lines"),
        ("number" = PhoneNumberSchema, Path, description = "The number"),
    ),
    responses(
        (status = 200, description = "Opted out", body = OptOutChanged, links(
            ("GetOptOut" = (
                operation_id = "get_opt_out",
                parameters(("line" = "$request.path.line"), ("number" = "$request.path.number")),
                description = "The opt-out just stored",
            )),
            ("DeleteOptOut" = (
                operation_id = "delete_opt_out",
                parameters(("line" = "$request.path.line"), ("number" = "$request.path.number")),
                description = "Opt the number back in",
            )),
        )),
        ChangeErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    change(&state, &headers, p, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Opt a number back in to a line
#[utoipa::path(
    delete,
    path = "/v1/lines/{line}/opt-outs/{number}",
    tag = "opt-outs",
    operation_id = "delete_opt_out",
    params(
        ("line" = PhoneNumberSchema, Path, description = "One of the app's lines"),
        ("number" = PhoneNumberSchema, Path, description = "The number"),
    ),
    responses(
        (status = 200, description = "Opted back in (also when it had not opted out)", body = OptOutChanged),
        ChangeErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn delete(
    State(state): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    change(&state, &headers, p, false)
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

/// Import opt-outs
///
/// Bulk sync from a system of record: CSV (`number[,opted_out]`, optional header line starting
/// `number`; `opted_out` is `true`/`1`/`yes` (the default) or `false`/`0`/`no`) or JSON lines
/// (`{"number": "...", "opted_out": true}`), whatever the `Content-Type`. Rows that fail are
/// reported with their line number; the others are applied.
#[utoipa::path(
    post,
    path = "/v1/lines/{line}/opt-outs:import",
    tag = "opt-outs",
    operation_id = "import_opt_outs",
    params(("line" = PhoneNumberSchema, Path, description = "One of the app's lines")),
    request_body(
        description = "UTF-8 text, one row a line: CSV rows or JSON lines, mixed as you like. \
                       The `Content-Type` is not looked at (`text/csv` and \
                       `application/x-ndjson` are read the same). No body: nothing to import.",
        content(
            (Option<String> = "text/plain", examples(
                ("csv" = (summary = "CSV", value = json!("number,opted_out\n+19175551234,true\n2125550199,false\n"))),
                ("json_lines" = (summary = "JSON lines", value = json!("{\"number\": \"+19175551234\"}\n{\"number\": \"2125550199\", \"opted_out\": false}\n"))),
            )),
        ),
    ),
    responses(
        (status = 200, description = "Applied; rows that were not are in `errors`", body = ImportResult),
        ImportErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn import(
    State(state): State<ApiState>,
    headers: HeaderMap,
    line: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = super::path(line)?;
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
                Err(message) => errors.push(ImportError {
                    line: i + 1,
                    message,
                }),
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
        Ok::<_, ApiError>(Json(ImportResult {
            rows: rows.len(),
            changed,
            errors,
        }))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

error_responses!(ImportErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    403 => ["forbidden_line"],
    404 => ["unknown_line"],
    413 => ["request_too_large"],
    422 => ["invalid_number"],
    503 => ["overloaded", "unavailable", "timeout"],
});
