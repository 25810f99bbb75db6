//! The gRPC services: the worker side ([`Workers`]: register, lease,
//! progress, finish, checkpoints) and the user side ([`Sweeps`]: submit,
//! get, list, cancel, watch, results, compare, learning curves).
//!
//! Every handler has one shape: the trait method hands the request to a
//! function of this module's submodules that returns the crate's
//! [`Error`], and [`handle`] runs it in a span named for the call and turns
//! the error into the call's status in one place.

mod sweeps;
mod workers;

use std::future::Future;

use tonic::{Response, Status};
use tracing::Instrument;

pub use sweeps::Sweeps;
pub use workers::Workers;

use crate::error::Error;

/// Runs one call's body in a span named for the call, and maps its error to
/// a gRPC status (logging it as the mapping decides).
async fn handle<T>(
    call: &'static str,
    body: impl Future<Output = Result<T, Error>>,
) -> Result<Response<T>, Status> {
    async move { body.await.map(Response::new).map_err(Status::from) }
        .instrument(tracing::info_span!("rpc", call))
        .await
}
