//! The user side: submit a sweep file, read and cancel sweeps, watch them
//! as they run, and the results by configuration.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use proto::v1::sweep_service_server::SweepService;
use proto::v1::{self as pb};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::handle;
use crate::auth::{Gate, Role};
use crate::error::Error;
use crate::limits;
use crate::store::{Store, SweepRow, TrialRow};
use crate::{convert, results, search, spec};

/// How often a watch looks at the database.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// The user-facing service.
#[derive(Debug, Clone)]
pub struct Sweeps {
    /// Where sweeps, trials and metrics live.
    pub store: Store,
    /// Turns true when the server shuts down; open streams end then.
    pub stopping: watch::Receiver<bool>,
    /// Admits calls by their token.
    pub gate: Gate,
}

async fn sweep(s: &Sweeps, id: i64) -> Result<SweepRow, Error> {
    stored_sweep(&s.store, id).await
}

/// A stored sweep, or NOT_FOUND.
pub(crate) async fn stored_sweep(store: &Store, id: i64) -> Result<SweepRow, Error> {
    store
        .sweep(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("sweep {id}")))
}

async fn submit(s: &Sweeps, r: pb::SubmitRequest) -> Result<pb::SubmitResponse, Error> {
    limits::text("file_name", &r.file_name, limits::MAX_NAME_CHARS)?;
    let plan = spec::parse(&r.yaml).map_err(|source| Error::Spec {
        file: r.file_name.clone(),
        source,
    })?;
    let id = search::submit(&s.store, &r.yaml, &plan).await?;
    tracing::info!(
        sweep = id,
        file = r.file_name,
        trials = plan.trials.len(),
        "sweep submitted"
    );
    Ok(pb::SubmitResponse {
        sweep: Some(convert::sweep(&sweep(s, id).await?)),
    })
}

/// A sweep with its trials and file (GetSweep).
async fn get_sweep(store: &Store, sweep_id: i64) -> Result<pb::SweepDetail, Error> {
    let sweep = stored_sweep(store, sweep_id).await?;
    let trials = store.trials(sweep.id).await?;
    Ok(detail(sweep, &trials))
}

/// A sweep with `trials`, as GetSweep answers.
pub(crate) fn detail(sweep: SweepRow, trials: &[TrialRow]) -> pb::SweepDetail {
    pb::SweepDetail {
        sweep: Some(convert::sweep(&sweep)),
        trials: trials.iter().map(convert::trial).collect(),
        yaml: sweep.yaml,
    }
}

/// Every sweep (ListSweeps; the dashboard's list).
pub(crate) async fn list_sweeps(store: &Store) -> Result<pb::ListSweepsResponse, Error> {
    let sweeps = store.sweeps().await?;
    Ok(pb::ListSweepsResponse {
        sweeps: sweeps.iter().map(convert::sweep).collect(),
    })
}

async fn cancel_sweep(
    s: &Sweeps,
    r: pb::CancelSweepRequest,
) -> Result<pb::CancelSweepResponse, Error> {
    let id = r.sweep_id;
    if !s.store.cancel_sweep(id).await? {
        return Err(Error::NotFound(format!("sweep {id}")));
    }
    tracing::info!(sweep = id, "sweep cancelled");
    Ok(pb::CancelSweepResponse {
        sweep: Some(convert::sweep(&sweep(s, id).await?)),
    })
}

type Histories = dyn Stream<Item = Result<pb::TrialHistory, Status>> + Send;

/// Streams each trial of a sweep with its stored epochs, one trial at a
/// time (a sweep's whole history need not fit in memory or one message).
async fn trial_histories(
    s: &Sweeps,
    r: pb::TrialHistoriesRequest,
) -> Result<Pin<Box<Histories>>, Error> {
    let sweep = sweep(s, r.sweep_id).await?;
    let store = s.store.clone();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let send = async {
            let trials = store.trials(sweep.id).await?;
            let labels = results::labels_by_key(&trials);
            for trial in &trials {
                let rows = store.metrics_after(trial.id, 0).await?;
                let epochs = convert::epochs_done(trial, 1..=trial.epochs_done, &rows);
                let history = pb::TrialHistory {
                    trial: Some(convert::trial(trial)),
                    label: labels[&trial.config_key].clone(),
                    epochs,
                };
                if tx.send(Ok(history)).await.is_err() {
                    break;
                }
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = send.await {
            let _ = tx.send(Err(Status::from(e))).await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

type WatchEvents = dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send;

async fn watch(s: &Sweeps, r: pb::WatchRequest) -> Result<Pin<Box<WatchEvents>>, Error> {
    let sweep_id = r.sweep_id;
    if sweep_id != 0 {
        sweep(s, sweep_id).await?;
    }
    let (tx, rx) = mpsc::channel(64);
    let store = s.store.clone();
    let stopping = s.stopping.clone();
    tokio::spawn(async move {
        if let Err(e) = send_changes(store, sweep_id, &tx, stopping).await {
            let _ = tx.send(Err(Status::from(e))).await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// A sweep's trials as they change, found by polling: each look gives the
/// trials changed since the last one (status, epochs or anything else),
/// each once per state. Rows changed in the millisecond of the last look
/// are read again, so nothing written in that millisecond is missed.
#[derive(Debug)]
pub(crate) struct TrialChanges {
    sweep_id: i64,
    since: i64,
    sent: HashMap<i64, (i64, u32, String)>,
}

impl TrialChanges {
    /// Changes made after `since` (milliseconds; -1 for every trial first).
    pub(crate) fn new(sweep_id: i64, since: i64) -> Self {
        Self {
            sweep_id,
            since,
            sent: HashMap::new(),
        }
    }

    /// The trials changed since the last look.
    pub(crate) async fn next(&mut self, store: &Store) -> Result<Vec<TrialRow>, Error> {
        let changed = store
            .trials_changed_since(self.sweep_id, self.since - 1)
            .await?;
        let mut out = Vec::new();
        for trial in changed {
            self.since = self.since.max(trial.updated_ms);
            let state = (trial.updated_ms, trial.epochs_done, trial.status.clone());
            if self.sent.get(&trial.id) != Some(&state) {
                self.sent.insert(trial.id, state);
                out.push(trial);
            }
        }
        Ok(out)
    }
}

/// Polls the database and sends trial changes and newly stored epochs until
/// the client goes away.
async fn send_changes(
    store: Store,
    sweep_id: i64,
    tx: &mpsc::Sender<Result<pb::WatchEvent, Status>>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), Error> {
    use pb::watch_event::Event;
    let mut changes = TrialChanges::new(sweep_id, -1);
    let mut epochs_seen: HashMap<i64, u32> = HashMap::new();
    loop {
        for trial in changes.next(&store).await? {
            let seen = epochs_seen.entry(trial.id).or_insert(0);
            if trial.epochs_done > *seen {
                let rows = store.metrics_after(trial.id, *seen).await?;
                for event in convert::epochs_done(&trial, *seen + 1..=trial.epochs_done, &rows) {
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
            let event = Event::Trial(Box::new(convert::trial(&trial)));
            if tx
                .send(Ok(pb::WatchEvent { event: Some(event) }))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_POLL) => {}
            _ = tx.closed() => return Ok(()),
            _ = stopping.wait_for(|s| *s) => return Ok(()),
        }
    }
}

#[tonic::async_trait]
impl SweepService for Sweeps {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        handle(&self.gate, "Submit", Role::User, request, |r| {
            submit(self, r)
        })
        .await
    }

    async fn get_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::SweepDetail>, Status> {
        handle(&self.gate, "GetSweep", Role::Reader, request, |r| {
            get_sweep(&self.store, r.sweep_id)
        })
        .await
    }

    async fn list_sweeps(
        &self,
        request: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        handle(&self.gate, "ListSweeps", Role::Reader, request, |_| {
            list_sweeps(&self.store)
        })
        .await
    }

    async fn cancel_sweep(
        &self,
        request: Request<pb::CancelSweepRequest>,
    ) -> Result<Response<pb::CancelSweepResponse>, Status> {
        handle(&self.gate, "CancelSweep", Role::User, request, |r| {
            cancel_sweep(self, r)
        })
        .await
    }

    type WatchStream = Pin<Box<WatchEvents>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        handle(&self.gate, "Watch", Role::Reader, request, |r| {
            watch(self, r)
        })
        .await
    }

    type TrialHistoriesStream = Pin<Box<Histories>>;

    async fn trial_histories(
        &self,
        request: Request<pb::TrialHistoriesRequest>,
    ) -> Result<Response<Self::TrialHistoriesStream>, Status> {
        handle(&self.gate, "TrialHistories", Role::Reader, request, |r| {
            trial_histories(self, r)
        })
        .await
    }

    async fn predictions(
        &self,
        request: Request<pb::PredictionsRequest>,
    ) -> Result<Response<pb::PredictionsResponse>, Status> {
        handle(
            &self.gate,
            "Predictions",
            Role::Reader,
            request,
            |r| async move { results::predictions(&self.store, &r).await },
        )
        .await
    }

    async fn results(
        &self,
        request: Request<pb::ResultsRequest>,
    ) -> Result<Response<pb::ResultsResponse>, Status> {
        handle(
            &self.gate,
            "Results",
            Role::Reader,
            request,
            |r| async move { results::results(&self.store, &r).await },
        )
        .await
    }

    async fn compare(
        &self,
        request: Request<pb::CompareRequest>,
    ) -> Result<Response<pb::CompareResponse>, Status> {
        handle(
            &self.gate,
            "Compare",
            Role::Reader,
            request,
            |r| async move { results::compare(&self.store, &r).await },
        )
        .await
    }

    async fn learning_curves(
        &self,
        request: Request<pb::LearningCurvesRequest>,
    ) -> Result<Response<pb::LearningCurvesResponse>, Status> {
        handle(
            &self.gate,
            "LearningCurves",
            Role::Reader,
            request,
            |r| async move { results::learning_curves(&self.store, &r).await },
        )
        .await
    }
}
