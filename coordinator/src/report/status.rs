//! Sweeps and their trials, as `coordinator status` prints them.

use std::fmt::Write as _;

use proto::v1::{self as pb, SweepStatus, TrialStatus};
use serde_json::{Value, json};

use super::Format;

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
        TrialStatus::Unspecified => "?",
    }
}

/// One sweep as JSON.
pub fn sweep_json(s: &pb::Sweep) -> Value {
    json!({
        "id": s.id, "name": s.name, "description": s.description, "status": sweep_status(s),
        "metric": s.metric, "metric_split": s.metric_split, "maximize": s.maximize,
        "trials": s.trials, "queued": s.queued, "running": s.running, "completed": s.completed,
        "failed": s.failed, "cancelled": s.cancelled, "created_unix_ms": s.created_unix_ms,
    })
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
        "{:>4}  {:<24} {:<9} {:>6} {:>6} {:>7} {:>9} {:>6} {:>9}\n",
        "id", "name", "status", "trials", "queued", "running", "completed", "failed", "cancelled"
    );
    for s in sweeps {
        let _ = writeln!(
            out,
            "{:>4}  {:<24} {:<9} {:>6} {:>6} {:>7} {:>9} {:>6} {:>9}",
            s.id,
            s.name,
            sweep_status(s),
            s.trials,
            s.queued,
            s.running,
            s.completed,
            s.failed,
            s.cancelled
        );
    }
    out
}

/// One sweep and a line per trial (status, epochs, attempts, worker,
/// configuration and any error), or JSON.
pub fn detail(d: &pb::SweepDetail, format: Format) -> String {
    if format == Format::Json {
        let trials: Vec<_> = d
            .trials
            .iter()
            .map(|t| {
                json!({
                    "id": t.id, "config": t.config_key, "repeat": t.repeat,
                    "seed": t.config.as_ref().map(|c| c.seed), "status": trial_status(t),
                    "attempts": t.attempts, "preemptions": t.preemptions,
                    "epochs_done": t.epochs_done,
                    "epochs": t.config.as_ref().map(|c| c.epochs), "worker": t.worker,
                    "error": t.error,
                })
            })
            .collect();
        return json!({ "sweep": d.sweep.as_ref().map(sweep_json), "trials": trials }).to_string();
    }
    let mut out = String::new();
    if let Some(s) = &d.sweep {
        out.push_str(&sweeps(std::slice::from_ref(s), format));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<10} {:>6} {:>8} {:>8}  {:<12} configuration",
        "trial", "status", "repeat", "epochs", "attempts", "worker"
    );
    for t in &d.trials {
        let epochs = t.config.as_ref().map_or(0, |c| c.epochs);
        let _ = writeln!(
            out,
            "{:>6}  {:<10} {:>6} {:>8} {:>8}  {:<12} {}",
            t.id,
            trial_status(t),
            t.repeat,
            format!("{}/{}", t.epochs_done, epochs),
            t.attempts,
            t.worker,
            t.config_key
        );
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
