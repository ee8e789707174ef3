//! `GET|PUT /v1/numbers/{number}`: what smsgate knows about a number, and operator overrides.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, json_body};
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

pub async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    let run = async {
        state.authenticate(&headers)?;
        let number = super::messages::number("number", &number)?;
        let info = state.inner.store.number_info(number.clone()).await?;
        Ok::<_, ApiError>(Json(view(number.as_str(), info.as_ref())))
    };
    run.await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Override {
    textable: bool,
    #[serde(default)]
    line_type: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(number): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        state.authenticate(&headers)?;
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
