//! Dead letters: `GET /v1/webhooks/dead`, `POST /v1/webhooks/dead/{id}:replay`, and
//! `POST /v1/webhooks/dead:replay` for all of the app's dead letters.

use axum::{
    Json,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiError, ApiState,
    error::error_responses,
    openapi::{self, EventId as EventIdSchema},
};
use crate::domain::{EventId, rfc3339};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Cursor: dead letters after this outbox position (the previous page's `next_after`).
    #[serde(default)]
    #[param(nullable = false, minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    after: Option<i64>,
    /// Page size: 1 to 1000 (default 100; values outside are brought into range).
    #[serde(default)]
    #[param(nullable = false, minimum = 0, maximum = 18446744073709551615u64)]
    limit: Option<usize>,
}

/// A page of the app's dead letters, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    dead: Vec<DeadLetter>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<i64>,
}

/// A webhook event that was not delivered within `webhooks.max_age` (or was refused with
/// `410 Gone`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    #[schema(value_type = EventIdSchema)]
    id: String,
    /// `message.received`, `message.status`, `opt_out.changed`.
    #[serde(rename = "type")]
    kind: String,
    /// Delivery attempts made.
    attempts: u32,
    /// What the last attempt got.
    last_error: Option<String>,
    #[schema(schema_with = openapi::date_time)]
    created_at: String,
    /// The event exactly as it would be sent.
    #[schema(value_type = Object)]
    event: serde_json::Value,
}

/// How many dead letters went back to the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    replayed: u64,
}

/// List dead letters
///
/// The app's webhook events that were given up on, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/webhooks/dead",
    tag = "webhooks",
    operation_id = "list_dead_letters",
    params(Page),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterList),
        ListErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    p: Result<Query<Page>, QueryRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let p = super::query(p)?;
        let limit = p.limit.unwrap_or(100).clamp(1, 1000);
        let dead = state
            .inner
            .store
            .dead_events(app.id.clone(), p.after.unwrap_or(0), limit)
            .await?;
        let next = (dead.len() == limit)
            .then(|| dead.last().map(|e| e.seq))
            .flatten();
        Ok::<_, ApiError>(Json(DeadLetterList {
            dead: dead
                .iter()
                .map(|e| DeadLetter {
                    id: e.id.as_str().to_owned(),
                    kind: e.kind.clone(),
                    attempts: e.attempts,
                    last_error: e.last_error.clone(),
                    created_at: rfc3339(e.created_at),
                    event: serde_json::from_str(&e.payload).unwrap_or_default(),
                })
                .collect(),
            next_after: next,
        }))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

error_responses!(ListErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    503 => ["overloaded", "unavailable", "timeout"],
});

/// Replay a dead letter
///
/// Puts it back in the outbox, due now. (The id and the action share one path segment.)
#[utoipa::path(
    post,
    path = "/v1/webhooks/dead/{id}:replay",
    tag = "webhooks",
    operation_id = "replay_dead_letter",
    params(("id" = EventIdSchema, Path, description = "The dead letter's event id")),
    responses(
        (status = 202, description = "Back in the outbox", body = Replayed),
        ReplayOneErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn replay_one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    segment: Result<Path<String>, PathRejection>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let segment = super::path(segment)?;
        let id = segment
            .strip_suffix(":replay")
            .and_then(EventId::parse)
            .ok_or_else(|| ApiError::not_found("no such endpoint"))?;
        let n = state
            .inner
            .store
            .replay_dead(app.id.clone(), Some(id))
            .await?;
        if n == 0 {
            return Err(ApiError::not_found("no dead letter with that id"));
        }
        state.inner.webhook_wake.notify_one();
        Ok::<_, ApiError>((StatusCode::ACCEPTED, Json(Replayed { replayed: n })))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

error_responses!(ReplayOneErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    404 => ["not_found"],
    503 => ["overloaded", "unavailable", "timeout"],
});

/// Replay every dead letter
///
/// Puts all of the app's dead letters back in the outbox, due now.
#[utoipa::path(
    post,
    path = "/v1/webhooks/dead:replay",
    tag = "webhooks",
    operation_id = "replay_dead_letters",
    responses(
        (status = 202, description = "Back in the outbox", body = Replayed),
        ReplayAllErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn replay_all(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let n = state.inner.store.replay_dead(app.id.clone(), None).await?;
        state.inner.webhook_wake.notify_one();
        Ok::<_, ApiError>((StatusCode::ACCEPTED, Json(Replayed { replayed: n })))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

error_responses!(ReplayAllErrors {
    401 => ["unauthorized"],
    503 => ["overloaded", "unavailable", "timeout"],
});
