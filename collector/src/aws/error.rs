//! Why an AWS call failed: which call (service and operation), what it was about, a kind from a bounded set,
//! and the SDK's error with its sources as text (or what was wrong with the answer).

use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use super::calls::THROTTLING_CODES;
use super::error_chain;

/// How a call failed. A bounded set, so it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AwsErrorKind {
    /// The service asked us to slow down (HTTP 429/503 or a throttling error code), after every retry.
    Throttled,
    /// The credentials were refused or lack the permission (HTTP 403 or an access error code).
    AccessDenied,
    /// What the call named does not exist (HTTP 404 or a not-found error code).
    NotFound,
    /// Any other refusal of the request (other 4xx), or a request that could not be built.
    Client,
    /// The service failed (5xx other than 503).
    Server,
    /// No answer: connection refused or reset, timed out.
    Transport,
    /// An answer that could not be parsed, or that does not fit what was asked.
    MalformedResponse,
}

/// Error codes of refused credentials or missing permissions.
const ACCESS_DENIED_CODES: [&str; 11] = [
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "AuthorizationError",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
];

impl AwsErrorKind {
    pub const ALL: [AwsErrorKind; 7] = [
        AwsErrorKind::Throttled,
        AwsErrorKind::AccessDenied,
        AwsErrorKind::NotFound,
        AwsErrorKind::Client,
        AwsErrorKind::Server,
        AwsErrorKind::Transport,
        AwsErrorKind::MalformedResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AwsErrorKind::Throttled => "throttled",
            AwsErrorKind::AccessDenied => "access_denied",
            AwsErrorKind::NotFound => "not_found",
            AwsErrorKind::Client => "client",
            AwsErrorKind::Server => "server",
            AwsErrorKind::Transport => "transport",
            AwsErrorKind::MalformedResponse => "malformed_response",
        }
    }

    /// An error answer, from its HTTP status and error code: throttling first (as the call counters classify
    /// it), then the code, then the status.
    pub fn of_response(status: u16, code: Option<&str>) -> AwsErrorKind {
        let code = code.unwrap_or_default();
        if matches!(status, 429 | 503) || THROTTLING_CODES.contains(&code) {
            AwsErrorKind::Throttled
        } else if ACCESS_DENIED_CODES.contains(&code) {
            AwsErrorKind::AccessDenied
        } else if code.starts_with("NoSuch") || code.contains("NotFound") {
            AwsErrorKind::NotFound
        } else {
            match status {
                403 => AwsErrorKind::AccessDenied,
                404 => AwsErrorKind::NotFound,
                500..=599 => AwsErrorKind::Server,
                _ => AwsErrorKind::Client,
            }
        }
    }
}

impl fmt::Display for AwsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An AWS call that failed, or whose answer could not be used. Shown as `Operation[ subject]: message`, e.g.
/// `FilterLogEvents /app/api: service error: ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsError {
    /// The service as the call counters spell it (`ec2`, `costexplorer`, `cloudwatchlogs`, ...).
    pub service: &'static str,
    /// The API operation, e.g. `DescribeInstances`.
    pub operation: &'static str,
    /// What the call was about, when the message names it: a log group, a Cost Explorer grouping (`by
    /// service`).
    pub subject: Option<Box<str>>,
    pub kind: AwsErrorKind,
    /// The service's error code (`DependencyViolation`, `InvalidVolume.NotFound`, ...), when it answered one.
    pub code: Option<Box<str>>,
    /// The SDK's error with its sources, or what was wrong with the answer. Never a metric label.
    pub message: String,
}

impl AwsError {
    pub fn new(service: &'static str, operation: &'static str, kind: AwsErrorKind, message: impl Into<String>) -> Self {
        AwsError { service, operation, subject: None, kind, code: None, message: message.into() }
    }

    /// A failed call, classified from the SDK's error; the message is its error chain.
    pub fn sdk<E>(service: &'static str, operation: &'static str, err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let kind = match err {
            SdkError::ConstructionFailure(_) => AwsErrorKind::Client,
            SdkError::DispatchFailure(d) if d.is_user() => AwsErrorKind::Client,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => AwsErrorKind::Transport,
            SdkError::ResponseError(_) => AwsErrorKind::MalformedResponse,
            SdkError::ServiceError(e) => AwsErrorKind::of_response(e.raw().status().as_u16(), err.code()),
            _ => AwsErrorKind::Client,
        };
        let mut e = AwsError::new(service, operation, kind, error_chain(err));
        e.code = err.code().map(Box::from);
        e
    }

    /// True when the service answered with one of `codes`.
    pub fn has_code(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }

    /// An answer that could not be used.
    pub fn malformed(service: &'static str, operation: &'static str, message: impl Into<String>) -> Self {
        AwsError::new(service, operation, AwsErrorKind::MalformedResponse, message)
    }

    /// The same error, about `subject`.
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into().into_boxed_str());
        self
    }

    /// The bounded kind of the error, for metric labels.
    pub fn as_kind(&self) -> &'static str {
        self.kind.as_str()
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.operation)?;
        if let Some(subject) = &self.subject {
            write!(f, " {subject}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for AwsError {}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn check(err: &AwsError, display: &str, kind: &str) {
        assert_eq!(err.to_string(), display);
        assert_eq!(err.as_kind(), kind, "{display}");
    }

    fn service_error(status: u16, code: &str) -> SdkError<ListObjectsV2Error, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message("refused").build();
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(ListObjectsV2Error::generic(meta), raw)
    }

    #[test]
    fn display_and_kind() {
        let e = |kind| AwsError::new("cloudwatchlogs", "FilterLogEvents", kind, "service error: boom");
        check(&e(AwsErrorKind::Throttled), "FilterLogEvents: service error: boom", "throttled");
        check(&e(AwsErrorKind::Client).about("/app/api"), "FilterLogEvents /app/api: service error: boom", "client");
        check(
            &AwsError::malformed("costexplorer", "GetCostAndUsage", "a result has no valid time period")
                .about("by service"),
            "GetCostAndUsage by service: a result has no valid time period",
            "malformed_response",
        );
        let names: Vec<_> = AwsErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["throttled", "access_denied", "not_found", "client", "server", "transport", "malformed_response"]
        );
    }

    #[test]
    fn error_answers_are_classified() {
        let cases: [(u16, &str, AwsErrorKind); 12] = [
            (429, "", AwsErrorKind::Throttled),
            (503, "SlowDown", AwsErrorKind::Throttled),
            (400, "ThrottlingException", AwsErrorKind::Throttled),
            (400, "RequestLimitExceeded", AwsErrorKind::Throttled),
            (403, "AccessDenied", AwsErrorKind::AccessDenied),
            (400, "UnauthorizedOperation", AwsErrorKind::AccessDenied),
            (403, "", AwsErrorKind::AccessDenied),
            (404, "NoSuchBucket", AwsErrorKind::NotFound),
            (400, "InvalidInstanceID.NotFound", AwsErrorKind::NotFound),
            (400, "ResourceNotFoundException", AwsErrorKind::NotFound),
            (400, "ValidationException", AwsErrorKind::Client),
            (500, "InternalError", AwsErrorKind::Server),
        ];
        for (status, code, want) in cases {
            assert_eq!(AwsErrorKind::of_response(status, Some(code)), want, "{status} {code}");
        }
    }

    #[test]
    fn sdk_errors_are_classified() {
        let e = AwsError::sdk("s3", "ListObjectsV2", &service_error(404, "NoSuchBucket"));
        assert_eq!((e.service, e.operation, e.kind), ("s3", "ListObjectsV2", AwsErrorKind::NotFound));
        assert!(e.to_string().starts_with("ListObjectsV2: service error"), "{e}");
        assert!(e.message.contains("NoSuchBucket"), "{e}");

        let timeout: SdkError<ListObjectsV2Error, HttpResponse> = SdkError::timeout_error("too slow");
        let e = AwsError::sdk("s3", "ListObjectsV2", &timeout);
        assert!(e.to_string().starts_with("ListObjectsV2: request has timed out: too slow"), "{e}");
        assert_eq!(e.as_kind(), "transport");
        let reset: SdkError<ListObjectsV2Error, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert_eq!(AwsError::sdk("s3", "ListObjectsV2", &reset).kind, AwsErrorKind::Transport);
        let built: SdkError<ListObjectsV2Error, HttpResponse> = SdkError::construction_failure("no bucket");
        assert_eq!(AwsError::sdk("s3", "ListObjectsV2", &built).kind, AwsErrorKind::Client);
        let garbled: SdkError<ListObjectsV2Error, HttpResponse> = SdkError::response_error(
            "unexpected end of XML",
            HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::empty()),
        );
        assert_eq!(AwsError::sdk("s3", "ListObjectsV2", &garbled).kind, AwsErrorKind::MalformedResponse);
    }
}
