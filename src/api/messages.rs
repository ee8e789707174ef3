//! `POST /v1/messages`, `POST /v1/messages:estimate`, `GET /v1/messages/{id}`.

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::{
    IntoParams, ToSchema,
    openapi::{Type, schema::ObjectBuilder},
};

use super::{
    ApiError, ApiState,
    error::error_responses,
    json_body,
    openapi::{self, E164, MessageId as MessageIdSchema, PhoneNumber as PhoneNumberSchema},
};
use crate::{
    domain::{MessageId, PhoneNumber, now_millis},
    segment::{self, SegmentError},
    store::{Idempotency, InsertOutcome, MessageKind, NewMessage, view::message_view},
};

/// A text to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": "+12125551000", "to": "+19175551234", "body": "Your appointment is tomorrow at 9:00.", "client_ref": "appt-1"}))]
pub struct SubmitBody {
    /// The line to send from: one of the app's own lines.
    #[schema(value_type = PhoneNumberSchema)]
    pub from: String,
    /// The recipient.
    #[schema(value_type = PhoneNumberSchema)]
    pub to: String,
    /// The text. Up to 10 parts: 1530 GSM-7 characters, or 670 when it needs UCS-2.
    #[schema(min_length = 1)]
    pub body: String,
    /// The app's own reference, returned with the message and in its webhook events (at most
    /// 256 bytes of UTF-8).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub client_ref: Option<String>,
    /// `high` goes ahead of bulk traffic on the same line.
    #[serde(default)]
    #[schema(schema_with = priority)]
    pub priority: Option<String>,
    /// Seconds after which an unsent message expires instead of going out late; the line's
    /// default when absent.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 18446744073709551615u64)]
    pub validity_secs: Option<u64>,
    /// Not sent before this time (RFC 3339).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub send_at: Option<String>,
    /// Where this message's `message.status` events go instead of the app's webhook URL
    /// (http or https; signed with the app's webhook secrets, which the app must have).
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^https?://")]
    pub status_url: Option<String>,
}

fn priority() -> ObjectBuilder {
    openapi::one_of_or_null(&["normal", "high"])
        .description(Some("`high` goes ahead of bulk traffic on the same line."))
}

/// A JSON integer as JSON Schema counts them: `3600` or `3600.0` (how some JSON writers, such
/// as Python's for a float, send whole numbers).
fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..u64::MAX as f64).contains(f))
                .map(|f| f as u64)
        })
        .map(Some)
        .ok_or_else(|| de::Error::custom(format!("{n} is not a whole number from 0 to 2^64 - 1")))
}

/// A text to estimate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"body": "Your appointment is tomorrow at 9:00 ☺"}))]
pub struct EstimateBody {
    /// The line it would be sent from (only checked to be a possible number).
    #[serde(default)]
    #[schema(value_type = Option<PhoneNumberSchema>)]
    pub from: Option<String>,
    #[schema(min_length = 1)]
    pub body: String,
}

/// `202`: the message is stored (fsync'd) and queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    #[schema(value_type = MessageIdSchema)]
    id: String,
    /// Always `queued`.
    #[schema(schema_with = queued)]
    status: &'static str,
    /// Parts on the air.
    segments: u32,
    #[schema(schema_with = encoding)]
    encoding: String,
    /// Present (`true`) when look-alike characters were replaced to fit a cheaper encoding.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    smart_encoded: bool,
}

fn queued() -> ObjectBuilder {
    openapi::one_of(&["queued"])
}

fn encoding() -> ObjectBuilder {
    openapi::one_of(&["gsm7", "ucs2", "latin1"]).description(Some(
        "`gsm7` (160 characters a part, 153 when split), `ucs2` (70/67) or `latin1` (140/134).",
    ))
}

/// How a text would be sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct Estimate {
    /// Parts on the air.
    segments: usize,
    #[schema(schema_with = encoding)]
    encoding: &'static str,
    /// Characters (GSM-7 septets, Latin-1 octets, UTF-16 units) in each part.
    units_per_segment: Vec<usize>,
    /// What one part holds, in the same units.
    max_units_per_segment: usize,
    /// When the text needs UCS-2: the characters that forced it.
    ucs2_characters: Vec<String>,
    /// Whether look-alike characters would be replaced to fit a cheaper encoding.
    smart_encoded: bool,
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

/// Plans with the line's options (its carrier's encodings and concatenation, the line's smart
/// encoding), so the parts counted here are the parts the dispatcher sends.
fn plan(opts: &segment::Options, body: &str) -> Result<segment::Plan, ApiError> {
    segment::plan(body, opts).map_err(|e| match e {
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

/// Send a text
///
/// Checks the request, the line, opt-outs and whether the number can take texts, stores the
/// message (fsync'd) and answers `202`. It is then sent to the carrier; follow it with
/// `GET /v1/messages/{id}` or the `message.status` webhook.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    operation_id = "submit_message",
    params(SubmitHeaders),
    request_body(content = SubmitBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored and queued", body = Accepted, links(
            ("GetMessage" = (
                operation_id = "get_message",
                parameters(("id" = "$response.body#/id")),
                description = "The message and its state",
            )),
        )),
        SubmitErrors,
    ),
    security(("api_key" = [])),
)]
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
    let snap = state.snap();
    let line = snap.config.lines.get(&from).ok_or_else(|| {
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
    let plan = plan(&line.segment, &req.body)?;
    // Opt-outs and known not-textable numbers are checked by the insert itself, in its
    // transaction (one store round trip, and no window between check and insert).
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
    let status_url = match req.status_url {
        None => None,
        Some(u) if u.len() > 2048 || !(u.starts_with("http://") || u.starts_with("https://")) => {
            return Err(ApiError::invalid_request(
                "`status_url` must be an http:// or https:// URL of at most 2048 bytes",
            ));
        }
        Some(_) if app.webhook_secrets.is_empty() => {
            return Err(ApiError::invalid_request(
                "`status_url` needs webhook_secrets configured for this app (events are signed)",
            ));
        }
        Some(u) => Some(u),
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
        status_url,
        expires_at: Some(send_at.unwrap_or(now).max(now) + validity_ms),
    };
    let id = msg.id.clone();
    tracing::debug!(message = %id, to = %msg.to, body = %msg.body, "submit");
    match state.inner.store.insert_message(msg, idem).await? {
        InsertOutcome::Inserted => {
            state.inner.metrics.accepted.inc();
            state
                .inner
                .metrics
                .count_mix(plan.encoding.as_str(), plan.parts as u32);
            if snap.config.admin.line_metrics {
                let m = &state.inner.metrics;
                let l = line.number.as_str();
                m.line_messages.with_label_values(&[l]).inc();
                m.line_segments
                    .with_label_values(&[l])
                    .inc_by(plan.parts as u64);
            }
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
        refused => Err(refusal(refused)),
    }
}

/// The error for an insert the store refused (checked in the insert's own transaction).
pub(super) fn refusal(outcome: InsertOutcome) -> ApiError {
    match outcome {
        InsertOutcome::NotTextable { reason, source } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_textable",
            format!("this number cannot take texts ({reason}); call or email instead"),
        )
        .with_details(json!({ "reason": reason, "source": source })),
        _ => ApiError::new(
            StatusCode::CONFLICT,
            "opted_out",
            "the recipient opted out of texts from this line; reach them another way",
        ),
    }
}

fn accepted(id: &MessageId, segments: u32, encoding: &str, replaced: bool) -> Response {
    let body = Accepted {
        id: id.as_str().to_owned(),
        status: "queued",
        segments,
        encoding: encoding.to_owned(),
        smart_encoded: replaced,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// The headers `submit` reads besides `Authorization`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes headers read from the `HeaderMap`
pub struct SubmitHeaders {
    /// The same key from the same app within 24 h answers the first answer again (and sends
    /// nothing); with a different request it is `422 idempotency_key_reused`.
    #[param(
        rename = "Idempotency-Key",
        required = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]([ -~]*[!-~])?$",
        example = "appt-1-reminder"
    )]
    idempotency_key: String,
}

error_responses!(SubmitErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    403 => ["forbidden_line"],
    409 => ["opted_out"],
    413 => ["request_too_large"],
    422 => ["invalid_number", "unknown_line", "empty_body", "body_too_long", "not_textable", "idempotency_key_reused"],
    503 => ["overloaded", "unavailable", "timeout", "lookup_unavailable"],
});

/// Estimate a text
///
/// The parts and encoding a text would be sent with, and the characters that forced UCS-2.
/// Sends nothing.
#[utoipa::path(
    post,
    path = "/v1/messages:estimate",
    tag = "messages",
    operation_id = "estimate_message",
    request_body(content = EstimateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "How it would be sent", body = Estimate),
        EstimateErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn estimate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = || async {
        state.authenticate(&headers)?;
        let req: EstimateBody = json_body(&body_or_error(body)?)?;
        // With `from`, the estimate uses that line's encodings (its carrier's options).
        let snap = state.snap();
        let mut opts = &state.inner.segment;
        if let Some(from) = &req.from {
            let from = number("from", from)?;
            if let Some(line) = snap.config.lines.get(&from) {
                opts = &line.segment;
            }
        }
        let plan = plan(opts, &req.body)?;
        Ok::<_, ApiError>(Json(Estimate {
            segments: plan.parts,
            encoding: plan.encoding.as_str(),
            units_per_segment: plan.units_per_part,
            max_units_per_segment: plan.units_per_part_max,
            ucs2_characters: plan.forcing_ucs2.iter().map(|c| c.to_string()).collect(),
            smart_encoded: plan.replaced,
        }))
    };
    match run().await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}

error_responses!(EstimateErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    413 => ["request_too_large"],
    422 => ["invalid_number", "empty_body", "body_too_long"],
    503 => ["overloaded", "timeout"],
});

/// Read a message
///
/// Its state, its parts with the carrier's ids and receipts, its error, its timestamps.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    operation_id = "get_message",
    params(("id" = MessageIdSchema, Path, description = "The id `POST /v1/messages` answered")),
    responses(
        (status = 200, description = "The message", body = MessageView),
        GetErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let run = || async {
        let app = state.authenticate(&headers)?;
        let id = super::path(id)?;
        let id = MessageId::parse(&id).ok_or_else(|| ApiError::not_found("no such message"))?;
        let msg = state
            .inner
            .store
            .get_message(app.id.clone(), id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such message"))?;
        Ok::<_, ApiError>(Json(message_view(&msg)).into_response())
    };
    match run().await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

error_responses!(GetErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    404 => ["not_found"],
    503 => ["overloaded", "unavailable", "timeout"],
});

/// A message as `GET /v1/messages/{id}` answers it; `message.status` webhook events carry
/// the same object in `data` (both are built by `store::view::message_view`).
#[derive(ToSchema)]
#[schema(as = Message)]
#[allow(dead_code)] // describes a body built elsewhere
pub struct MessageView {
    #[schema(value_type = MessageIdSchema)]
    id: String,
    /// The line it is sent from.
    #[schema(value_type = E164)]
    from: String,
    #[schema(value_type = E164)]
    to: String,
    #[schema(schema_with = message_status)]
    status: String,
    segments: u32,
    #[schema(schema_with = encoding)]
    encoding: String,
    client_ref: Option<String>,
    /// The carrier (`[[carriers]] id`) it goes out through.
    carrier: String,
    /// Times it was handed to a carrier.
    attempts: u32,
    /// Why it failed, when it did: the SMPP status name (`ESME_RINVDSTADR`) or smsgate's reason.
    error: Option<MessageError>,
    #[schema(schema_with = openapi::date_time)]
    created_at: String,
    #[schema(schema_with = openapi::date_time)]
    updated_at: String,
    /// Its parts on the air, once sent.
    parts: Vec<PartView>,
}

/// Why a message failed.
#[derive(ToSchema)]
#[allow(dead_code)] // describes a body built elsewhere
pub struct MessageError {
    code: String,
    message: String,
}

/// One part of a message, as handed to the carrier.
#[derive(ToSchema)]
#[schema(as = MessagePart)]
#[allow(dead_code)] // describes a body built elsewhere
pub struct PartView {
    /// 1 for the first part.
    seq: u32,
    carrier: String,
    /// The carrier's id for this part (from `submit_sm_resp`), normalised.
    carrier_message_id: String,
    #[schema(schema_with = message_status)]
    status: String,
    /// The delivery receipt, once it came.
    receipt: Option<Receipt>,
    #[schema(schema_with = openapi::date_time)]
    sent_at: String,
    #[schema(schema_with = date_time_or_null)]
    done_at: Option<String>,
}

/// A delivery receipt as the carrier wrote it.
#[derive(ToSchema)]
#[allow(dead_code)] // describes a body built elsewhere
pub struct Receipt {
    /// `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`...
    stat: String,
    /// The carrier's error code, if it gave one.
    err: Option<String>,
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
    ])
}

fn date_time_or_null() -> ObjectBuilder {
    openapi::or_null(openapi::date_time(), Type::String)
}
