//! Calls of every worker run together: whatever requests arrive while one
//! batch is in the database go into the next, so a busy coordinator runs a
//! few large statements instead of thousands of small ones, and an idle one
//! runs each request at once. Epoch reports and leases go this way.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::store::{EpochReport, Leasing, Recorded, Store, StoreError};

/// Requests handled in one batch at most.
const MAX_BATCH: usize = 512;

type Pending<Q, A> = (Q, oneshot::Sender<Result<A, String>>);

/// Hands requests to a batch task and waits for their answers.
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
    /// Starts the task that answers batches with `run` (one answer per
    /// request, in order); it ends when every handle is dropped.
    fn start<F, Fut>(what: &'static str, run: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<A>, StoreError>> + Send,
    {
        let (queue, mut incoming) = mpsc::channel::<Pending<Q, A>>(4 * MAX_BATCH);
        let run = Arc::new(run);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let n = batch.len();
                let (requests, answers): (Vec<Q>, Vec<_>) = batch.into_iter().unzip();
                match run(requests).await {
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
        });
        Self { queue }
    }

    /// Runs one request with whatever others are waiting.
    async fn call(&self, request: Q) -> Result<A, Error> {
        let (answer, answered) = oneshot::channel();
        let gone = || Error::Store(StoreError::Batch("the batch task has stopped".into()));
        self.queue
            .send((request, answer))
            .await
            .map_err(|_| gone())?;
        answered
            .await
            .map_err(|_| gone())?
            .map_err(|e| Error::Store(StoreError::Batch(e)))
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
pub type Leases = Batcher<i64, Leasing>;

impl Leases {
    /// Takes queued trials from `store` for leases of `lease_ms`.
    pub fn leases(store: Store, lease_ms: i64) -> Self {
        Self::start("leases", move |workers| {
            let store = store.clone();
            async move { store.lease_many(&workers, lease_ms).await }
        })
    }

    /// The oldest queued trial for `worker_id`, if any.
    pub async fn lease(&self, worker_id: i64) -> Result<Leasing, Error> {
        self.call(worker_id).await
    }
}
