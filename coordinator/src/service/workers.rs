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

use super::{Finishes, Leases, Reports, handle};
use crate::auth::{Gate, Role};
use crate::convert;
use crate::error::Error;
use crate::lease::{self, Policy};
use crate::limits;
use crate::search::SweepFacts;
use crate::store::{
    self, EpochReport, Finish, LeaseAsk, LeaseState, Leasing, Recorded, Store, TrialRow,
};
use crate::telemetry;

/// The worker-facing service.
#[derive(Debug, Clone)]
pub struct Workers {
    /// Where trials, leases and metrics live.
    pub store: Store,
    /// How long leases last and how often a trial may be leased.
    pub policy: Policy,
    /// Turns true when the server shuts down; open streams end then.
    pub stopping: watch::Receiver<bool>,
    /// Admits calls by their token.
    pub gate: Gate,
    /// The sweeps' methods and early-stopping rules, read once each.
    pub sweeps: SweepFacts,
    /// Writes epoch reports in batches.
    pub reports: Reports,
    /// Takes trials for waiting workers in batches.
    pub leases: Leases,
    /// Ends trials (completed or failed) in batches.
    pub finishes: Finishes,
}

fn directive(state: LeaseState) -> Directive {
    match state {
        LeaseState::Held => Directive::Continue,
        LeaseState::Lost => Directive::Stop,
        LeaseState::Cancelled => Directive::Cancelled,
        LeaseState::Stopped => Directive::StoppedEarly,
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

async fn register(w: &Workers, r: pb::RegisterRequest) -> Result<pb::RegisterResponse, Error> {
    if r.protocol_version != proto::PROTOCOL_VERSION {
        return Err(Error::Protocol {
            got: r.protocol_version,
            want: proto::PROTOCOL_VERSION,
        });
    }
    limits::name("worker name", &r.name)?;
    limits::name("device", &r.device)?;
    if !(1..=limits::MAX_SLOTS).contains(&r.slots) {
        return Err(Error::InvalidArgument(format!(
            "slots must lie in 1..={}, got {}",
            limits::MAX_SLOTS,
            r.slots
        )));
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
    if r.wait_ms > limits::MAX_LEASE_WAIT_MS {
        return Err(Error::InvalidArgument(format!(
            "wait_ms is {}; a lease waits at most {} ms",
            r.wait_ms,
            limits::MAX_LEASE_WAIT_MS
        )));
    }
    limits::text("pack_with", &r.pack_with, limits::MAX_TEXT_CHARS)?;
    let wait = Duration::from_millis(u64::from(r.wait_ms));
    let ask = LeaseAsk {
        worker: r.worker_id,
        pack_with: r.pack_with,
    };
    let leased = match lease::wait_for_trial(&w.store, &w.leases, ask, wait).await? {
        Leasing::Leased(leased) => Some(*leased),
        Leasing::Empty => None,
        Leasing::UnknownWorker => return Err(Error::UnknownWorker(r.worker_id)),
    };
    Ok(pb::LeaseResponse {
        lease: leased.map(|leased| {
            telemetry::leased();
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

/// The trial, unless the epoch lies outside its `1..=epochs` or past the
/// next epoch to store (see [`store::epoch_refusal`]).
async fn check_epoch(w: &Workers, trial_id: i64, epoch: u32) -> Result<TrialRow, Error> {
    let trial = w
        .store
        .trial(trial_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("trial {trial_id}")))?;
    match store::epoch_refusal(trial_id, epoch, trial.config.epochs, trial.epochs_done) {
        Some(why) => Err(Error::InvalidArgument(why)),
        None => Ok(trial),
    }
}

/// `Some(sweep)` as held, or the refusal of a caller that no longer
/// holds the lease.
fn held_in(sweep: Option<i64>, trial_id: i64) -> Result<i64, Error> {
    sweep.ok_or(Error::LeaseLost(trial_id))
}

/// The metrics of a report, checked: known names of their split, values
/// they can take, each (split, metric) at most once.
fn metrics(r: &pb::ProgressReport) -> Result<Vec<MetricValue>, Error> {
    let refuse = |e: String| {
        Error::InvalidArgument(format!(
            "report of trial {} epoch {}: {e}",
            r.trial_id, r.epoch
        ))
    };
    let metrics = r
        .metrics
        .iter()
        .map(MetricValue::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(refuse)?;
    let mut seen: Vec<_> = metrics.iter().map(|m| (m.split, m.metric)).collect();
    seen.sort_unstable();
    if let Some(twice) = seen.windows(2).find(|p| p[0] == p[1]) {
        let (split, metric) = twice[0];
        return Err(refuse(format!("{split} {metric} is given twice")));
    }
    Ok(metrics)
}

/// Stores one report (or renews on a heartbeat) and says what to do.
async fn progress(w: &Workers, r: &pb::ProgressReport) -> Result<pb::ProgressAck, Error> {
    let state = if r.epoch == 0 {
        if !r.metrics.is_empty() {
            return Err(Error::InvalidArgument(
                "a heartbeat (epoch 0) carries no metrics".into(),
            ));
        }
        w.store
            .renew(r.trial_id, &r.lease_id, w.policy.lease_ms())
            .await?
    } else {
        let report = EpochReport {
            trial_id: r.trial_id,
            lease_id: r.lease_id.clone(),
            epoch: r.epoch,
            metrics: metrics(r)?,
        };
        match w.reports.record(report).await? {
            Recorded::Held(trial) if w.sweeps.after_epoch(&w.store, &trial, r.epoch).await? => {
                LeaseState::Stopped
            }
            Recorded::Held(_) => LeaseState::Held,
            Recorded::NotHeld(state) => state,
            Recorded::Refused(message) => return Err(Error::InvalidArgument(message)),
            Recorded::Unknown => return Err(Error::NotFound(format!("trial {}", r.trial_id))),
        }
    };
    if !matches!(state, LeaseState::Held | LeaseState::Stopped) {
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
            let arrived = std::time::Instant::now();
            let ack = match report {
                Ok(r) => {
                    let ack = progress(&w, &r).await.map_err(Status::from);
                    if ack.is_ok() && r.epoch > 0 {
                        telemetry::report(arrived.elapsed());
                    }
                    ack
                }
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
    limits::samples(&r.samples)?;
    let ended = w
        .finishes
        .finish(Finish {
            trial_id: r.trial_id,
            lease_id: r.lease_id,
            failure: None,
        })
        .await?;
    let sweep = held_in(ended, r.trial_id)?;
    tracing::info!(trial = r.trial_id, "trial completed");
    if !r.samples.is_empty() {
        let epoch = w
            .store
            .trial(r.trial_id)
            .await?
            .map_or(0, |t| t.epochs_done);
        keep_samples(w, r.trial_id, epoch, r.samples).await?;
    }
    w.sweeps.after_end(&w.store, sweep).await?;
    Ok(pb::CompleteResponse {})
}

async fn fail(w: &Workers, r: pb::FailRequest) -> Result<pb::FailResponse, Error> {
    limits::text("reason", &r.reason, limits::MAX_TEXT_CHARS)?;
    let failed = w
        .finishes
        .finish(Finish {
            trial_id: r.trial_id,
            lease_id: r.lease_id,
            failure: Some(r.reason.clone()),
        })
        .await?;
    let sweep = held_in(failed, r.trial_id)?;
    tracing::warn!(trial = r.trial_id, reason = r.reason, "trial failed");
    w.sweeps.after_end(&w.store, sweep).await?;
    Ok(pb::FailResponse {})
}

async fn release(w: &Workers, r: pb::ReleaseRequest) -> Result<pb::ReleaseResponse, Error> {
    let released = w
        .store
        .release(r.trial_id, &r.lease_id, r.preempted)
        .await?;
    still_held(released, r.trial_id)?;
    tracing::info!(
        trial = r.trial_id,
        preempted = r.preempted,
        "trial released"
    );
    Ok(pb::ReleaseResponse {})
}

async fn put_checkpoint(
    w: &Workers,
    r: pb::PutCheckpointRequest,
) -> Result<pb::PutCheckpointResponse, Error> {
    if r.data.len() > limits::MAX_CHECKPOINT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "checkpoint is {} bytes; at most {} are allowed",
            r.data.len(),
            limits::MAX_CHECKPOINT_BYTES
        )));
    }
    limits::samples(&r.samples)?;
    check_epoch(w, r.trial_id, r.epoch).await?;
    let state = w
        .store
        .put_checkpoint(r.trial_id, &r.lease_id, r.epoch, &r.data)
        .await?;
    still_held(state == LeaseState::Held, r.trial_id)?;
    if !r.samples.is_empty() {
        keep_samples(w, r.trial_id, r.epoch, r.samples).await?;
    }
    Ok(pb::PutCheckpointResponse {})
}

/// Stores a trial's predictions on the sample items at `epoch`.
async fn keep_samples(
    w: &Workers,
    trial_id: i64,
    epoch: u32,
    samples: Vec<pb::BoardSample>,
) -> Result<(), Error> {
    let stored = pb::BoardSamples { epoch, samples };
    w.store
        .put_samples(trial_id, epoch, &prost::Message::encode_to_vec(&stored))
        .await?;
    Ok(())
}

async fn get_checkpoint(
    w: &Workers,
    r: pb::GetCheckpointRequest,
) -> Result<pb::GetCheckpointResponse, Error> {
    let state = w
        .store
        .renew(r.trial_id, &r.lease_id, w.policy.lease_ms())
        .await?;
    still_held(state == LeaseState::Held, r.trial_id)?;
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
        handle(&self.gate, "Register", Role::Worker, request, |r| {
            register(self, r)
        })
        .await
    }

    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        handle(&self.gate, "Lease", Role::Worker, request, |r| {
            lease(self, r)
        })
        .await
    }

    type ReportProgressStream = Pin<Box<ProgressAcks>>;

    async fn report_progress(
        &self,
        request: Request<Streaming<pb::ProgressReport>>,
    ) -> Result<Response<Self::ReportProgressStream>, Status> {
        handle(&self.gate, "ReportProgress", Role::Worker, request, |r| {
            report_progress(self, r)
        })
        .await
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        handle(&self.gate, "Complete", Role::Worker, request, |r| {
            complete(self, r)
        })
        .await
    }

    async fn fail(
        &self,
        request: Request<pb::FailRequest>,
    ) -> Result<Response<pb::FailResponse>, Status> {
        handle(&self.gate, "Fail", Role::Worker, request, |r| fail(self, r)).await
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        handle(&self.gate, "Release", Role::Worker, request, |r| {
            release(self, r)
        })
        .await
    }

    async fn put_checkpoint(
        &self,
        request: Request<pb::PutCheckpointRequest>,
    ) -> Result<Response<pb::PutCheckpointResponse>, Status> {
        handle(&self.gate, "PutCheckpoint", Role::Worker, request, |r| {
            put_checkpoint(self, r)
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        handle(&self.gate, "GetCheckpoint", Role::Worker, request, |r| {
            get_checkpoint(self, r)
        })
        .await
    }
}
