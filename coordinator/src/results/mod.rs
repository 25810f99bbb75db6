//! Results by configuration, computed from the stored metrics: summaries
//! of every metric per configuration, Welch's t-tests between groups of
//! configurations, learning curves and the latest predictions. The gRPC API, the CLI and
//! `coordinator run` show these same numbers.
//!
//! A configuration is a trial's parameters without its seed: the trials
//! that share a `config_key` are its repeats.

mod compare;
mod configurations;
mod curves;
mod epochs;
mod predictions;

use proto::metrics::{Metric, Split};
use proto::v1 as pb;

pub use compare::{compare, configuration_groups};
pub use configurations::{labels, labels_by_key};
pub use curves::learning_curves;
pub use predictions::predictions;

use crate::convert;
use crate::error::Error;
use crate::packed::{self, Packed};
use crate::stats;
use crate::store::{Store, SweepRow};

use epochs::{Chosen, Selection, choose, selection};

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// The request's split; empty means test.
pub(crate) fn split_or_default(split: &str) -> Result<Split, Error> {
    match split {
        "" => Ok(Split::Test),
        other => Split::parse(other).map_err(invalid),
    }
}

fn summary(values: &[f64]) -> pb::Summary {
    let (s, nan) = stats::summarize_present(values);
    pb::Summary {
        n: s.n as u32,
        nan: nan as u32,
        mean: s.mean,
        std: s.std,
    }
}

async fn sweep(store: &Store, id: i64) -> Result<SweepRow, Error> {
    store
        .sweep(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("sweep {id}")))
}

/// Every metric of `split` per configuration at the selected epoch.
pub async fn results(store: &Store, r: &pb::ResultsRequest) -> Result<pb::ResultsResponse, Error> {
    let sweep = sweep(store, r.sweep_id).await?;
    let split = split_or_default(&r.split)?;
    let selection = selection(&sweep, split, r.epoch.as_ref())?;
    let (chosen, index) = choose(store, &sweep, &selection).await?;
    // The split's metrics, each with its slot in the stored bytes.
    let mut vocabulary: Vec<(Metric, usize)> = Metric::of_split(split)
        .map(|metric| (metric, packed::slot_of(split, metric)))
        .collect();
    vocabulary.sort_unstable();
    let configurations = chosen
        .into_iter()
        .map(
            |Chosen {
                 configuration: c,
                 epoch,
                 candidates,
             }| {
                // The trials with some value of the split at the epoch.
                let present: Vec<(i64, &Packed)> = c
                    .trials
                    .iter()
                    .filter_map(|t| Some((t.id, index.get(&(t.id, epoch))?)))
                    .filter(|(_, p)| vocabulary.iter().any(|&(_, slot)| p.get(slot).is_some()))
                    .collect();
                // Every metric of the split some trial reported.
                let metrics = vocabulary
                    .iter()
                    .filter_map(|&(metric, slot)| {
                        let (trial_ids, values): (Vec<i64>, Vec<f64>) = present
                            .iter()
                            .filter_map(|(id, p)| Some((*id, p.get(slot)?)))
                            .unzip();
                        if values.is_empty() {
                            return None;
                        }
                        let summary = Some(summary(&values));
                        let (values, trial_ids) = if r.summaries_only {
                            (Vec::new(), Vec::new())
                        } else {
                            (values, trial_ids)
                        };
                        Some(pb::MetricSummary {
                            summary,
                            name: metric.name().to_string(),
                            values,
                            trial_ids,
                        })
                    })
                    .collect();
                pb::ConfigurationResult {
                    reported: present.len() as u32,
                    stopped: c.stopped(),
                    proposal: c.trials[0].proposal,
                    proposed_by: c.trials[0].proposed_by.clone(),
                    config_key: c.key.clone(),
                    label: c.label.clone(),
                    trials: c.trials.len() as u32,
                    epoch,
                    trial_ids: if r.summaries_only {
                        Vec::new()
                    } else {
                        present.iter().map(|(id, _)| *id).collect()
                    },
                    metrics,
                    candidates,
                }
            },
        )
        .collect();
    let (stop_by, stop_maximize) = match &selection {
        Selection::Stop { by, .. } => (format!("{} {}", by.split, by.metric), by.maximize),
        _ => (String::new(), false),
    };
    Ok(pb::ResultsResponse {
        sweep: Some(convert::sweep(&sweep)),
        split: split.name().to_string(),
        stop_by,
        stop_maximize,
        configurations,
    })
}
