//! One error type for everything the gateway refuses, classified once and
//! rendered as a gRPC status or an HTTP/JSON error, and counted either way.

use axum::http::StatusCode;
use postern_state::StoreError;
use tonic::{Code, Status};

use crate::metrics::ErrorKind;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: ErrorKind,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn grpc_code(&self) -> Code {
        match self.kind {
            ErrorKind::Unauthenticated | ErrorKind::PeerUnauthenticated => Code::Unauthenticated,
            ErrorKind::PeerUnavailable => Code::Unavailable,
            ErrorKind::Forbidden => Code::PermissionDenied,
            ErrorKind::BadRequest => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AgentOffline | ErrorKind::TargetUnreachable | ErrorKind::Draining => {
                Code::Unavailable
            }
            ErrorKind::StoreUnavailable => Code::Unavailable,
            ErrorKind::AttachTimeout => Code::DeadlineExceeded,
            ErrorKind::StreamError => Code::Aborted,
            ErrorKind::AuditUnavailable | ErrorKind::IdentityUnavailable => Code::Unavailable,
            ErrorKind::MfaRequired | ErrorKind::ApprovalRequired => Code::FailedPrecondition,
            ErrorKind::Conflict => Code::Aborted,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::Unauthenticated | ErrorKind::PeerUnauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden | ErrorKind::MfaRequired | ErrorKind::ApprovalRequired => {
                StatusCode::FORBIDDEN
            }
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::AttachTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::AgentOffline
            | ErrorKind::TargetUnreachable
            | ErrorKind::Draining
            | ErrorKind::StoreUnavailable
            | ErrorKind::PeerUnavailable
            | ErrorKind::StreamError
            | ErrorKind::AuditUnavailable
            | ErrorKind::IdentityUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, machine-readable code for JSON errors.
    pub fn code(&self) -> &'static str {
        self.kind.as_str()
    }
}

impl Refusal {
    /// Nothing reached the target, and the cause is this replica's state
    /// rather than the request: retrying elsewhere is safe and likely to work.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Draining | ErrorKind::StoreUnavailable | ErrorKind::PeerUnavailable
        )
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        let retry = refusal.is_retryable();
        let mut status = Status::new(refusal.grpc_code(), refusal.message);
        if retry {
            status.metadata_mut().insert(
                postern_tunnel::auth::RETRY_HEADER,
                tonic::metadata::AsciiMetadataValue::from_static("true"),
            );
        }
        status
    }
}

/// Store failures: a conflict or invalid input is the caller's; anything else
/// means the policy cannot be evaluated, and the request fails closed.
impl From<StoreError> for Refusal {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid { .. } => Refusal::new(ErrorKind::BadRequest, err.to_string()),
            // A name taken is a conflict with what exists (HTTP 409), so a
            // script can tell it from a malformed request.
            StoreError::AlreadyExists { .. } | StoreError::Conflict { .. } => {
                Refusal::new(ErrorKind::Conflict, err.to_string())
            }
            // The policy cache said so: logged once when it turned, not per request.
            StoreError::Unavailable(source)
                if source.is::<crate::policy_cache::PastStaleLimit>() =>
            {
                Refusal::new(
                    ErrorKind::StoreUnavailable,
                    format!("{source}; try again shortly"),
                )
            }
            StoreError::Unavailable(_) | StoreError::Backend(_) => {
                tracing::error!(error = %err, "policy store failure");
                Refusal::new(
                    ErrorKind::StoreUnavailable,
                    "the policy store is unavailable; try again shortly",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_a_status_and_code() {
        let cases = [
            (
                ErrorKind::Unauthenticated,
                Code::Unauthenticated,
                401,
                "unauthenticated",
            ),
            (
                ErrorKind::Forbidden,
                Code::PermissionDenied,
                403,
                "forbidden",
            ),
            (
                ErrorKind::BadRequest,
                Code::InvalidArgument,
                400,
                "bad_request",
            ),
            (ErrorKind::NotFound, Code::NotFound, 404, "not_found"),
            (
                ErrorKind::AgentOffline,
                Code::Unavailable,
                503,
                "agent_offline",
            ),
            (
                ErrorKind::TargetUnreachable,
                Code::Unavailable,
                503,
                "target_unreachable",
            ),
            (
                ErrorKind::AttachTimeout,
                Code::DeadlineExceeded,
                504,
                "attach_timeout",
            ),
            (
                ErrorKind::StoreUnavailable,
                Code::Unavailable,
                503,
                "store_unavailable",
            ),
            (ErrorKind::Draining, Code::Unavailable, 503, "draining"),
            (ErrorKind::StreamError, Code::Aborted, 503, "stream_error"),
            (
                ErrorKind::MfaRequired,
                Code::FailedPrecondition,
                403,
                "mfa_required",
            ),
            (
                ErrorKind::ApprovalRequired,
                Code::FailedPrecondition,
                403,
                "approval_required",
            ),
            (ErrorKind::Conflict, Code::Aborted, 409, "conflict"),
        ];
        for (kind, code, http, name) in cases {
            let refusal = Refusal::new(kind, "x");
            assert_eq!(refusal.grpc_code(), code, "{kind:?}");
            assert_eq!(refusal.http_status().as_u16(), http, "{kind:?}");
            assert_eq!(refusal.code(), name);
        }
    }

    #[test]
    fn store_errors_fail_closed() {
        let refusal = Refusal::from(StoreError::Unavailable("disk gone".into()));
        assert_eq!(refusal.kind, ErrorKind::StoreUnavailable);
        assert!(
            !refusal.message.contains("disk gone"),
            "internal detail leaked"
        );
        let refusal = Refusal::from(StoreError::AlreadyExists {
            kind: "connection",
            name: "pg".into(),
        });
        assert_eq!(refusal.kind, ErrorKind::Conflict);
        let refusal = Refusal::from(StoreError::Invalid {
            field: "name",
            reason: "empty".into(),
        });
        assert_eq!(refusal.kind, ErrorKind::BadRequest);
    }
}
