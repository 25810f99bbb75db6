//! The coordinator's one error type and its one mapping to gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::spec::SpecError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid sweep file {file}: {source}")]
    Spec { file: String, source: SpecError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("trial {0} is no longer leased to this worker")]
    LeaseLost(i64),
    #[error("worker speaks protocol {got}, the coordinator {want}; upgrade the older one")]
    Protocol { got: u32, want: u32 },
    #[error("unknown worker {0}; register first")]
    UnknownWorker(i64),
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
        }
    }
}
