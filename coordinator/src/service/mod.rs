//! The gRPC services: the worker side ([`Workers`]: register, lease,
//! progress, finish, checkpoints) and the user side ([`Sweeps`]: submit,
//! get, list, cancel, watch, results, compare, learning curves).
//!
//! Every handler has one shape: the trait method hands the request to
//! [`handle`] with the role the call needs and a function of this module's
//! submodules that returns the crate's [`Error`]; `handle` admits the call
//! by its token, runs the function in a span named for the call and turns
//! the error into the call's status in one place.

mod batch;
mod sweeps;
mod workers;

use std::future::Future;

use tonic::{Request, Response, Status};
use tracing::Instrument;

pub use batch::{Batcher, Finishes, Leases, Reports};
pub use sweeps::Sweeps;
pub(crate) use sweeps::{TrialChanges, detail, list_sweeps, stored_sweep};
pub use workers::Workers;

use crate::auth::{Gate, Role};
use crate::error::Error;
use crate::telemetry;

/// Admits one call by its token (it needs `need`), runs its body on the
/// request's message in a span named for the call, and maps its error to a
/// gRPC status (logging it as the mapping decides).
async fn handle<Req, T, Fut>(
    gate: &Gate,
    call: &'static str,
    need: Role,
    request: Request<Req>,
    body: impl FnOnce(Req) -> Fut,
) -> Result<Response<T>, Status>
where
    Fut: Future<Output = Result<T, Error>>,
{
    let started = std::time::Instant::now();
    let result = async move {
        gate.admit(request.metadata(), call, need).await?;
        body(request.into_inner()).await
    }
    .instrument(tracing::info_span!("rpc", call))
    .await
    .map(Response::new)
    .map_err(Status::from);
    telemetry::rpc(call, started.elapsed(), result.as_ref().err());
    result
}
