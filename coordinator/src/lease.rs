//! The lease rule, in one place.
//!
//! A worker takes a queued trial with a lease that lasts [`Policy::lease`].
//! Every progress report (a heartbeat included) renews it. A lease that
//! runs out sends its trial back to the queue, counting the attempt; once a
//! trial has used [`Policy::max_attempts`] leases it fails with the reason.
//! A trial handed back on purpose (a worker shutting down) is queued again
//! without counting the attempt. Whoever no longer holds a trial's lease
//! has every report, checkpoint and completion refused.

use std::time::Duration;

use crate::error::Error;
use crate::service::Leases;
use crate::store::{LeaseAsk, Leasing, Store, StoreError};

/// Lease and retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long a lease lasts without a report.
    pub lease: Duration,
    /// Leases a trial may use before it fails.
    pub max_attempts: u32,
}

/// Seconds a lease lasts without a report unless told otherwise.
pub const DEFAULT_LEASE_SECONDS: u64 = 60;
/// Leases a trial may use unless told otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

impl Default for Policy {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(DEFAULT_LEASE_SECONDS),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

impl Policy {
    /// The lease in milliseconds, as the store keeps expiry times.
    pub fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }
}

/// The longest a Lease call waits for work.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting Lease call looks at the queue unwoken: a safety net
/// for a lost notification (waiters are woken when trials are queued, see
/// [`Store::queued`]).
const POLL: Duration = Duration::from_secs(2);

/// Leases the oldest queued trial (of its pack key first) to the worker
/// asking (through `leases`, which serves many callers at once), waiting up
/// to `wait` (at most [`MAX_WAIT`]) for one to be queued.
pub async fn wait_for_trial(
    store: &Store,
    leases: &Leases,
    ask: LeaseAsk,
    wait: Duration,
) -> Result<Leasing, Error> {
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    loop {
        // Registered before looking, so that a trial queued in between
        // still wakes this call.
        let queued = store.queued().notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        match leases.lease(ask.clone()).await? {
            Leasing::Empty => {}
            answer => return Ok(answer),
        }
        tokio::select! {
            _ = queued => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(Leasing::Empty),
        }
    }
}

async fn top_up_after(store: &Store, trial_id: i64) -> Result<(), StoreError> {
    if let Some(trial) = store.trial(trial_id).await? {
        crate::search::top_up(store, trial.sweep_id).await?;
    }
    Ok(())
}

/// Every quarter lease, returns expired leases to the queue (or fails their
/// trials once they used every attempt). Runs until aborted.
pub async fn reap(store: Store, policy: Policy) {
    let period = (policy.lease / 4).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        match store.reap_expired(policy.max_attempts).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(?ids, "expired leases reaped");
                // A trial failed for good may make room for a proposal.
                for id in ids {
                    if let Err(e) = top_up_after(&store, id).await {
                        tracing::error!(error = ?e, trial = id, "proposing after a reaped lease failed");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = ?e, "reaper failed; retrying"),
        }
    }
}
