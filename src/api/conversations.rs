//! A line's inbox: `GET /v1/lines/{line}/conversations`,
//! `GET /v1/lines/{line}/conversations/{number}/messages` (`?format=csv` exports the whole
//! history), `POST /v1/lines/{line}/conversations/{number}/read`.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState, optouts::own_line};
use crate::{domain::rfc3339, store::ConversationMessage};

const MAX_PAGE: usize = 500;
/// CSV export reads the history in pages of this many.
const EXPORT_PAGE: usize = 2000;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Cursor: conversations whose last text is older than this (ms since the epoch).
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(line): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = own_line(&state, &app, &line)?;
        let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let list = state
            .inner
            .store
            .conversations(line.number.clone(), q.before.unwrap_or(i64::MAX), limit)
            .await?;
        let next = (list.len() == limit)
            .then(|| list.last().map(|c| c.last_at))
            .flatten();
        Ok::<_, ApiError>(Json(json!({
            "conversations": list.iter().map(|c| json!({
                "number": c.number.as_str(),
                "last_message": {
                    "direction": c.last_direction.as_str(),
                    "body": c.last_body,
                    "at": rfc3339(c.last_at),
                },
                "unread": c.unread,
                "opted_out": c.opted_out,
            })).collect::<Vec<_>>(),
            "next_before": next,
        })))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    /// Cursor: texts after this time (ms since the epoch).
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    format: Option<String>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_row(m: &ConversationMessage) -> String {
    format!(
        "{},{},{},{},{}\r\n",
        rfc3339(m.at),
        m.direction.as_str(),
        m.id,
        m.status,
        csv_field(&m.body)
    )
}

pub async fn messages(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((line, number)): Path<(String, String)>,
    Query(q): Query<MessagesQuery>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = own_line(&state, &app, &line)?;
        let number = super::messages::number("number", &number)?;
        let store = &state.inner.store;
        match q.format.as_deref() {
            Some("csv") => {
                let mut out = String::from("time,direction,id,status,body\r\n");
                let mut after = q.after.unwrap_or(-1);
                loop {
                    let page = store
                        .conversation_messages(
                            line.number.clone(),
                            number.clone(),
                            after,
                            EXPORT_PAGE,
                        )
                        .await?;
                    for m in &page {
                        out.push_str(&csv_row(m));
                    }
                    match page.last() {
                        Some(last) if page.len() == EXPORT_PAGE => after = last.at,
                        _ => break,
                    }
                }
                let name = format!(
                    "attachment; filename=\"conversation-{}-{}.csv\"",
                    line.number.digits(),
                    number.digits()
                );
                Ok::<_, ApiError>(
                    (
                        [
                            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                            (header::CONTENT_DISPOSITION, name),
                        ],
                        out,
                    )
                        .into_response(),
                )
            }
            None | Some("json") => {
                let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
                let page = store
                    .conversation_messages(
                        line.number.clone(),
                        number.clone(),
                        q.after.unwrap_or(-1),
                        limit,
                    )
                    .await?;
                let next = (page.len() == limit)
                    .then(|| page.last().map(|m| m.at))
                    .flatten();
                Ok(Json(json!({
                    "messages": page.iter().map(|m| json!({
                        "id": m.id.as_str(),
                        "direction": m.direction.as_str(),
                        "body": m.body,
                        "status": m.status,
                        "at": rfc3339(m.at),
                    })).collect::<Vec<_>>(),
                    "next_after": next,
                }))
                .into_response())
            }
            Some(other) => Err(ApiError::invalid_request(format!(
                "format {other:?} is not supported (json or csv)"
            ))),
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn read(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((line, number)): Path<(String, String)>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = own_line(&state, &app, &line)?;
        let number = super::messages::number("number", &number)?;
        let n = state
            .inner
            .store
            .mark_read(line.number.clone(), number)
            .await?;
        Ok::<_, ApiError>(Json(json!({ "marked_read": n })))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}
