//! `POST /v1/triggers/{token}`: no api key, the secret token in the URL is the credential.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{ApiError, ApiState};
use crate::{
    domain::{MessageId, now_millis},
    segment,
    store::{MessageKind, NewMessage, TriggerOutcome},
    triggers::{caller_from_body, form_value},
};

pub async fn fire(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = &state.inner.metrics;
    let Some(trigger) = state.inner.triggers.find(&token) else {
        metrics
            .triggers
            .with_label_values(&["unknown", "not_found"])
            .inc();
        // The same answer as any unknown path: nothing says whether the token exists.
        return ApiError::not_found("no such endpoint").into_response();
    };
    let kind = trigger.kind.as_str();
    let result = async {
        let body = super::messages::body_or_error(body)?;
        let caller = query
            .as_deref()
            .and_then(|q| form_value(q, "CALLER_ID_NUMBER"))
            .or_else(|| {
                caller_from_body(
                    headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                    &body,
                )
            })
            .ok_or_else(|| {
                ApiError::invalid_request(
                    "CALLER_ID_NUMBER is required (query parameter, form field or JSON field)",
                )
            })?;
        let to = super::messages::number("CALLER_ID_NUMBER", &caller)?;
        if let Some(hours) = &trigger.active_hours
            && !hours.is_open(jiff::Timestamp::now())
        {
            return Ok((
                "skipped",
                (
                    StatusCode::OK,
                    Json(json!({"status": "skipped", "reason": "outside_active_hours"})),
                )
                    .into_response(),
            ));
        }
        let line = state
            .inner
            .config
            .lines
            .get(&trigger.line)
            .cloned()
            .ok_or_else(ApiError::internal)?;
        if state
            .inner
            .store
            .opt_out(line.number.clone(), to.clone())
            .await?
            .is_some()
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "opted_out",
                "the caller opted out of texts from this line",
            ));
        }
        super::numbers::ensure_textable(&state, &to, line.lookup_fail_closed).await?;
        // Sent as given: no smart replacement of characters in a template the practice wrote.
        let plan = segment::plan(&trigger.template, &segment::Options::default())
            .map_err(|e| ApiError::invalid_request(e.to_string()))?;
        let msg = NewMessage {
            id: MessageId::generate(),
            app_id: line.app.clone(),
            line: line.number.clone(),
            to,
            body: plan.text,
            client_ref: Some(format!("trigger:{}", trigger.id)),
            encoding: plan.encoding.as_str(),
            segments: plan.parts as u32,
            carrier: line.carrier.clone(),
            created_at: now_millis(),
            kind: MessageKind::Trigger,
            exempt_opt_out: false,
            // The caller is waiting on the line: ahead of bulk, and never hours late.
            high_priority: true,
            send_at: None,
            expires_at: Some(now_millis() + line.validity.as_millis() as i64),
        };
        let id = msg.id.clone();
        match state
            .inner
            .store
            .insert_triggered(msg, trigger.dedupe_window)
            .await?
        {
            TriggerOutcome::Inserted => {
                if let Some(w) = state.inner.wake.get(&line.carrier) {
                    w.notify_one();
                }
                Ok((
                    "sent",
                    (
                        StatusCode::ACCEPTED,
                        Json(json!({"id": id.as_str(), "status": "queued"})),
                    )
                        .into_response(),
                ))
            }
            TriggerOutcome::Duplicate(first) => Ok((
                "duplicate",
                (
                    StatusCode::OK,
                    Json(json!({"id": first.as_str(), "status": "duplicate"})),
                )
                    .into_response(),
            )),
        }
    }
    .await;
    match result {
        Ok((label, resp)) => {
            metrics.triggers.with_label_values(&[kind, label]).inc();
            resp
        }
        Err(e) => {
            metrics.triggers.with_label_values(&[kind, e.code]).inc();
            e.into_response()
        }
    }
}
