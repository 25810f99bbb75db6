//! The worker side: register, lease (a long poll), progress reports that
//! renew the lease, complete, fail, release and checkpoints. Every call
//! about a trial carries its lease id; a caller without the lease is
//! refused (see [`crate::lease`]).

use std::pin::Pin;
use std::time::Duration;

use proto::metrics::MetricValue;
use proto::v1::worker_service_server::WorkerService;
use proto::v1::{self as pb, Directive};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::handle;
use crate::convert;
use crate::error::Error;
use crate::lease::{self, Policy};
use crate::store::{LeaseState, Store};

/// The worker-facing service.
#[derive(Debug, Clone)]
pub struct Workers {
    /// Where trials, leases and metrics live.
    pub store: Store,
    /// How long leases last and how often a trial may be leased.
    pub policy: Policy,
    /// Turns true when the server shuts down; open streams end then.
    pub stopping: watch::Receiver<bool>,
}

fn directive(state: LeaseState) -> Directive {
    match state {
        LeaseState::Held => Directive::Continue,
        LeaseState::Lost => Directive::Stop,
        LeaseState::Cancelled => Directive::Cancelled,
    }
}

fn held(state: LeaseState, trial_id: i64) -> Result<(), Error> {
    match state {
        LeaseState::Held => Ok(()),
        _ => Err(Error::LeaseLost(trial_id)),
    }
}

/// `ok`, or the refusal of a caller that no longer holds the lease.
fn still_held(ok: bool, trial_id: i64) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::LeaseLost(trial_id))
    }
}

async fn check_worker(w: &Workers, id: i64) -> Result<(), Error> {
    if w.store.worker_exists(id).await? {
        Ok(())
    } else {
        Err(Error::UnknownWorker(id))
    }
}

async fn register(w: &Workers, r: pb::RegisterRequest) -> Result<pb::RegisterResponse, Error> {
    if r.protocol_version != proto::PROTOCOL_VERSION {
        return Err(Error::Protocol {
            got: r.protocol_version,
            want: proto::PROTOCOL_VERSION,
        });
    }
    let id = w.store.register_worker(&r.name, &r.device, r.slots).await?;
    tracing::info!(
        worker = id,
        name = r.name,
        device = r.device,
        "worker registered"
    );
    Ok(pb::RegisterResponse {
        worker_id: id,
        lease_seconds: w.policy.lease.as_secs() as u32,
    })
}

async fn lease(w: &Workers, r: pb::LeaseRequest) -> Result<pb::LeaseResponse, Error> {
    check_worker(w, r.worker_id).await?;
    let wait = Duration::from_millis(u64::from(r.wait_ms));
    let leased = lease::wait_for_trial(&w.store, w.policy, r.worker_id, wait).await?;
    Ok(pb::LeaseResponse {
        lease: leased.map(|leased| {
            tracing::info!(
                trial = leased.trial.id,
                worker = r.worker_id,
                "trial leased"
            );
            pb::Lease {
                lease_id: leased.lease_id,
                resume_from_epoch: leased.trial.epochs_done,
                trial: Some(convert::trial(&leased.trial)),
            }
        }),
    })
}

/// Stores one report (or renews on a heartbeat) and says what to do.
async fn progress(w: &Workers, r: &pb::ProgressReport) -> Result<pb::ProgressAck, Error> {
    let state = if r.epoch == 0 {
        w.store
            .renew(r.trial_id, &r.lease_id, w.policy.lease_ms())
            .await?
    } else {
        let metrics = r
            .metrics
            .iter()
            .map(MetricValue::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "report of trial {} epoch {}: {e}",
                    r.trial_id, r.epoch
                ))
            })?;
        w.store
            .record_epoch(
                r.trial_id,
                &r.lease_id,
                r.epoch,
                &metrics,
                w.policy.lease_ms(),
            )
            .await?
    };
    if state != LeaseState::Held {
        tracing::warn!(
            trial = r.trial_id,
            epoch = r.epoch,
            ?state,
            "report from a worker without the lease refused"
        );
    }
    Ok(pb::ProgressAck {
        trial_id: r.trial_id,
        epoch: r.epoch,
        directive: directive(state).into(),
    })
}

/// Answers a stream of reports in order until it ends, fails or the server
/// stops.
async fn report_progress(
    w: &Workers,
    mut reports: Streaming<pb::ProgressReport>,
) -> Result<Pin<Box<ProgressAcks>>, Error> {
    let (tx, rx) = mpsc::channel(16);
    let w = w.clone();
    let mut stopping = w.stopping.clone();
    tokio::spawn(async move {
        loop {
            let report = tokio::select! {
                report = reports.next() => report,
                _ = stopping.wait_for(|s| *s) => None,
            };
            let Some(report) = report else { break };
            let ack = match report {
                Ok(r) => progress(&w, &r).await.map_err(Status::from),
                Err(status) => Err(status),
            };
            let failed = ack.is_err();
            if tx.send(ack).await.is_err() || failed {
                break;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

async fn complete(w: &Workers, r: pb::CompleteRequest) -> Result<pb::CompleteResponse, Error> {
    still_held(
        w.store.finish(r.trial_id, &r.lease_id, None).await?,
        r.trial_id,
    )?;
    tracing::info!(trial = r.trial_id, "trial completed");
    Ok(pb::CompleteResponse {})
}

async fn fail(w: &Workers, r: pb::FailRequest) -> Result<pb::FailResponse, Error> {
    let failed = w
        .store
        .finish(r.trial_id, &r.lease_id, Some(&r.reason))
        .await?;
    still_held(failed, r.trial_id)?;
    tracing::warn!(trial = r.trial_id, reason = r.reason, "trial failed");
    Ok(pb::FailResponse {})
}

async fn release(w: &Workers, r: pb::ReleaseRequest) -> Result<pb::ReleaseResponse, Error> {
    still_held(w.store.release(r.trial_id, &r.lease_id).await?, r.trial_id)?;
    tracing::info!(trial = r.trial_id, "trial released");
    Ok(pb::ReleaseResponse {})
}

async fn put_checkpoint(
    w: &Workers,
    r: pb::PutCheckpointRequest,
) -> Result<pb::PutCheckpointResponse, Error> {
    let state = w
        .store
        .put_checkpoint(r.trial_id, &r.lease_id, r.epoch, &r.data)
        .await?;
    held(state, r.trial_id)?;
    Ok(pb::PutCheckpointResponse {})
}

async fn get_checkpoint(
    w: &Workers,
    r: pb::GetCheckpointRequest,
) -> Result<pb::GetCheckpointResponse, Error> {
    let state = w
        .store
        .renew(r.trial_id, &r.lease_id, w.policy.lease_ms())
        .await?;
    held(state, r.trial_id)?;
    let checkpoint = w.store.checkpoint(r.trial_id).await?;
    Ok(pb::GetCheckpointResponse {
        checkpoint: checkpoint.map(|(epoch, data)| pb::Checkpoint { epoch, data }),
    })
}

type ProgressAcks = dyn Stream<Item = Result<pb::ProgressAck, Status>> + Send;

#[tonic::async_trait]
impl WorkerService for Workers {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        handle("Register", register(self, request.into_inner())).await
    }

    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        handle("Lease", lease(self, request.into_inner())).await
    }

    type ReportProgressStream = Pin<Box<ProgressAcks>>;

    async fn report_progress(
        &self,
        request: Request<Streaming<pb::ProgressReport>>,
    ) -> Result<Response<Self::ReportProgressStream>, Status> {
        handle(
            "ReportProgress",
            report_progress(self, request.into_inner()),
        )
        .await
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        handle("Complete", complete(self, request.into_inner())).await
    }

    async fn fail(
        &self,
        request: Request<pb::FailRequest>,
    ) -> Result<Response<pb::FailResponse>, Status> {
        handle("Fail", fail(self, request.into_inner())).await
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        handle("Release", release(self, request.into_inner())).await
    }

    async fn put_checkpoint(
        &self,
        request: Request<pb::PutCheckpointRequest>,
    ) -> Result<Response<pb::PutCheckpointResponse>, Status> {
        handle("PutCheckpoint", put_checkpoint(self, request.into_inner())).await
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        handle("GetCheckpoint", get_checkpoint(self, request.into_inner())).await
    }
}
