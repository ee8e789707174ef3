//! A line's inbox: `GET /v1/lines/{line}/conversations`,
//! `GET /v1/lines/{line}/conversations/{number}/messages` (`?format=csv` exports the whole
//! history), `POST /v1/lines/{line}/conversations/{number}/read`.

use axum::{
    Json,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema, openapi::schema::ObjectBuilder};

use super::{
    ApiError, ApiState,
    error::error_responses,
    openapi::{self, E164, MessageId as MessageIdSchema, PhoneNumber as PhoneNumberSchema},
    optouts::own_line,
};
use crate::{domain::rfc3339, store::ConversationMessage};

const MAX_PAGE: usize = 500;
/// CSV export reads the history in pages of this many.
const EXPORT_PAGE: usize = 2000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Cursor: conversations whose last text is older than this (ms since the epoch; the
    /// previous page's `next_before`).
    #[serde(default)]
    #[param(nullable = false, minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    before: Option<i64>,
    /// Page size: 1 to 500 (default 50; values outside are brought into range).
    #[serde(default)]
    #[param(nullable = false, minimum = 0, maximum = 18446744073709551615u64)]
    limit: Option<usize>,
}

/// A page of a line's conversations, the latest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    conversations: Vec<ConversationView>,
    /// Pass as `before` for the next page; `null` on the last page.
    next_before: Option<i64>,
}

/// One number a line has texted with.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Conversation)]
pub struct ConversationView {
    #[schema(value_type = E164)]
    number: String,
    last_message: LastMessage,
    /// Inbound texts not yet marked read.
    unread: u32,
    /// Whether the number opted out of the line.
    opted_out: bool,
}

/// The latest text of a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastMessage {
    #[schema(schema_with = direction)]
    direction: &'static str,
    body: String,
    #[schema(schema_with = openapi::date_time)]
    at: String,
}

fn direction() -> ObjectBuilder {
    openapi::one_of(&["inbound", "outbound"])
}

/// A page of a conversation's texts, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationMessages {
    messages: Vec<ConversationMessageView>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<i64>,
}

/// One text of a conversation, either way.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConversationMessage)]
pub struct ConversationMessageView {
    /// The text's id; an outbound one is a message (`GET /v1/messages/{id}`).
    #[schema(value_type = MessageIdSchema)]
    id: String,
    #[schema(schema_with = direction)]
    direction: &'static str,
    body: String,
    #[schema(schema_with = message_status)]
    status: String,
    #[schema(schema_with = openapi::date_time)]
    at: String,
}

fn message_status() -> ObjectBuilder {
    openapi::one_of(&[
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "expired",
        "read",
        "unread",
    ])
    .description(Some(
        "Outbound: the message's state; inbound: `read` or `unread`.",
    ))
}

/// What marking a conversation read did.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedRead {
    /// Inbound texts that were unread.
    marked_read: u64,
}

/// List a line's conversations
///
/// Every number the line has texted with, the latest conversation first, with its last text,
/// unread count and opt-out.
#[utoipa::path(
    get,
    path = "/v1/lines/{line}/conversations",
    tag = "conversations",
    operation_id = "list_conversations",
    params(("line" = PhoneNumberSchema, Path, description = "One of the app's lines"), ListQuery),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationList),
        ListErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    line: Result<Path<String>, PathRejection>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let line = super::path(line)?;
        let q = super::query(q)?;
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
        Ok::<_, ApiError>(Json(ConversationList {
            conversations: list
                .iter()
                .map(|c| ConversationView {
                    number: c.number.as_str().to_owned(),
                    last_message: LastMessage {
                        direction: c.last_direction.as_str(),
                        body: c.last_body.clone(),
                        at: rfc3339(c.last_at),
                    },
                    unread: c.unread,
                    opted_out: c.opted_out,
                })
                .collect(),
            next_before: next,
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Cursor: texts after this time (ms since the epoch; the previous page's `next_after`).
    /// With `format=csv`, the export starts after it.
    #[serde(default)]
    #[param(nullable = false, minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    after: Option<i64>,
    /// Page size: 1 to 500 (default 100; values outside are brought into range). Not used by
    /// `format=csv`, which exports the whole history.
    #[serde(default)]
    #[param(nullable = false, minimum = 0, maximum = 18446744073709551615u64)]
    limit: Option<usize>,
    #[serde(default)]
    #[param(schema_with = format)]
    format: Option<String>,
}

fn format() -> ObjectBuilder {
    openapi::one_of(&["json", "csv"]).description(Some(
        "`json` (the default): a page; `csv`: the whole conversation as a CSV download \
         (`text/csv`, columns `time,direction,id,status,body`).",
    ))
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

/// Read a conversation
///
/// The texts between a line and a number, both ways, oldest first; `format=csv` exports the
/// whole conversation.
#[utoipa::path(
    get,
    path = "/v1/lines/{line}/conversations/{number}/messages",
    tag = "conversations",
    operation_id = "conversation_messages",
    params(
        ("line" = PhoneNumberSchema, Path, description = "One of the app's lines"),
        ("number" = PhoneNumberSchema, Path, description = "The other party"),
        MessagesQuery,
    ),
    responses(
        (status = 200, description = "A page of texts, or with `format=csv` the whole conversation", headers(
            ("Content-Disposition" = String, description = "With `format=csv`: `attachment; filename=\"conversation-<line>-<number>.csv\"` (digits only)"),
        ), content(
            (ConversationMessages = "application/json"),
            (String = "text/csv", example = "time,direction,id,status,body\r\n2026-11-22T09:00:00Z,inbound,msg_01KAKX2Z9Q8W3E5R7T9Y1V3H5N,read,\"Yes, 9:00 works\"\r\n"),
        )),
        MessagesErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn messages(
    State(state): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<MessagesQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let (line, number) = super::path(p)?;
        let q = super::query(q)?;
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
                Ok(Json(ConversationMessages {
                    messages: page
                        .iter()
                        .map(|m| ConversationMessageView {
                            id: m.id.as_str().to_owned(),
                            direction: m.direction.as_str(),
                            body: m.body.clone(),
                            status: m.status.clone(),
                            at: rfc3339(m.at),
                        })
                        .collect(),
                    next_after: next,
                })
                .into_response())
            }
            Some(other) => Err(ApiError::invalid_request(format!(
                "format {other:?} is not supported (json or csv)"
            ))),
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

error_responses!(MessagesErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    403 => ["forbidden_line"],
    404 => ["unknown_line"],
    422 => ["invalid_number"],
    503 => ["overloaded", "unavailable", "timeout"],
});

/// Mark a conversation read
///
/// Every inbound text from the number to the line is marked read.
#[utoipa::path(
    post,
    path = "/v1/lines/{line}/conversations/{number}/read",
    tag = "conversations",
    operation_id = "mark_conversation_read",
    params(
        ("line" = PhoneNumberSchema, Path, description = "One of the app's lines"),
        ("number" = PhoneNumberSchema, Path, description = "The other party"),
    ),
    responses(
        (status = 200, description = "Marked read", body = MarkedRead),
        ReadErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn read(
    State(state): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let (line, number) = super::path(p)?;
        let line = own_line(&state, &app, &line)?;
        let number = super::messages::number("number", &number)?;
        let n = state
            .inner
            .store
            .mark_read(line.number.clone(), number)
            .await?;
        Ok::<_, ApiError>(Json(MarkedRead { marked_read: n }))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

error_responses!(ReadErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    403 => ["forbidden_line"],
    404 => ["unknown_line"],
    422 => ["invalid_number"],
    503 => ["overloaded", "unavailable", "timeout"],
});
