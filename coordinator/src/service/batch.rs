//! Calls of every worker run together: whatever requests arrive while the
//! batches in flight are in the database go into the next, so a busy
//! coordinator runs a few large statements instead of thousands of small
//! ones, and an idle one runs each request at once. Epoch reports, leases
//! and trials' ends go this way, two batches in flight at a time. Two
//! batches hold requests about one trial only when two callers name it
//! (its old and new holder, or a call sent again): the statements'
//! conditions (the lease held, the trial running) let one of them through.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

use crate::error::Error;
use crate::store::{EpochReport, Finish, LeaseAsk, Leasing, Recorded, Store, StoreError};

/// Requests handled in one batch at most.
const MAX_BATCH: usize = 512;
/// Batches in flight at once.
const LANES: usize = 2;
/// How long a batch waits for more requests after its first.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

type Pending<Q, A> = (Q, Instant, oneshot::Sender<Result<A, String>>);

/// Hands requests to the batch tasks and waits for their answers.
#[derive(Debug)]
pub struct Batcher<Q, A> {
    queue: mpsc::Sender<Pending<Q, A>>,
}

impl<Q, A> Clone for Batcher<Q, A> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// Starts the [`LANES`] tasks that answer batches with `run` (one
    /// answer per request, in order); they end when every handle is dropped.
    fn start<F, Fut>(what: &'static str, run: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<A>, StoreError>> + Send + 'static,
    {
        let (queue, incoming) = mpsc::channel::<Pending<Q, A>>(4 * MAX_BATCH);
        let incoming = Arc::new(Mutex::new(incoming));
        let run = Arc::new(run);
        for _ in 0..LANES {
            tokio::spawn(lane(what, incoming.clone(), run.clone()));
        }
        Self { queue }
    }

    /// Runs one request with whatever others are waiting.
    async fn call(&self, request: Q) -> Result<A, Error> {
        let (answer, answered) = oneshot::channel();
        let gone = || Error::Store(StoreError::Batch("the batch task has stopped".into()));
        self.queue
            .send((request, Instant::now(), answer))
            .await
            .map_err(|_| gone())?;
        answered
            .await
            .map_err(|_| gone())?
            .map_err(|e| Error::Store(StoreError::Batch(e)))
    }
}

/// One batch in flight: takes what is waiting (at most [`MAX_BATCH`]),
/// answers it with `run`, and again, until every handle is dropped.
async fn lane<Q, A, F, Fut>(
    what: &'static str,
    incoming: Arc<Mutex<mpsc::Receiver<Pending<Q, A>>>>,
    run: Arc<F>,
) where
    F: Fn(Vec<Q>) -> Fut,
    Fut: Future<Output = Result<Vec<A>, StoreError>>,
{
    loop {
        let batch = {
            let mut incoming = incoming.lock().await;
            let Some(first) = incoming.recv().await else {
                return;
            };
            // What else arrives within GATHER joins: a few more
            // milliseconds for one, far fewer transactions under load.
            let mut batch = vec![first];
            let until = tokio::time::Instant::now() + GATHER;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(until, incoming.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    _ => break,
                }
            }
            batch
        };
        let n = batch.len();
        let started = Instant::now();
        let mut requests = Vec::with_capacity(n);
        let mut answers = Vec::with_capacity(n);
        for (request, queued, answer) in batch {
            crate::telemetry::batch_wait(what, started - queued);
            requests.push(request);
            answers.push(answer);
        }
        let result = run(requests).await;
        crate::telemetry::batch(what, n, started.elapsed());
        match result {
            Ok(results) => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(Ok(result));
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, requests = n, what, "a batch failed");
                for answer in answers {
                    let _ = answer.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Epoch reports, stored in batches.
pub type Reports = Batcher<EpochReport, Recorded>;

impl Reports {
    /// Writes reports to `store`, renewing leases for `lease_ms`.
    pub fn reports(store: Store, lease_ms: i64) -> Self {
        Self::start("epoch reports", move |batch| {
            let store = store.clone();
            async move { store.record_epochs(&batch, lease_ms).await }
        })
    }

    /// Stores one report.
    pub async fn record(&self, report: EpochReport) -> Result<Recorded, Error> {
        self.call(report).await
    }
}

/// Leases, taken in batches: a request is the id of the worker asking.
pub type Leases = Batcher<LeaseAsk, Leasing>;

impl Leases {
    /// Takes queued trials from `store` for leases of `lease_ms`.
    pub fn leases(store: Store, lease_ms: i64) -> Self {
        Self::start("leases", move |workers| {
            let store = store.clone();
            async move { store.lease_many(&workers, lease_ms).await }
        })
    }

    /// The oldest queued trial for the worker asking (of its pack key
    /// first), if any.
    pub async fn lease(&self, ask: LeaseAsk) -> Result<Leasing, Error> {
        self.call(ask).await
    }
}

/// Trials ended by their holders (completed or failed), in batches.
pub type Finishes = Batcher<Finish, Option<i64>>;

impl Finishes {
    /// Ends trials in `store`.
    pub fn finishes(store: Store) -> Self {
        Self::start("finishes", move |batch| {
            let store = store.clone();
            async move { store.finish_many(&batch).await }
        })
    }

    /// Ends one trial: its sweep, or None when the caller no longer holds
    /// the lease.
    pub async fn finish(&self, finish: Finish) -> Result<Option<i64>, Error> {
        self.call(finish).await
    }
}
