//! The coordinator's one error type and its one mapping to gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::spec::SpecError;
use crate::store::StoreError;

/// Why a call failed, as the caller should read it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sweep file that does not parse or check (INVALID_ARGUMENT, with
    /// the field violation).
    #[error("invalid sweep file {file}: {source}")]
    Spec {
        /// The file name the client gave.
        file: String,
        /// Where and what.
        source: SpecError,
    },
    /// The database failed (INTERNAL; the details go to the log only).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request that cannot be answered as asked (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// The named thing does not exist (NOT_FOUND).
    #[error("{0} not found")]
    NotFound(String),
    /// The caller no longer holds the trial's lease (FAILED_PRECONDITION).
    #[error("trial {0} is no longer leased to this worker")]
    LeaseLost(i64),
    /// A worker of another protocol version (FAILED_PRECONDITION).
    #[error("worker speaks protocol {got}, the coordinator {want}; upgrade the older one")]
    Protocol {
        /// The worker's version.
        got: u32,
        /// The coordinator's.
        want: u32,
    },
    /// A worker id that was never registered (NOT_FOUND).
    #[error("unknown worker {0}; register first")]
    UnknownWorker(i64),
    /// No valid token: missing, malformed, unknown or revoked
    /// (UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token of a role that may not make the call
    /// (PERMISSION_DENIED).
    #[error("{0}")]
    PermissionDenied(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match &e {
            Error::Spec { source, .. } => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(
                    source.field.clone(),
                    format!(
                        "line {}, column {}: {}",
                        source.line, source.column, source.message
                    ),
                );
                Status::with_error_details(Code::InvalidArgument, e.to_string(), details)
            }
            Error::Store(inner) => {
                tracing::error!(error = ?inner, "store failure");
                Status::internal(e.to_string())
            }
            Error::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::LeaseLost(_) | Error::Protocol { .. } => {
                Status::failed_precondition(e.to_string())
            }
            Error::UnknownWorker(_) => Status::not_found(e.to_string()),
            Error::Unauthenticated(_) => Status::unauthenticated(e.to_string()),
            Error::PermissionDenied(_) => Status::permission_denied(e.to_string()),
        }
    }
}
