//! Dead letters: `GET /v1/webhooks/dead`, `POST /v1/webhooks/dead/{id}:replay`, and
//! `POST /v1/webhooks/dead:replay` for all of the app's dead letters.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState};
use crate::domain::{EventId, rfc3339};

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(p): Query<Page>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let limit = p.limit.unwrap_or(100).clamp(1, 1000);
        let dead = state
            .inner
            .store
            .dead_events(app.id.clone(), p.after.unwrap_or(0), limit)
            .await?;
        let next = (dead.len() == limit)
            .then(|| dead.last().map(|e| e.seq))
            .flatten();
        Ok::<_, ApiError>(Json(json!({
            "dead": dead.iter().map(|e| json!({
                "id": e.id.as_str(),
                "type": e.kind,
                "attempts": e.attempts,
                "last_error": e.last_error,
                "created_at": rfc3339(e.created_at),
                "event": serde_json::from_str::<serde_json::Value>(&e.payload).unwrap_or_default(),
            })).collect::<Vec<_>>(),
            "next_after": next,
        })))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// `POST /v1/webhooks/dead/{id}:replay` (the id and the action share one path segment).
pub async fn replay_one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(segment): Path<String>,
) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
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
        Ok::<_, ApiError>((StatusCode::ACCEPTED, Json(json!({ "replayed": n }))))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

pub async fn replay_all(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let run = async {
        let app = state.authenticate(&headers)?;
        let n = state.inner.store.replay_dead(app.id.clone(), None).await?;
        state.inner.webhook_wake.notify_one();
        Ok::<_, ApiError>((StatusCode::ACCEPTED, Json(json!({ "replayed": n }))))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}
