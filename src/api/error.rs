use std::collections::BTreeMap;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;
use utoipa::{
    ToSchema,
    openapi::{
        ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, Type,
        example::ExampleBuilder,
        response::Response as OpenApiResponse,
        schema::{AllOfBuilder, ObjectBuilder},
    },
};

/// Every error the HTTP API answers with: a status and a stable code; the body is always
/// `{"error": {"code", "message"}}`. 5xx details are logged, never sent.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_number", "message": "`to`: not a possible phone number", "details": {"field": "to"}}}))]
pub struct ErrorBody {
    error: ErrorInfo,
}

/// What went wrong: a stable `code` to act on and a `message` for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorInfo {
    /// Stable and machine-readable; each operation lists the codes it may answer with.
    #[schema(value_type = String)]
    code: &'static str,
    /// For people; may change between versions.
    message: String,
    /// Facts about some errors: `field` (`invalid_number`), `segments` and `max_segments`
    /// (`body_too_long`), `reason` and `source` (`not_textable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false, additional_properties)]
    details: Option<serde_json::Value>,
}

/// Every error code, with when it is answered. The spec's error responses are built from this
/// table, so each code is described once.
pub const CODES: &[(&str, &str)] = &[
    (
        "invalid_request",
        "the body, a parameter or a header is not what the operation describes (unknown field, wrong type, bad value, a path that is not UTF-8)",
    ),
    ("unauthorized", "missing or unknown api key"),
    ("forbidden_line", "the line belongs to another app"),
    (
        "not_found",
        "no such resource, or it belongs to another app",
    ),
    ("unknown_line", "the line is not configured on this gateway"),
    (
        "opted_out",
        "the recipient opted out of texts from this line: reach them another way (call, email)",
    ),
    (
        "request_too_large",
        "the request body is larger than `http.max_body_bytes`",
    ),
    (
        "invalid_number",
        "a number is not a possible phone number; `details.field` names it",
    ),
    ("empty_body", "the text is empty"),
    (
        "body_too_long",
        "the text needs more parts than allowed; `details.segments` and `details.max_segments` say how many",
    ),
    (
        "not_textable",
        "the number cannot take texts (a landline, or the carrier said so): call or email instead; `details.reason` and `details.source` say why",
    ),
    (
        "idempotency_key_reused",
        "the `Idempotency-Key` was used within 24 h for a different request",
    ),
    (
        "overloaded",
        "too many requests in progress: nothing was done, retry with backoff",
    ),
    (
        "unavailable",
        "the store cannot answer right now: nothing was accepted, retry",
    ),
    (
        "timeout",
        "the request timed out: nothing was accepted, retry",
    ),
    (
        "lookup_unavailable",
        "the line-type lookup cannot answer and this line does not send without it; retry",
    ),
];

/// The OpenAPI responses of an operation's errors: for each status, the codes it may carry.
/// Each response's schema is [`ErrorBody`] with `error.code` narrowed to those codes.
pub(super) fn build_error_responses(
    statuses: &[(u16, &[&str])],
) -> BTreeMap<String, RefOr<OpenApiResponse>> {
    statuses
        .iter()
        .map(|&(status, codes)| {
            let when = |code: &str| {
                CODES
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map(|(_, w)| *w)
                    .unwrap_or_else(|| panic!("error code {code:?} is not in api::error::CODES"))
            };
            let description = codes
                .iter()
                .map(|c| format!("- `{c}`: {}", when(c)))
                .collect::<Vec<_>>()
                .join("\n");
            let narrowed = ObjectBuilder::new().property(
                "error",
                ObjectBuilder::new().property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(codes.iter().copied())),
                ),
            );
            let schema = AllOfBuilder::new()
                .item(Ref::from_schema_name("ErrorBody"))
                .item(narrowed);
            let examples = codes.iter().map(|c| {
                (
                    *c,
                    ExampleBuilder::new()
                        .value(Some(json!({ "error": { "code": c, "message": when(c) } }))),
                )
            });
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(schema))
                    .examples_from_iter(examples)
                    .build(),
            );
            if status == 503 {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Seconds to wait before retrying."))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// Declares a type whose [`utoipa::IntoResponses`] are an operation's error responses, for
/// `#[utoipa::path(responses(..., Errors))]`.
macro_rules! error_responses {
    ($(#[$doc:meta])* $name:ident { $($status:literal => [$($code:literal),+ $(,)?]),+ $(,)? }) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                super::error::build_error_responses(&[$(($status, &[$($code),+])),+])
            }
        }
    };
}
pub(super) use error_responses;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <api key>` header is required",
        )
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the message store cannot accept writes right now; nothing was accepted, retry later",
        )
    }

    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in progress; retry with backoff",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(detail) => {
                tracing::error!(error = %detail, "store unavailable");
                ApiError::unavailable()
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorInfo {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}
