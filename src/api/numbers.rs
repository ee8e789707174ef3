//! `GET|PUT /v1/numbers/{number}`: what smsgate knows about a number, and operator overrides.

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
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{
    ToSchema,
    openapi::{Type, schema::ObjectBuilder},
};

use super::{
    ApiError, ApiState,
    error::error_responses,
    json_body,
    openapi::{self, E164, PhoneNumber as PhoneNumberSchema},
};
use crate::{
    domain::{now_millis, rfc3339},
    policy::Verdict,
    store::NumberInfo,
};

fn view(number: &str, info: Option<&NumberInfo>) -> Value {
    match info {
        Some(i) => json!({
            "number": number,
            "textable": i.textable,
            "line_type": i.line_type,
            "reason": i.reason,
            "source": i.source,
            "carrier": i.carrier,
            "updated_at": rfc3339(i.updated_at),
            "expires_at": i.expires_at.map(rfc3339),
        }),
        None => json!({ "number": number, "textable": null, "source": null }),
    }
}

/// What smsgate knows about a number. Only `number`, `textable` and `source` are present (both
/// `null`) when it knows nothing.
#[derive(ToSchema)]
#[schema(as = NumberInfo)]
#[allow(dead_code)] // describes the body `view` builds
pub struct NumberView {
    #[schema(value_type = E164)]
    number: String,
    /// Whether it can take texts; `null`: not known (it will be looked up, or tried).
    #[schema(required = true)]
    textable: Option<bool>,
    #[schema(required = true, schema_with = source)]
    source: Option<String>,
    /// `mobile`, `landline`, `voip`... as the lookup (or operator) said.
    #[schema(required = false)]
    line_type: Option<String>,
    /// Why it cannot take texts.
    #[schema(required = false)]
    reason: Option<String>,
    /// The carrier that answered about it.
    #[schema(required = false)]
    carrier: Option<String>,
    #[schema(required = false, schema_with = openapi::date_time)]
    updated_at: String,
    #[schema(required = false, schema_with = expires_at)]
    expires_at: Option<String>,
}

fn source() -> ObjectBuilder {
    openapi::one_of_or_null(&["carrier", "lookup", "operator"]).description(Some(
        "Where it came from: `carrier` (a carrier refused it), `lookup` (the line-type lookup), \
         `operator` (`PUT /v1/numbers/{number}`); `null` when nothing is known.",
    ))
}

fn expires_at() -> ObjectBuilder {
    openapi::or_null(openapi::date_time(), Type::String).description(Some(
        "When it is looked up again; `null`: never (operator overrides).",
    ))
}

/// Read what smsgate knows about a number
///
/// Whether it can take texts, its line type, and where that came from.
#[utoipa::path(
    get,
    path = "/v1/numbers/{number}",
    tag = "numbers",
    operation_id = "get_number",
    params(("number" = PhoneNumberSchema, Path, description = "Any number")),
    responses(
        (status = 200, description = "What is known", body = NumberView),
        GetErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Response {
    let run = async {
        state.authenticate(&headers)?;
        let number = super::path(number)?;
        let number = super::messages::number("number", &number)?;
        let info = state.inner.store.number_info(number.clone()).await?;
        Ok::<_, ApiError>(Json(view(number.as_str(), info.as_ref())))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

error_responses!(GetErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    422 => ["invalid_number"],
    503 => ["overloaded", "unavailable", "timeout"],
});

/// An operator's word on a number; it does not expire.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NumberOverride, example = json!({"textable": false, "line_type": "landline", "reason": "the front desk's landline"}))]
struct Override {
    textable: bool,
    #[serde(default)]
    line_type: Option<String>,
    /// Why; when `textable` is false and no reason is given: "marked by an operator".
    #[serde(default)]
    reason: Option<String>,
}

/// Say whether a number can take texts
///
/// An operator override: sends to it are refused with `not_textable` (or allowed again) until
/// it is changed, whatever carriers or the lookup say.
#[utoipa::path(
    put,
    path = "/v1/numbers/{number}",
    tag = "numbers",
    operation_id = "put_number",
    params(("number" = PhoneNumberSchema, Path, description = "Any number")),
    request_body(content = Override, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored; what is now known", body = NumberView, links(
            ("GetNumber" = (
                operation_id = "get_number",
                parameters(("number" = "$request.path.number")),
                description = "What is now known",
            )),
        )),
        PutErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        state.authenticate(&headers)?;
        let number = super::path(number)?;
        let number = super::messages::number("number", &number)?;
        let o: Override = json_body(&super::messages::body_or_error(body)?)?;
        let info = NumberInfo {
            number: number.clone(),
            textable: o.textable,
            line_type: o.line_type,
            reason: o
                .reason
                .or_else(|| (!o.textable).then(|| "marked by an operator".to_owned())),
            source: "operator".into(),
            carrier: None,
            updated_at: now_millis(),
            expires_at: None,
        };
        state.inner.store.put_number_info(info.clone()).await?;
        Ok::<_, ApiError>(Json(view(number.as_str(), Some(&info))))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

error_responses!(PutErrors {
    400 => ["invalid_request"],
    401 => ["unauthorized"],
    413 => ["request_too_large"],
    422 => ["invalid_number"],
    503 => ["overloaded", "unavailable", "timeout"],
});

/// Refuses a send to a number known (or looked up) to be unable to take texts.
pub(super) async fn ensure_textable(
    state: &ApiState,
    number: &crate::domain::PhoneNumber,
    fail_closed: bool,
) -> Result<(), ApiError> {
    match state.inner.numbers.check(number).await? {
        Verdict::Textable => Ok(()),
        Verdict::NotTextable { reason, source } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_textable",
            format!("this number cannot take texts ({reason}); call or email instead"),
        )
        .with_details(json!({ "reason": reason, "source": source }))),
        Verdict::Unknown if fail_closed => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "lookup_unavailable",
            "the line-type lookup cannot answer and this line does not send without it",
        )),
        Verdict::Unknown => Ok(()),
    }
}
