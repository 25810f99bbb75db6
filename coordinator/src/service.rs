//! The gRPC services: the worker side (register, lease, progress, finish,
//! checkpoints) and the user side (submit, get, list, cancel, watch,
//! results, compare, learning curves).

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use proto::v1::sweep_service_server::SweepService;
use proto::v1::worker_service_server::WorkerService;
use proto::v1::{self as pb, Directive};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::error::Error;
use crate::results;
use crate::spec;
use crate::store::{LeaseState, Store};

/// Lease and retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long a lease lasts without a report.
    pub lease: Duration,
    /// Leases a trial may use before it fails.
    pub max_attempts: u32,
}

impl Policy {
    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }
}

/// The longest a Lease call waits for work.
const MAX_LEASE_WAIT: Duration = Duration::from_secs(30);
/// How often waiting leases and watches look at the database.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct Workers {
    pub store: Store,
    pub policy: Policy,
    /// Turns true when the server shuts down; open streams end then.
    pub stopping: watch::Receiver<bool>,
}

impl Workers {
    async fn check_worker(&self, id: i64) -> Result<(), Error> {
        if self.store.worker_exists(id).await? {
            Ok(())
        } else {
            Err(Error::UnknownWorker(id))
        }
    }
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

#[tonic::async_trait]
impl WorkerService for Workers {
    #[tracing::instrument(skip(self))]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        if r.protocol_version != proto::PROTOCOL_VERSION {
            return Err(Error::Protocol {
                got: r.protocol_version,
                want: proto::PROTOCOL_VERSION,
            }
            .into());
        }
        let id = self
            .store
            .register_worker(&r.name, &r.device, r.slots)
            .await
            .map_err(Error::from)?;
        tracing::info!(
            worker = id,
            name = r.name,
            device = r.device,
            "worker registered"
        );
        Ok(Response::new(pb::RegisterResponse {
            worker_id: id,
            lease_seconds: self.policy.lease.as_secs() as u32,
        }))
    }

    #[tracing::instrument(skip(self))]
    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let r = request.into_inner();
        self.check_worker(r.worker_id).await?;
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(u64::from(r.wait_ms)).min(MAX_LEASE_WAIT);
        loop {
            if let Some(leased) = self
                .store
                .lease(r.worker_id, self.policy.lease_ms())
                .await
                .map_err(Error::from)?
            {
                tracing::info!(
                    trial = leased.trial.id,
                    worker = r.worker_id,
                    "trial leased"
                );
                return Ok(Response::new(pb::LeaseResponse {
                    lease: Some(pb::Lease {
                        lease_id: leased.lease_id,
                        resume_from_epoch: leased.trial.epochs_done,
                        trial: Some(convert::trial(&leased.trial)),
                    }),
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(pb::LeaseResponse { lease: None }));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    type ReportProgressStream = Pin<Box<dyn Stream<Item = Result<pb::ProgressAck, Status>> + Send>>;

    async fn report_progress(
        &self,
        request: Request<Streaming<pb::ProgressReport>>,
    ) -> Result<Response<Self::ReportProgressStream>, Status> {
        let mut reports = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let me = self.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            loop {
                let report = tokio::select! {
                    report = reports.next() => report,
                    _ = stopping.wait_for(|s| *s) => None,
                };
                let Some(report) = report else { break };
                let ack = match report {
                    Ok(r) => me.progress(&r).await.map_err(Status::from),
                    Err(status) => Err(status),
                };
                let failed = ack.is_err();
                if tx.send(ack).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let r = request.into_inner();
        if !self
            .store
            .finish(r.trial_id, &r.lease_id, None)
            .await
            .map_err(Error::from)?
        {
            return Err(Error::LeaseLost(r.trial_id).into());
        }
        tracing::info!(trial = r.trial_id, "trial completed");
        Ok(Response::new(pb::CompleteResponse {}))
    }

    async fn fail(
        &self,
        request: Request<pb::FailRequest>,
    ) -> Result<Response<pb::FailResponse>, Status> {
        let r = request.into_inner();
        if !self
            .store
            .finish(r.trial_id, &r.lease_id, Some(&r.reason))
            .await
            .map_err(Error::from)?
        {
            return Err(Error::LeaseLost(r.trial_id).into());
        }
        tracing::warn!(trial = r.trial_id, reason = r.reason, "trial failed");
        Ok(Response::new(pb::FailResponse {}))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = request.into_inner();
        if !self
            .store
            .release(r.trial_id, &r.lease_id)
            .await
            .map_err(Error::from)?
        {
            return Err(Error::LeaseLost(r.trial_id).into());
        }
        tracing::info!(trial = r.trial_id, "trial released");
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn put_checkpoint(
        &self,
        request: Request<pb::PutCheckpointRequest>,
    ) -> Result<Response<pb::PutCheckpointResponse>, Status> {
        let r = request.into_inner();
        let state = self
            .store
            .put_checkpoint(r.trial_id, &r.lease_id, r.epoch, &r.data)
            .await
            .map_err(Error::from)?;
        held(state, r.trial_id)?;
        Ok(Response::new(pb::PutCheckpointResponse {}))
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        let r = request.into_inner();
        let state = self
            .store
            .renew(r.trial_id, &r.lease_id, self.policy.lease_ms())
            .await
            .map_err(Error::from)?;
        held(state, r.trial_id)?;
        let checkpoint = self
            .store
            .checkpoint(r.trial_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint: checkpoint.map(|(epoch, data)| pb::Checkpoint { epoch, data }),
        }))
    }
}

impl Workers {
    /// Stores one report (or renews on a heartbeat) and says what to do.
    async fn progress(&self, r: &pb::ProgressReport) -> Result<pb::ProgressAck, Error> {
        let state = if r.epoch == 0 {
            self.store
                .renew(r.trial_id, &r.lease_id, self.policy.lease_ms())
                .await?
        } else {
            let metrics: Vec<(String, String, f64)> = r
                .metrics
                .iter()
                .map(|m| (m.split.clone(), m.name.clone(), m.value))
                .collect();
            self.store
                .record_epoch(
                    r.trial_id,
                    &r.lease_id,
                    r.epoch,
                    &metrics,
                    self.policy.lease_ms(),
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
}

#[derive(Debug, Clone)]
pub struct Sweeps {
    pub store: Store,
    /// Turns true when the server shuts down; open streams end then.
    pub stopping: watch::Receiver<bool>,
}

impl Sweeps {
    async fn detail(&self, id: i64) -> Result<pb::SweepDetail, Error> {
        let sweep = self
            .store
            .sweep(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("sweep {id}")))?;
        let trials = self.store.trials(id).await?;
        Ok(pb::SweepDetail {
            sweep: Some(convert::sweep(&sweep)),
            trials: trials.iter().map(convert::trial).collect(),
            yaml: sweep.yaml,
        })
    }
}

#[tonic::async_trait]
impl SweepService for Sweeps {
    #[tracing::instrument(skip_all, fields(file = request.get_ref().file_name))]
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let r = request.into_inner();
        let plan = spec::parse(&r.yaml).map_err(|source| Error::Spec {
            file: r.file_name.clone(),
            source,
        })?;
        let id = self
            .store
            .create_sweep(&r.yaml, &plan)
            .await
            .map_err(Error::from)?;
        tracing::info!(sweep = id, trials = plan.trials.len(), "sweep submitted");
        let sweep = self
            .store
            .sweep(id)
            .await
            .map_err(Error::from)?
            .expect("just stored");
        Ok(Response::new(pb::SubmitResponse {
            sweep: Some(convert::sweep(&sweep)),
        }))
    }

    async fn get_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::SweepDetail>, Status> {
        Ok(Response::new(
            self.detail(request.into_inner().sweep_id).await?,
        ))
    }

    async fn list_sweeps(
        &self,
        _: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        let sweeps = self.store.sweeps().await.map_err(Error::from)?;
        Ok(Response::new(pb::ListSweepsResponse {
            sweeps: sweeps.iter().map(convert::sweep).collect(),
        }))
    }

    async fn cancel_sweep(
        &self,
        request: Request<pb::CancelSweepRequest>,
    ) -> Result<Response<pb::CancelSweepResponse>, Status> {
        let id = request.into_inner().sweep_id;
        if !self.store.cancel_sweep(id).await.map_err(Error::from)? {
            return Err(Error::NotFound(format!("sweep {id}")).into());
        }
        tracing::info!(sweep = id, "sweep cancelled");
        let sweep = self
            .store
            .sweep(id)
            .await
            .map_err(Error::from)?
            .expect("exists");
        Ok(Response::new(pb::CancelSweepResponse {
            sweep: Some(convert::sweep(&sweep)),
        }))
    }

    async fn results(
        &self,
        request: Request<pb::ResultsRequest>,
    ) -> Result<Response<pb::ResultsResponse>, Status> {
        Ok(Response::new(
            results::results(&self.store, request.get_ref()).await?,
        ))
    }

    async fn compare(
        &self,
        request: Request<pb::CompareRequest>,
    ) -> Result<Response<pb::CompareResponse>, Status> {
        Ok(Response::new(
            results::compare(&self.store, request.get_ref()).await?,
        ))
    }

    async fn learning_curves(
        &self,
        request: Request<pb::LearningCurvesRequest>,
    ) -> Result<Response<pb::LearningCurvesResponse>, Status> {
        Ok(Response::new(
            results::learning_curves(&self.store, request.get_ref()).await?,
        ))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let sweep_id = request.into_inner().sweep_id;
        if sweep_id != 0
            && self
                .store
                .sweep(sweep_id)
                .await
                .map_err(Error::from)?
                .is_none()
        {
            return Err(Error::NotFound(format!("sweep {sweep_id}")).into());
        }
        let (tx, rx) = mpsc::channel(64);
        let store = self.store.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            if let Err(status) = watch(store, sweep_id, &tx, stopping).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Polls the database and sends trial changes and newly stored epochs until
/// the client goes away.
async fn watch(
    store: Store,
    sweep_id: i64,
    tx: &mpsc::Sender<Result<pb::WatchEvent, Status>>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), Status> {
    use pb::watch_event::Event;
    // Rows changed in the millisecond of the last poll are read again, so
    // nothing written in that millisecond is missed; what was sent already
    // is skipped.
    let mut since = -1;
    let mut sent: HashMap<i64, (i64, String)> = HashMap::new();
    let mut epochs_seen: HashMap<i64, u32> = HashMap::new();
    loop {
        let changed = store
            .trials_changed_since(sweep_id, since - 1)
            .await
            .map_err(Error::from)?;
        for trial in &changed {
            since = since.max(trial.updated_ms);
            let state = (trial.updated_ms, trial.status.clone());
            if sent.get(&trial.id) == Some(&state)
                && epochs_seen.get(&trial.id) == Some(&trial.epochs_done)
            {
                continue;
            }
            sent.insert(trial.id, state);
            let seen = epochs_seen.entry(trial.id).or_insert(0);
            if trial.epochs_done > *seen {
                let metrics = store
                    .metrics_after(trial.id, *seen)
                    .await
                    .map_err(Error::from)?;
                for epoch in *seen + 1..=trial.epochs_done {
                    let event = pb::EpochDone {
                        sweep_id: trial.sweep_id,
                        trial_id: trial.id,
                        epoch,
                        metrics: metrics
                            .iter()
                            .filter(|m| m.epoch == epoch)
                            .map(convert::metric)
                            .collect(),
                    };
                    if tx
                        .send(Ok(pb::WatchEvent {
                            event: Some(Event::Epoch(event)),
                        }))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                *seen = trial.epochs_done;
            }
            let event = Event::Trial(convert::trial(trial));
            if tx
                .send(Ok(pb::WatchEvent { event: Some(event) }))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return Ok(()),
            _ = stopping.wait_for(|s| *s) => return Ok(()),
        }
    }
}
