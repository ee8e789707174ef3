//! `POST /v1/triggers/{token}`: no api key, the secret token in the URL is the credential.

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, RawQuery, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{ToSchema, openapi::schema::ObjectBuilder};

use super::{
    ApiError, ApiState,
    error::error_responses,
    openapi::{self, MessageId as MessageIdSchema, PhoneNumber as PhoneNumberSchema},
};
use crate::{
    domain::{MessageId, now_millis},
    segment,
    store::{MessageKind, NewMessage, TriggerOutcome},
    triggers::{caller_from_body, form_value},
};

/// The caller's number as a JSON or form body (the key in any case; other keys are ignored).
/// Needed unless the `CALLER_ID_NUMBER` query parameter gives it, which wins when both do.
#[derive(ToSchema)]
#[allow(dead_code)] // describes what `triggers::caller_from_body` reads
pub struct TriggerCaller {
    #[schema(rename = "CALLER_ID_NUMBER", required = false, schema_with = caller_id)]
    caller_id_number: String,
}

fn caller_id() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::Type::String,
            utoipa::openapi::Type::Integer,
        ]))
        .pattern(Some(openapi::PHONE_PATTERN))
        .minimum(Some(0))
        .description(Some(
            "The caller's number, as a string (any form `PhoneNumber` takes) or, in JSON, a number.",
        ))
        .examples(["2125551234"])
}

/// `202`: the text is stored and queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerQueued {
    #[schema(value_type = MessageIdSchema)]
    id: String,
    #[schema(schema_with = queued)]
    status: &'static str,
}

fn queued() -> ObjectBuilder {
    openapi::one_of(&["queued"])
}

/// `200`: nothing was sent, and why.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TriggerDone {
    Duplicate(TriggerDuplicate),
    Skipped(TriggerSkipped),
}

/// The caller already got a text from this line within the trigger's dedupe window: that
/// message's id.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerDuplicate {
    #[schema(value_type = MessageIdSchema)]
    id: String,
    #[schema(schema_with = duplicate)]
    status: &'static str,
}

fn duplicate() -> ObjectBuilder {
    openapi::one_of(&["duplicate"])
}

/// The trigger is outside its active hours.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerSkipped {
    #[schema(schema_with = skipped)]
    status: &'static str,
    #[schema(schema_with = outside_active_hours)]
    reason: &'static str,
}

fn skipped() -> ObjectBuilder {
    openapi::one_of(&["skipped"])
}

fn outside_active_hours() -> ObjectBuilder {
    openapi::one_of(&["outside_active_hours"])
}

/// Fire a trigger
///
/// Texts the trigger's template from its line to the caller, through the same pipeline as any
/// message (opt-outs, line-type checks, rate limits). No api key: the secret token in the URL
/// is the credential, and an unknown token answers like an unknown path. A caller who already
/// got a text from the line within the trigger's dedupe window gets no second one.
#[utoipa::path(
    post,
    path = "/v1/triggers/{token}",
    tag = "triggers",
    operation_id = "fire_trigger",
    params(
        ("token" = String, Path, description = "The trigger's secret token (`[[triggers]] token`)"),
        ("CALLER_ID_NUMBER" = Option<PhoneNumberSchema>, Query, description = "The caller's number (or give it in the body)"),
    ),
    request_body(
        description = "The caller's number, when it is not in the query",
        content(
            (Option<TriggerCaller> = "application/json"),
            (Option<TriggerCaller> = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 202, description = "Texted: stored and queued", body = TriggerQueued, links(
            ("GetMessage" = (
                operation_id = "get_message",
                parameters(("id" = "$response.body#/id")),
                description = "The text and its state (with the line's app's api key)",
            )),
        )),
        (status = 200, description = "Nothing sent: a duplicate, or outside active hours", body = TriggerDone),
        FireErrors,
    ),
    security(()),
)]
pub async fn fire(
    State(state): State<ApiState>,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = &state.inner.metrics;
    // A token that is not UTF-8 is no token either.
    let found = token
        .ok()
        .and_then(|Path(t)| state.snap().triggers.find(&t));
    let Some(trigger) = found else {
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
                    Json(TriggerDone::Skipped(TriggerSkipped {
                        status: "skipped",
                        reason: "outside_active_hours",
                    })),
                )
                    .into_response(),
            ));
        }
        let line = state
            .snap()
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
            status_url: None,
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
                        Json(TriggerQueued {
                            id: id.as_str().to_owned(),
                            status: "queued",
                        }),
                    )
                        .into_response(),
                ))
            }
            TriggerOutcome::Refused(outcome) => Err(super::messages::refusal(outcome)),
            TriggerOutcome::Duplicate(first) => Ok((
                "duplicate",
                (
                    StatusCode::OK,
                    Json(TriggerDone::Duplicate(TriggerDuplicate {
                        id: first.as_str().to_owned(),
                        status: "duplicate",
                    })),
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

error_responses!(FireErrors {
    400 => ["invalid_request"],
    404 => ["not_found"],
    409 => ["opted_out"],
    413 => ["request_too_large"],
    422 => ["invalid_number", "not_textable"],
    503 => ["overloaded", "unavailable", "timeout", "lookup_unavailable"],
});
