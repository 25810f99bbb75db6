//! Stored rows to proto messages, and the t-test alternative both ways.

use proto::v1::{EpochDone, Metric, Sweep, SweepStatus, Trial, TrialStatus};

use crate::stats;
use crate::store::{MetricRow, SweepRow, TrialRow, status};

/// One message per epoch of `epochs` of a trial, each with the trial's
/// stored metric rows of that epoch (none for an epoch stored without
/// metrics).
pub fn epochs_done(
    trial: &TrialRow,
    epochs: std::ops::RangeInclusive<u32>,
    rows: &[MetricRow],
) -> Vec<EpochDone> {
    let mut by_epoch: std::collections::HashMap<u32, Vec<Metric>> = Default::default();
    for row in rows {
        by_epoch
            .entry(row.epoch)
            .or_default()
            .push(row.value.into());
    }
    epochs
        .map(|epoch| EpochDone {
            sweep_id: trial.sweep_id,
            trial_id: trial.id,
            epoch,
            metrics: by_epoch.remove(&epoch).unwrap_or_default(),
        })
        .collect()
}

/// A stored status as the proto enum.
pub fn trial_status(s: &str) -> TrialStatus {
    match s {
        status::QUEUED => TrialStatus::Queued,
        status::RUNNING => TrialStatus::Running,
        status::COMPLETED => TrialStatus::Completed,
        status::FAILED => TrialStatus::Failed,
        status::CANCELLED => TrialStatus::Cancelled,
        status::STOPPED => TrialStatus::Stopped,
        _ => TrialStatus::Unspecified,
    }
}

/// A stored trial as the proto message.
pub fn trial(t: &TrialRow) -> Trial {
    Trial {
        id: t.id,
        sweep_id: t.sweep_id,
        config: Some(t.config.clone()),
        config_key: t.config_key.clone(),
        repeat: t.repeat,
        status: trial_status(&t.status).into(),
        attempts: t.attempts,
        epochs_done: t.epochs_done,
        error: t.error.clone(),
        worker: t.worker.clone(),
        preemptions: t.preemptions,
        stop_epoch: t.stop_epoch,
        stop_reason: t.stop_reason.clone(),
        proposal: t.proposal,
        proposed_by: t.proposed_by.clone(),
    }
}

/// A stored sweep with its counts as the proto message, its status derived.
pub fn sweep(s: &SweepRow) -> Sweep {
    let c = s.counts;
    let status = if s.cancelled {
        SweepStatus::Cancelled
    } else if s.is_done() {
        SweepStatus::Done
    } else {
        SweepStatus::Active
    };
    Sweep {
        id: s.id,
        name: s.name.clone(),
        description: s.description.clone(),
        status: status.into(),
        metric: s.objective.metric.name().to_string(),
        metric_split: s.objective.split.name().to_string(),
        maximize: s.objective.maximize,
        trials: c.total(),
        queued: c.queued,
        running: c.running,
        completed: c.completed,
        failed: c.failed,
        cancelled: c.cancelled,
        created_unix_ms: s.created_ms,
        stopped: c.stopped,
        method: s.method.name().to_string(),
        budget: s.budget,
        proposed: s.proposed,
        early_stopping: s.early_stopping.clone(),
        stop_epochs: s.stop_epochs.clone(),
        metric_precision: s.precision.name().to_string(),
    }
}

impl From<stats::Alternative> for proto::v1::Alternative {
    fn from(a: stats::Alternative) -> Self {
        match a {
            stats::Alternative::Less => Self::Less,
            stats::Alternative::Greater => Self::Greater,
            stats::Alternative::TwoSided => Self::TwoSided,
        }
    }
}

/// The alternative of a request; unset means two-sided.
pub fn alternative(value: i32) -> Option<stats::Alternative> {
    use proto::v1::Alternative as Pb;
    match Pb::try_from(value).ok()? {
        Pb::Less => Some(stats::Alternative::Less),
        Pb::Greater => Some(stats::Alternative::Greater),
        Pb::TwoSided | Pb::Unspecified => Some(stats::Alternative::TwoSided),
    }
}
