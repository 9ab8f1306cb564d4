//! The OpenAPI 3.1 document, generated from the contract (feature `openapi`).
//!
//! Paths, methods, roles and summaries come from [`Op::route`]; bodies from the types in
//! [`crate::body`] through utoipa's `ToSchema`; the errors each operation can answer from
//! [`errors`]. The server serves this document and `docs/openapi.json` is a copy of it that a
//! test keeps equal.
//!
//! The schema types below stand for imprint-core's identifiers and byte strings in the
//! document; their limits are read from imprint-core's own constants, so the document says
//! what the parsers enforce.

use std::borrow::Cow;

use imprint_core::seal::{MAX_SEALED_LEN, MIN_SEALED_LEN};
use imprint_core::{ApparatusId, ChipId, FactoryId, ProductCode, ProductSerial};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, InfoBuilder, KnownFormat, OpenApi, OpenApiBuilder, RefOr, Required, SchemaFormat,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::body::*;
use crate::error::{ErrorBody, ErrorCode, LineError};
use crate::{Access, Media, Method, Op, Role};

/// The characters every text identifier allows.
const TOKEN_PATTERN: &str = "A-Za-z0-9._-";

fn text(max: usize, what: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(format!("^[{TOKEN_PATTERN}]{{1,{max}}}$")))
        .description(Some(format!(
            "{what}: 1 to {max} characters of {TOKEN_PATTERN}"
        )))
        .into()
}

fn hex(bytes: usize, what: &str) -> RefOr<Schema> {
    let digits = 2 * bytes;
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(digits))
        .max_length(Some(digits))
        .pattern(Some(format!("^[0-9a-fA-F]{{{digits}}}$")))
        .description(Some(format!(
            "{what}: {bytes} bytes as exactly {digits} hex digits (written in lower case)"
        )))
        .into()
}

macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident, $body:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $body
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

schema_type!(
    /// An apparatus ID in the document.
    ApparatusIdText,
    text(ApparatusId::MAX_LEN, "apparatus ID")
);
schema_type!(
    /// A product code in the document.
    ProductCodeText,
    text(ProductCode::MAX_LEN, "product code")
);
schema_type!(
    /// A product serial in the document.
    ProductSerialText,
    text(ProductSerial::MAX_LEN, "product serial")
);
schema_type!(
    /// A factory ID in the document.
    FactoryIdText,
    text(FactoryId::MAX_LEN, "factory ID")
);
schema_type!(
    /// A key identifier in the document.
    KeyIdNumber,
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(u32::MAX))
        .description(Some("key identifier: a whole number from 1 to 4294967295"))
        .into()
);
schema_type!(
    /// A chip ID in the document.
    ChipIdHex,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(2))
        .max_length(Some(2 * ChipId::MAX_LEN))
        .pattern(Some(format!("^([0-9a-fA-F]{{2}}){{1,{}}}$", ChipId::MAX_LEN)))
        .description(Some(format!(
            "chip ID: 1 to {} bytes as hex (the unit's unique ID, as its GetInfo reply gives it)",
            ChipId::MAX_LEN
        )))
        .into()
);
schema_type!(
    /// A sealed record in the document.
    SealedRecordHex,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(2 * MIN_SEALED_LEN))
        .max_length(Some(2 * MAX_SEALED_LEN))
        .pattern(Some("^([0-9a-fA-F]{2})+$"))
        .description(Some(format!(
            "sealed record (docs/protocol.md, \"Sealed record\"): {MIN_SEALED_LEN} to {MAX_SEALED_LEN} bytes as hex; its header is checked on the way in"
        )))
        .into()
);
schema_type!(
    /// 16 bytes as hex.
    Hex16,
    hex(16, "byte string")
);
schema_type!(
    /// 32 bytes as hex.
    Hex32,
    hex(32, "byte string")
);
schema_type!(
    /// 64 bytes as hex.
    Hex64,
    hex(64, "byte string")
);

/// The error codes an operation can answer with, besides `bad_request` (any malformed body
/// or parameter) and `internal` (a fault of the server), which every operation can answer.
/// Operations with a session also answer `unauthorized` and `forbidden`.
pub fn errors(op: Op) -> &'static [ErrorCode] {
    use ErrorCode::*;
    match op {
        Op::Login => &[Unauthorized, TooManyAttempts],
        Op::Logout | Op::Me | Op::ListKeys | Op::ListProducts | Op::Records => &[],
        Op::ExportInstalled | Op::ReadAudit | Op::VerifyAudit => &[],
        Op::ListFactories | Op::Activity => &[],
        Op::AuditCheckpoint | Op::AuditInclusion | Op::AuditConsistency | Op::AuditInstalls => {
            &[NotFound]
        }
        Op::AddKey => &[DuplicateKeyId],
        Op::MapProduct => &[UnknownKeyId, SameKey],
        Op::SetLockUnits => &[UnknownProduct],
        Op::Generate => &[UnknownKeyId],
        Op::Import => &[BadCsv],
        Op::AddFactory => &[Conflict],
        Op::SetQuota => &[NotFound, UnknownProduct],
        Op::AddUser => &[Conflict, NotFound],
        Op::ListUsers => &[],
        Op::SetUserDisabled | Op::SetPassword | Op::SetRole => &[NotFound, Conflict],
        Op::Revoke => &[NotFound],
        Op::Issue | Op::Lease => &[
            NothingRequested,
            UnknownProduct,
            OverQuota,
            NotEnoughEntries,
        ],
        Op::Report => &[
            UnknownApparatus,
            NotIssued,
            NotYourRecord,
            AlreadyInstalled,
            SerialTaken,
            BadReceipt,
        ],
        Op::Locked => &[UnknownApparatus, NotInstalled, NotYourRecord],
        Op::Release => &[UnknownApparatus, NotIssued, NotYourRecord, Conflict],
        Op::LeaseKey | Op::OpenApi => &[],
        Op::Challenge | Op::Verify => &[],
    }
}

/// Schemas of an operation's request body and successful answer (`None`: no body, or
/// CSV text).
fn bodies(op: Op) -> (Option<RefOr<Schema>>, Option<RefOr<Schema>>) {
    fn r<T: ToSchema>() -> Option<RefOr<Schema>> {
        Some(RefOr::Ref(
            utoipa::openapi::Ref::from_schema_name(T::name()),
        ))
    }
    match op {
        Op::Login => (r::<LoginRequest>(), r::<LoginAnswer>()),
        Op::Logout => (None, r::<LoggedOut>()),
        Op::Me => (None, r::<MeAnswer>()),
        Op::ListKeys => (None, r::<KeyList>()),
        Op::AddKey => (r::<AddKeyRequest>(), r::<KeyAdded>()),
        Op::ListProducts => (None, r::<ProductList>()),
        Op::MapProduct => (r::<MapProductRequest>(), r::<Remapped>()),
        Op::SetLockUnits => (r::<LockUnitsRequest>(), r::<Product>()),
        Op::Generate => (r::<GenerateRequest>(), r::<Generated>()),
        Op::Import => (None, r::<Imported>()),
        Op::AddFactory => (r::<AddFactoryRequest>(), r::<FactoryAdded>()),
        Op::SetQuota => (r::<SetQuotaRequest>(), r::<QuotaSet>()),
        Op::AddUser => (r::<AddUserRequest>(), r::<UserAdded>()),
        Op::ListUsers => (None, r::<UserList>()),
        Op::SetUserDisabled => (r::<SetDisabledRequest>(), r::<UserRow>()),
        Op::SetPassword => (r::<SetPasswordRequest>(), r::<UserRow>()),
        Op::SetRole => (r::<SetRoleRequest>(), r::<UserRow>()),
        Op::ListFactories => (None, r::<FactoryList>()),
        Op::Activity => (None, r::<Activity>()),
        Op::Revoke => (None, r::<Revoked>()),
        Op::ExportInstalled => (None, None),
        Op::ReadAudit => (None, r::<AuditPage>()),
        Op::VerifyAudit => (None, r::<AuditVerification>()),
        Op::AuditCheckpoint => (None, r::<AuditCheckpoint>()),
        Op::AuditInclusion => (None, r::<InclusionProof>()),
        Op::AuditConsistency => (None, r::<ConsistencyProof>()),
        Op::AuditInstalls => (r::<InstallProofsRequest>(), r::<InstallProofs>()),
        Op::Issue => (r::<IssueRequest>(), r::<RecordList>()),
        Op::Lease => (r::<LeaseRequest>(), r::<LeaseAnswer>()),
        Op::Records => (None, r::<RecordList>()),
        Op::Report => (r::<ReportRequest>(), r::<ReportAnswer>()),
        Op::Locked => (r::<LockedRequest>(), r::<LockedAnswer>()),
        Op::Release => (r::<ReleaseRequest>(), r::<Released>()),
        Op::LeaseKey => (None, r::<LeaseKeyAnswer>()),
        Op::Challenge => (r::<ChallengeRequest>(), r::<ChallengeAnswer>()),
        Op::Verify => (r::<VerifyRequest>(), r::<VerifyAnswer>()),
        Op::OpenApi => (
            None,
            Some(
                ObjectBuilder::new()
                    .description(Some("An OpenAPI 3.1 document"))
                    .into(),
            ),
        ),
    }
}

fn components() -> ComponentsBuilder {
    let mut list: Vec<(String, RefOr<Schema>)> = Vec::new();
    fn add<T: ToSchema>(list: &mut Vec<(String, RefOr<Schema>)>) {
        list.push((T::name().into_owned(), T::schema()));
        T::schemas(list);
    }
    add::<ErrorBody>(&mut list);
    add::<ErrorCode>(&mut list);
    add::<LineError>(&mut list);
    add::<Role>(&mut list);
    add::<ReportStatus>(&mut list);
    add::<ApparatusIdText>(&mut list);
    add::<ProductCodeText>(&mut list);
    add::<ProductSerialText>(&mut list);
    add::<FactoryIdText>(&mut list);
    add::<KeyIdNumber>(&mut list);
    add::<ChipIdHex>(&mut list);
    add::<SealedRecordHex>(&mut list);
    add::<Hex16>(&mut list);
    add::<Hex32>(&mut list);
    add::<Hex64>(&mut list);
    add::<LoginRequest>(&mut list);
    add::<LoginAnswer>(&mut list);
    add::<UserInfo>(&mut list);
    add::<MeAnswer>(&mut list);
    add::<LoggedOut>(&mut list);
    add::<KeyList>(&mut list);
    add::<AddKeyRequest>(&mut list);
    add::<KeyAdded>(&mut list);
    add::<Product>(&mut list);
    add::<ProductList>(&mut list);
    add::<MapProductRequest>(&mut list);
    add::<Remapped>(&mut list);
    add::<LockUnitsRequest>(&mut list);
    add::<GenerateRequest>(&mut list);
    add::<Generated>(&mut list);
    add::<Imported>(&mut list);
    add::<AddFactoryRequest>(&mut list);
    add::<FactoryAdded>(&mut list);
    add::<SetQuotaRequest>(&mut list);
    add::<QuotaSet>(&mut list);
    add::<AddUserRequest>(&mut list);
    add::<UserAdded>(&mut list);
    add::<Revoked>(&mut list);
    add::<UserList>(&mut list);
    add::<UserRow>(&mut list);
    add::<SetDisabledRequest>(&mut list);
    add::<SetPasswordRequest>(&mut list);
    add::<SetRoleRequest>(&mut list);
    add::<FactoryList>(&mut list);
    add::<FactoryOverview>(&mut list);
    add::<QuotaUse>(&mut list);
    add::<LeaseOverview>(&mut list);
    add::<PoolLevel>(&mut list);
    add::<Activity>(&mut list);
    add::<InstallCount>(&mut list);
    add::<RefusedReport>(&mut list);
    add::<AuditEntry>(&mut list);
    add::<AuditPage>(&mut list);
    add::<AuditVerification>(&mut list);
    add::<AuditCheckpoint>(&mut list);
    add::<InclusionProof>(&mut list);
    add::<ConsistencyProof>(&mut list);
    add::<InstallProofsRequest>(&mut list);
    add::<InstallProof>(&mut list);
    add::<InstallProofs>(&mut list);
    add::<IssueRequest>(&mut list);
    add::<Record>(&mut list);
    add::<RecordList>(&mut list);
    add::<LeaseRequest>(&mut list);
    add::<LeaseAnswer>(&mut list);
    add::<ReportRequest>(&mut list);
    add::<ReportAnswer>(&mut list);
    add::<LockedRequest>(&mut list);
    add::<LockedAnswer>(&mut list);
    add::<ReleaseRequest>(&mut list);
    add::<Released>(&mut list);
    add::<LeaseKeyAnswer>(&mut list);
    add::<ChallengeRequest>(&mut list);
    add::<ChallengeAnswer>(&mut list);
    add::<VerifyRequest>(&mut list);
    add::<VerifyAnswer>(&mut list);
    ComponentsBuilder::new().schemas_from_iter(list)
}

fn error_response(codes: &[ErrorCode]) -> ResponseBuilder {
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    ResponseBuilder::new()
        .description(format!(
            "Error body; `error` is one of: {}",
            names.join(", ")
        ))
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            )))),
        )
}

fn path_params(path: &str) -> Vec<utoipa::openapi::path::Parameter> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let schema = match name {
                "code" | "product" => ProductCodeText::schema(),
                "factory" => FactoryIdText::schema(),
                "username" => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(64))
                    .pattern(Some("^[A-Za-z0-9._@-]+$"))
                    .description(Some("A user name"))
                    .into(),
                _ => ApparatusIdText::schema(),
            };
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema))
                .build()
        })
        .collect()
}

/// The document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for op in Op::ALL {
        let route = op.route();
        let (request, answer) = bodies(op);
        let mut codes: Vec<ErrorCode> = vec![ErrorCode::BadRequest, ErrorCode::Internal];
        if op != Op::OpenApi {
            codes.push(ErrorCode::Unavailable);
        }
        if route.access != Access::Public {
            codes.extend([ErrorCode::Unauthorized, ErrorCode::Forbidden]);
        }
        for c in errors(op) {
            if !codes.contains(c) {
                codes.push(*c);
            }
        }
        let mut by_status: Vec<(u16, Vec<ErrorCode>)> = Vec::new();
        for c in codes {
            match by_status.iter_mut().find(|(s, _)| *s == c.status()) {
                Some((_, list)) => list.push(c),
                None => by_status.push((c.status(), vec![c])),
            }
        }
        by_status.sort_by_key(|(s, _)| *s);

        let ok = match route.gives {
            Media::Csv => ResponseBuilder::new()
                .description("Success: CSV text (`text/csv; charset=utf-8`)")
                .content(
                    "text/csv",
                    Content::new(Some(ObjectBuilder::new().schema_type(Type::String).build())),
                ),
            _ => {
                let mut b = ResponseBuilder::new().description("Success");
                if let Some(a) = answer {
                    b = b.content("application/json", Content::new(Some(a)));
                }
                b
            }
        };
        let mut responses = ResponsesBuilder::new().response("200", ok);
        for (status, list) in &by_status {
            let mut resp = error_response(list);
            if *status == 429 {
                resp = resp.header(
                    "Retry-After",
                    utoipa::openapi::header::HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some("Seconds to wait before the next sign-in attempt"))
                        .build(),
                );
            }
            responses = responses.response(status.to_string(), resp);
        }

        let access = match route.access {
            Access::Public => "Public.".to_string(),
            Access::Roles(r) => format!(
                "Roles: {}.",
                r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut operation = OperationBuilder::new()
            .operation_id(Some(format!("{op:?}")))
            .summary(Some(route.summary))
            .description(Some(access))
            .responses(responses);
        let mut params = path_params(route.path);
        match op {
            Op::ReadAudit => params.extend(AuditQuery::into_params(|| Some(ParameterIn::Query))),
            Op::Activity => params.extend(ActivityQuery::into_params(|| Some(ParameterIn::Query))),
            Op::VerifyAudit => {
                params.extend(VerifyAuditQuery::into_params(|| Some(ParameterIn::Query)))
            }
            Op::AuditInclusion => {
                params.extend(InclusionQuery::into_params(|| Some(ParameterIn::Query)))
            }
            Op::AuditConsistency => {
                params.extend(ConsistencyQuery::into_params(|| Some(ParameterIn::Query)))
            }
            _ => {}
        }
        if !params.is_empty() {
            operation = operation.parameters(Some(params));
        }
        if let Access::Roles(_) = route.access {
            operation =
                operation.security(SecurityRequirement::new("session", Vec::<String>::new()));
        }
        match route.takes {
            Media::Json => {
                if let Some(req) = request {
                    operation = operation.request_body(Some(
                        RequestBodyBuilder::new()
                            .required(Some(Required::True))
                            .content("application/json", Content::new(Some(req)))
                            .build(),
                    ));
                }
            }
            Media::Csv => {
                operation = operation.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .description(Some(
                            "CSV lines `apparatus_id,pass_phrase,key_id`; an optional header line with those names",
                        ))
                        .content(
                            "text/csv",
                            Content::new(Some(ObjectBuilder::new().schema_type(Type::String).build())),
                        )
                        .build(),
                ));
            }
            Media::None => {}
        }
        let method = match route.method {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Put => HttpMethod::Put,
        };
        paths = paths.path(
            format!("{}{}", crate::PREFIX, route.path),
            PathItem::new(method, operation.build()),
        );
    }
    let mut components = components().build();
    components.add_security_scheme(
        "session",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The token from POST /api/v1/login (64 hex digits)"))
                .build(),
        ),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Imprint management and authentication server")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every failure answers with an ErrorBody and the status of its code. Byte strings are hex; identifiers are checked on the way in. docs/server.md has the guarantees behind each route.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}

/// The document as pretty JSON text with a final newline: the form of `docs/openapi.json`.
pub fn document_json() -> String {
    // Serialising the document cannot fail: it is plain data with string keys, no custom
    // `Serialize` that errs and no non-string map keys.
    #[allow(clippy::expect_used)]
    let mut text = document()
        .to_pretty_json()
        .expect("an OpenAPI document always serialises");
    text.push('\n');
    text
}
