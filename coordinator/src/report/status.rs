//! Sweeps and their trials, as `coordinator status` prints them.

use std::fmt::Write as _;

use proto::v1::{self as pb, SweepStatus, TrialStatus};
use serde_json::{Value, json};

use super::Format;
use crate::spec::Precision;

fn sweep_status(s: &pb::Sweep) -> &'static str {
    match SweepStatus::try_from(s.status).unwrap_or_default() {
        SweepStatus::Active => "active",
        SweepStatus::Done => "done",
        SweepStatus::Cancelled => "cancelled",
        SweepStatus::Unspecified => "?",
    }
}

fn trial_status(t: &pb::Trial) -> &'static str {
    match TrialStatus::try_from(t.status).unwrap_or_default() {
        TrialStatus::Queued => "queued",
        TrialStatus::Running => "running",
        TrialStatus::Completed => "completed",
        TrialStatus::Failed => "failed",
        TrialStatus::Cancelled => "cancelled",
        TrialStatus::Stopped => "stopped",
        TrialStatus::Unspecified => "?",
    }
}

/// One sweep as JSON.
pub fn sweep_json(s: &pb::Sweep) -> Value {
    json!({
        "id": s.id, "name": s.name, "description": s.description, "status": sweep_status(s),
        "metric": s.metric, "metric_split": s.metric_split, "maximize": s.maximize,
        "trials": s.trials, "queued": s.queued, "running": s.running, "completed": s.completed,
        "failed": s.failed, "cancelled": s.cancelled, "stopped": s.stopped,
        "created_unix_ms": s.created_unix_ms, "method": s.method, "budget": s.budget,
        "proposed": s.proposed,
        "early_stopping": s.early_stopping.as_ref().map(early_stopping_words),
        "stop_epochs": s.stop_epochs, "metric_precision": s.metric_precision,
    })
}

/// A sweep's early-stopping rule in words.
pub fn early_stopping_words(e: &pb::EarlyStopping) -> String {
    let method = pb::EarlyStoppingMethod::try_from(e.method).unwrap_or_default();
    let rungs = if e.rungs.is_empty() {
        match method {
            pb::EarlyStoppingMethod::Asha => {
                format!("rungs at {} x {}^k", e.grace, e.reduction_factor)
            }
            _ => format!("rungs every {} epochs from {}", e.interval, e.grace),
        }
    } else {
        let list: Vec<String> = e.rungs.iter().map(u32::to_string).collect();
        format!("rungs at epochs {}", list.join(", "))
    };
    let repeats = match e.min_repeats {
        0 => "all repeats".to_string(),
        n => format!("{n} repeats"),
    };
    match method {
        pb::EarlyStoppingMethod::Asha => format!(
            "asha (reduction factor {}), {rungs}, judged on {repeats}",
            e.reduction_factor
        ),
        _ => format!(
            "median rule (after {} other configurations), {rungs}, judged on {repeats}",
            e.min_configurations
        ),
    }
}

/// Every sweep: a line each with its trial counts, or a JSON array.
pub fn sweeps(sweeps: &[pb::Sweep], format: Format) -> String {
    if format == Format::Json {
        return Value::Array(sweeps.iter().map(sweep_json).collect()).to_string();
    }
    if sweeps.is_empty() {
        return "no sweeps yet; submit one with `coordinator submit FILE`".to_string();
    }
    let mut out = format!(
        "{:>4}  {:<24} {:<9} {:>6} {:>6} {:>7} {:>9} {:>7} {:>6} {:>9}\n",
        "id",
        "name",
        "status",
        "trials",
        "queued",
        "running",
        "completed",
        "stopped",
        "failed",
        "cancelled"
    );
    for s in sweeps {
        let _ = writeln!(
            out,
            "{:>4}  {:<24} {:<9} {:>6} {:>6} {:>7} {:>9} {:>7} {:>6} {:>9}",
            s.id,
            s.name,
            sweep_status(s),
            s.trials,
            s.queued,
            s.running,
            s.completed,
            s.stopped,
            s.failed,
            s.cancelled
        );
    }
    out
}

/// One trial as JSON.
pub fn trial_json(t: &pb::Trial) -> Value {
    json!({
        "id": t.id, "config": t.config_key, "repeat": t.repeat,
        "seed": t.config.as_ref().map(|c| c.seed), "status": trial_status(t),
        "attempts": t.attempts, "preemptions": t.preemptions,
        "epochs_done": t.epochs_done,
        "epochs": t.config.as_ref().map(|c| c.epochs), "worker": t.worker,
        "error": t.error, "stop_epoch": t.stop_epoch, "stop_reason": t.stop_reason,
        "proposal": t.proposal, "proposed_by": t.proposed_by,
    })
}

/// One sweep and its trials as JSON.
pub fn detail_json(d: &pb::SweepDetail) -> Value {
    let trials: Vec<_> = d.trials.iter().map(trial_json).collect();
    json!({ "sweep": d.sweep.as_ref().map(sweep_json), "trials": trials })
}

/// One sweep and a line per trial (status, epochs, attempts, worker,
/// configuration and any error), or JSON.
pub fn detail(d: &pb::SweepDetail, format: Format) -> String {
    if format == Format::Json {
        return detail_json(d).to_string();
    }
    let mut out = String::new();
    if let Some(s) = &d.sweep {
        out.push_str(&sweeps(std::slice::from_ref(s), format));
        if s.method == "bayes" {
            let _ = writeln!(
                out,
                "method bayes: {} of {} configurations proposed (order and proposer per trial below)",
                s.proposed, s.budget
            );
        }
        if let Some(e) = &s.early_stopping {
            let _ = writeln!(out, "early stopping: {}", early_stopping_words(e));
        }
        if !s.stop_epochs.is_empty() {
            let list: Vec<String> = s.stop_epochs.iter().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "stopping epochs: {} (the candidates of `results --stop-epochs`)",
                list.join(", ")
            );
        }
        if s.metric_precision == Precision::Float32.name() {
            let _ = writeln!(
                out,
                "metric precision: float32 (each value stored rounded to the nearest 32-bit float)"
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<10} {:>6} {:>8} {:>8}  {:<12} {:<12} configuration",
        "trial", "status", "repeat", "epochs", "attempts", "worker", "proposed"
    );
    for t in &d.trials {
        let epochs = t.config.as_ref().map_or(0, |c| c.epochs);
        let _ = writeln!(
            out,
            "{:>6}  {:<10} {:>6} {:>8} {:>8}  {:<12} {:<12} {}",
            t.id,
            trial_status(t),
            t.repeat,
            format!("{}/{}", t.epochs_done, epochs),
            t.attempts,
            t.worker,
            format!("#{} {}", t.proposal, t.proposed_by),
            t.config_key
        );
        if !t.stop_reason.is_empty() {
            let _ = writeln!(out, "        stopped early: {}", t.stop_reason);
        }
        if t.preemptions > 0 {
            let _ = writeln!(
                out,
                "        preempted {} times (no attempt counted)",
                t.preemptions
            );
        }
        if !t.error.is_empty() {
            let _ = writeln!(out, "        error: {}", t.error);
        }
    }
    out
}
