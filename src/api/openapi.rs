//! The OpenAPI 3.1 description of the app-facing API, generated from the handlers'
//! `#[utoipa::path]` attributes and served at `GET /v1/openapi.json`. `docs/openapi.json` is a
//! copy that `tests/openapi.rs` keeps equal to it.

use std::{borrow::Cow, sync::LazyLock};

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use utoipa::{
    Modify, OpenApi, PartialSchema, ToSchema,
    openapi::{
        RefOr, Required, Type,
        schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::{conversations, error, messages, numbers, optouts, triggers, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "smsgate HTTP API",
        description = include_str!("openapi.md"),
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        messages::submit,
        messages::estimate,
        messages::get,
        triggers::fire,
        numbers::get,
        numbers::put,
        optouts::list,
        optouts::import,
        optouts::get,
        optouts::put,
        optouts::delete,
        conversations::list,
        conversations::messages,
        conversations::read,
        webhooks::list,
        webhooks::replay_all,
        webhooks::replay_one,
        serve,
    ),
    components(schemas(error::ErrorBody, PhoneNumber, E164, MessageId, EventId)),
    modifiers(&ApiKeyScheme, &OptionalBodies),
    tags(
        (name = "messages", description = "Send texts and follow them to the handset."),
        (name = "conversations", description = "A line's inbox: texts both ways, per number."),
        (name = "opt-outs", description = "Who has said STOP to a line."),
        (name = "numbers", description = "What smsgate knows about a number: can it take texts?"),
        (name = "triggers", description = "Call-center triggers (Call-to-Text, Abandoned Call): no api key, the token in the URL is the credential."),
        (name = "webhooks", description = "Webhook events that could not be delivered (dead letters)."),
        (name = "meta", description = "This description."),
    ),
)]
struct ApiDoc;

/// The name operations use in `security(("api_key" = []))`.
const API_KEY: &str = "api_key";

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("api key")
                    .description(Some(
                        "An app's api key (`[[apps]] api_keys` in the config): \
                         `Authorization: Bearer <api key>`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// An optional request body (`Option<T>`, e.g. the trigger's caller) may be left out; it is
/// not a JSON `null`. utoipa writes it as `oneOf: [null, T]` or `type: [T, null]`: this makes
/// it `T`.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let operations = openapi.paths.paths.values_mut().flat_map(|item| {
            [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
        });
        for op in operations {
            let Some(RefOr::T(body)) = &mut op.request_body else {
                continue;
            };
            if matches!(body.required, Some(Required::True)) {
                continue;
            }
            for content in body.content.values_mut() {
                let RefOr::T(content) = content else {
                    continue;
                };
                match &mut content.schema {
                    Some(RefOr::T(Schema::OneOf(one_of))) => {
                        if let [RefOr::T(Schema::Object(null)), other] = one_of.items.as_slice()
                            && null.schema_type == SchemaType::Type(Type::Null)
                        {
                            content.schema = Some(other.clone());
                        }
                    }
                    Some(RefOr::T(Schema::Object(object))) => {
                        if let SchemaType::Array(types) = &object.schema_type
                            && let [ty] = types
                                .iter()
                                .filter(|t| **t != Type::Null)
                                .collect::<Vec<_>>()
                                .as_slice()
                        {
                            object.schema_type = SchemaType::Type((*ty).clone());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The spec as a value.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The spec as served and as committed in `docs/openapi.json`: pretty-printed, with a final
/// newline.
pub fn openapi_json() -> String {
    let mut json = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
}

static SPEC: LazyLock<String> = LazyLock::new(openapi_json);

/// The OpenAPI description of this API
///
/// This document, as JSON. No api key needed.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        Errors,
    ),
)]
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], SPEC.as_str()).into_response()
}

error::error_responses!(Errors {
    503 => ["overloaded", "timeout"],
});

/// A string schema with a name, for values that have one shape everywhere.
macro_rules! string_schema {
    ($(#[$doc:meta])* $name:ident, $description:literal, pattern = $pattern:expr, example = $example:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($description))
                    .pattern(Some($pattern))
                    .examples([$example])
                    .into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

string_schema!(
    /// A number as apps may write it.
    PhoneNumber,
    "A phone number: E.164 (`+12125550123`), or a 10- or 11-digit NANP number (`2125550123`, \
     `12125550123`); spaces, dashes, dots and parentheses are ignored. Impossible NANP numbers \
     (bad area code or exchange, N11, 555-01xx) are refused with `invalid_number`.",
    pattern = PHONE_PATTERN,
    example = "+12125551000"
);

/// What `PhoneNumber::parse` takes: `+` and 8 to 15 digits, or 10 digits (an area code
/// cannot start with 0 or 1) after an optional `1`; formatting characters anywhere.
pub(super) const PHONE_PATTERN: &str = r"^\s*(\+[ ().-]*[1-9]([ ().-]*[0-9]){7,14}|[ ().-]*(1[ ().-]*)?[2-9]([ ().-]*[0-9]){9})[ ().-]*\s*$";

string_schema!(
    /// A number as smsgate writes it.
    E164,
    "A phone number in E.164 form, as smsgate always answers with.",
    pattern = r"^\+[1-9][0-9]{7,14}$",
    example = "+19175551234"
);

string_schema!(
    /// A message id.
    MessageId,
    "A message id: `msg_` and 26 characters.",
    pattern = r"^msg_[0-9A-HJKMNP-TV-Z]{26}$",
    example = "msg_01KAKX2Z9Q8W3E5R7T9Y1V3H5N"
);

string_schema!(
    /// A webhook event id.
    EventId,
    "A webhook event id: `evt_` and 26 characters.",
    pattern = r"^evt_[0-9A-HJKMNP-TV-Z]{26}$",
    example = "evt_01KAKX2Z9Q8W3E5R7T9Y1V3H5N"
);

/// `format: date-time` strings (RFC 3339), as every timestamp in answers is written.
pub(super) fn date_time() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

/// A string that is one of `values`.
pub(super) fn one_of(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}

/// A string that is one of `values`, or `null`.
pub(super) fn one_of_or_null(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(
            values
                .iter()
                .map(|v| serde_json::Value::from(*v))
                .chain([serde_json::Value::Null]),
        ))
}

/// `schema` or `null`.
pub(super) fn or_null(schema: ObjectBuilder, ty: Type) -> ObjectBuilder {
    schema.schema_type(SchemaType::from_iter([ty, Type::Null]))
}
