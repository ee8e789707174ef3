//! `POST /v1/messages`, `POST /v1/messages:estimate`, `GET /v1/messages/{id}`.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState, json_body};
use crate::{
    domain::{MessageId, PhoneNumber, now_millis},
    segment::{self, SegmentError},
    store::{Idempotency, InsertOutcome, MessageKind, NewMessage, view::message_json},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    pub from: String,
    pub to: String,
    pub body: String,
    #[serde(default)]
    pub client_ref: Option<String>,
    /// `high` goes ahead of bulk traffic on the same line.
    #[serde(default)]
    pub priority: Option<String>,
    /// Seconds after which an unsent message expires instead of going out late.
    #[serde(default)]
    pub validity_secs: Option<u64>,
    /// Not sent before this time (RFC 3339).
    #[serde(default)]
    pub send_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateBody {
    #[serde(default)]
    pub from: Option<String>,
    pub body: String,
}

const MAX_CLIENT_REF: usize = 256;
const MAX_IDEMPOTENCY_KEY: usize = 255;

pub(super) fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "request body is larger than http.max_body_bytes",
            )
        } else {
            ApiError::invalid_request(format!("cannot read body: {e}"))
        }
    })
}

fn reject(state: &ApiState, e: ApiError) -> ApiError {
    state
        .inner
        .metrics
        .rejected
        .with_label_values(&[e.code])
        .inc();
    e
}

pub(super) fn number(field: &str, value: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(value).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_number",
            format!("`{field}`: {e}"),
        )
        .with_details(json!({ "field": field }))
    })
}

fn plan(state: &ApiState, body: &str) -> Result<segment::Plan, ApiError> {
    segment::plan(body, &state.inner.segment).map_err(|e| match e {
        SegmentError::Empty => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_body",
            "`body` must contain at least one character",
        ),
        SegmentError::TooManyParts { parts, max } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body_too_long",
            format!("`body` needs {parts} parts; at most {max} are allowed"),
        )
        .with_details(json!({ "segments": parts, "max_segments": max })),
        #[allow(unreachable_patterns)]
        other => ApiError::invalid_request(other.to_string()),
    })
}

pub async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match submit_inner(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => reject(&state, e).into_response(),
    }
}

async fn submit_inner(
    state: &ApiState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let app = state.authenticate(headers)?;
    let req: SubmitBody = json_body(&body_or_error(body)?)?;
    let from = number("from", &req.from)?;
    let line = state.inner.config.lines.get(&from).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_line",
            "`from` is not a line configured on this gateway",
        )
    })?;
    if line.app != app.id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_line",
            "`from` belongs to another app",
        ));
    }
    let to = number("to", &req.to)?;
    if req
        .client_ref
        .as_ref()
        .is_some_and(|r| r.len() > MAX_CLIENT_REF)
    {
        return Err(ApiError::invalid_request(format!(
            "`client_ref` is longer than {MAX_CLIENT_REF} bytes"
        )));
    }
    let plan = plan(state, &req.body)?;
    if state
        .inner
        .store
        .opt_out(from.clone(), to.clone())
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "opted_out",
            "the recipient opted out of texts from this line; reach them another way",
        ));
    }
    super::numbers::ensure_textable(state, &to, line.lookup_fail_closed).await?;
    let idem = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::invalid_request(
                        "`Idempotency-Key` must be 1 to 255 visible ASCII characters",
                    )
                })?;
            let mut h = Sha256::new();
            for part in [
                from.as_str(),
                to.as_str(),
                &req.body,
                req.client_ref.as_deref().unwrap_or(""),
            ] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
            Some(Idempotency {
                key: key.to_owned(),
                fingerprint: format!("{:x}", h.finalize()),
            })
        }
    };
    let high_priority = match req.priority.as_deref() {
        None | Some("normal") => false,
        Some("high") => true,
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "`priority` {other:?} must be \"high\" or \"normal\""
            )));
        }
    };
    let now = now_millis();
    let send_at = match &req.send_at {
        None => None,
        Some(s) => Some(
            s.parse::<jiff::Timestamp>()
                .map_err(|e| {
                    ApiError::invalid_request(format!("`send_at` is not an RFC 3339 time: {e}"))
                })?
                .as_millisecond(),
        ),
    };
    let validity_ms = match req.validity_secs {
        Some(0) => {
            return Err(ApiError::invalid_request(
                "`validity_secs` must be at least 1",
            ));
        }
        Some(v) => v.saturating_mul(1000).min(i64::MAX as u64 / 2) as i64,
        None => line.validity.as_millis() as i64,
    };
    let msg = NewMessage {
        id: MessageId::generate(),
        app_id: app.id.clone(),
        line: from,
        to,
        body: plan.text.clone(),
        client_ref: req.client_ref,
        encoding: plan.encoding.as_str(),
        segments: plan.parts as u32,
        carrier: line.carrier.clone(),
        created_at: now,
        kind: MessageKind::Api,
        exempt_opt_out: false,
        high_priority,
        send_at,
        expires_at: Some(send_at.unwrap_or(now).max(now) + validity_ms),
    };
    let id = msg.id.clone();
    tracing::debug!(message = %id, to = %msg.to, body = %msg.body, "submit");
    match state.inner.store.insert_message(msg, idem).await? {
        InsertOutcome::Inserted => {
            state.inner.metrics.accepted.inc();
            if let Some(w) = state.inner.wake.get(&line.carrier) {
                w.notify_one();
            }
            Ok(accepted(
                &id,
                plan.parts as u32,
                plan.encoding.as_str(),
                plan.replaced,
            ))
        }
        InsertOutcome::Replayed { id, same_request } => {
            if !same_request {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used within 24 h for a different request",
                ));
            }
            let first = state
                .inner
                .store
                .get_message(app.id.clone(), id.clone())
                .await?
                .ok_or_else(ApiError::internal)?;
            Ok(accepted(&first.id, first.segments, &first.encoding, false))
        }
    }
}

fn accepted(id: &MessageId, segments: u32, encoding: &str, replaced: bool) -> Response {
    let mut body = json!({
        "id": id.as_str(),
        "status": "queued",
        "segments": segments,
        "encoding": encoding,
    });
    if replaced {
        body["smart_encoded"] = Value::Bool(true);
    }
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

pub async fn estimate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = || async {
        state.authenticate(&headers)?;
        let req: EstimateBody = json_body(&body_or_error(body)?)?;
        if let Some(from) = &req.from {
            number("from", from)?;
        }
        let plan = plan(&state, &req.body)?;
        Ok::<_, ApiError>(Json(json!({
            "segments": plan.parts,
            "encoding": plan.encoding.as_str(),
            "units_per_segment": plan.units_per_part,
            "max_units_per_segment": plan.units_per_part_max,
            "ucs2_characters": plan.forcing_ucs2.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "smart_encoded": plan.replaced,
        })))
    };
    match run().await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let run = || async {
        let app = state.authenticate(&headers)?;
        let id = MessageId::parse(&id).ok_or_else(|| ApiError::not_found("no such message"))?;
        let msg = state
            .inner
            .store
            .get_message(app.id.clone(), id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such message"))?;
        Ok::<_, ApiError>(Json(message_json(&msg)))
    };
    match run().await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}
