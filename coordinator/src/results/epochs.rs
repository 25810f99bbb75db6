//! Which epoch of each configuration's trials results read: each trial's
//! last, one fixed epoch, or per configuration the best of candidate
//! stopping epochs; and the stored values read there.

use std::collections::{BTreeMap, HashMap};

use proto::metrics::{Metric, Split};
use proto::v1 as pb;

use crate::error::Error;
use crate::packed::{self, Packed};
use crate::spec::Objective;
use crate::store::{EpochMetrics, Store, SweepRow, TrialRow};

use super::configurations::{Configuration, configurations};
use super::{invalid, summary};

/// Which epoch of each configuration's trials is read.
#[derive(Debug)]
pub(super) enum Selection {
    Last,
    At(u32),
    Stop { candidates: Vec<u32>, by: Objective },
}

/// A configuration with the epoch its values are read at.
#[derive(Debug)]
pub(super) struct Chosen {
    pub configuration: Configuration,
    /// 0 where nothing is there to read.
    pub epoch: u32,
    /// With StopEpochs: the `by` metric at each candidate some trial reached.
    pub candidates: Vec<pb::CandidateScore>,
}

/// Every metric by (trial, epoch).
pub(super) type Index = HashMap<(i64, u32), Packed>;

fn index(rows: Vec<EpochMetrics>) -> Index {
    rows.into_iter()
        .map(|r| ((r.trial_id, r.epoch), r.metrics))
        .collect()
}

/// One value per trial of the configuration that has the metric of `slot`
/// (see [`packed::slots`]) at `epoch`.
pub(super) fn values_at<'a>(
    configuration: &'a Configuration,
    index: &'a Index,
    epoch: u32,
    slot: usize,
) -> impl Iterator<Item = (&'a TrialRow, f64)> + 'a {
    configuration
        .trials
        .iter()
        .filter_map(move |t| Some((t, index.get(&(t.id, epoch))?.get(slot)?)))
}

/// The request's epoch selection, checked; stopping epochs default to the
/// sweep's declared ones (its `stop_epochs`), and their `by` to the sweep's
/// own objective.
pub(super) fn selection(
    sweep: &SweepRow,
    split: Split,
    selection: Option<&pb::EpochSelection>,
) -> Result<Selection, Error> {
    use pb::epoch_selection::Choice;
    Ok(match selection.and_then(|s| s.choice.as_ref()) {
        None => Selection::Last,
        Some(Choice::Epoch(0)) => return Err(invalid("epochs count from 1")),
        Some(Choice::Epoch(e)) => Selection::At(*e),
        Some(Choice::StopEpochs(stop)) => {
            let mut candidates = if stop.candidates.is_empty() {
                if sweep.stop_epochs.is_empty() {
                    return Err(invalid(format!(
                        "sweep {} declares no stop_epochs: name the candidate epochs",
                        sweep.id
                    )));
                }
                sweep.stop_epochs.clone()
            } else {
                stop.candidates.clone()
            };
            candidates.sort_unstable();
            candidates.dedup();
            if candidates[0] == 0 {
                return Err(invalid("stopping epochs are counted from 1"));
            }
            let by = if stop.by.is_empty() {
                sweep.objective
            } else {
                let metric = Metric::parse(&stop.by, split).map_err(invalid)?;
                Objective {
                    metric,
                    split,
                    maximize: metric.maximize(),
                }
            };
            Selection::Stop { candidates, by }
        }
    })
}

/// The sweep's configurations, each with the epoch the selection reads,
/// and every metric of their trials there.
///
/// Choosing among stopping epochs reads every metric at every candidate,
/// so the chosen epochs are not read again.
pub(super) async fn choose(
    store: &Store,
    sweep: &SweepRow,
    selection: &Selection,
) -> Result<(Vec<Chosen>, Index), Error> {
    let Selection::Stop { candidates, by } = selection else {
        let configurations = configurations(store.trials(sweep.id).await?);
        let epoch = |c: &Configuration| match selection {
            Selection::At(e) => *e,
            _ => c.epochs,
        };
        let chosen: Vec<Chosen> = configurations
            .into_iter()
            .map(|configuration| Chosen {
                epoch: epoch(&configuration),
                configuration,
                candidates: Vec::new(),
            })
            .collect();
        let index = chosen_values(store, sweep, &chosen).await?;
        return Ok((chosen, index));
    };
    // Read side by side: the trials are not needed to read the values.
    let (trials, scored) = tokio::try_join!(
        store.trials(sweep.id),
        store.epoch_metrics(sweep, candidates, None)
    )?;
    let configurations = configurations(trials);
    let index = index(scored);
    let slot = packed::slot_of(by.split, by.metric);
    let chosen: Vec<Chosen> = configurations
        .into_iter()
        .map(|configuration| {
            let scores: Vec<pb::CandidateScore> = candidates
                .iter()
                .filter_map(|&epoch| {
                    let values: Vec<f64> = values_at(&configuration, &index, epoch, slot)
                        .map(|(_, v)| v)
                        .collect();
                    (!values.is_empty()).then(|| pb::CandidateScore {
                        epoch,
                        by: Some(summary(&values)),
                    })
                })
                .collect();
            Chosen {
                configuration,
                epoch: best(&scores, by.maximize),
                candidates: scores,
            }
        })
        .collect();
    Ok((chosen, index))
}

/// The best candidate by mean (NaN means last; ties to the earlier epoch);
/// 0 when there is none.
fn best(candidates: &[pb::CandidateScore], maximize: bool) -> u32 {
    let score = |c: &pb::CandidateScore| {
        let mean = c.by.as_ref().map_or(f64::NAN, |s| s.mean);
        if mean.is_nan() {
            f64::NEG_INFINITY
        } else if maximize {
            mean
        } else {
            -mean
        }
    };
    candidates
        .iter()
        .fold(None::<&pb::CandidateScore>, |best, c| match best {
            Some(b) if score(b) >= score(c) => Some(b),
            _ => Some(c),
        })
        .map_or(0, |c| c.epoch)
}

/// Every metric of every configuration at its chosen epoch: one query per
/// distinct epoch, naming the configurations only when some chose another
/// epoch.
async fn chosen_values(store: &Store, sweep: &SweepRow, chosen: &[Chosen]) -> Result<Index, Error> {
    let mut by_epoch: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for c in chosen.iter().filter(|c| c.epoch > 0) {
        by_epoch
            .entry(c.epoch)
            .or_default()
            .push(&c.configuration.key);
    }
    let everyone = by_epoch.len() == 1 && chosen.iter().all(|c| c.epoch > 0);
    let mut rows = Vec::new();
    for (epoch, keys) in &by_epoch {
        let keys = (!everyone).then_some(keys.as_slice());
        rows.extend(store.epoch_metrics(sweep, &[*epoch], keys).await?);
    }
    Ok(index(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_candidate_breaks_ties_early_and_ranks_nan_last() {
        let c = |epoch, mean| pb::CandidateScore {
            epoch,
            by: Some(pb::Summary {
                n: 1,
                nan: 0,
                mean,
                std: f64::NAN,
            }),
        };
        assert_eq!(best(&[c(100, 0.5), c(200, 0.7), c(300, 0.7)], true), 200);
        assert_eq!(best(&[c(100, 0.5), c(200, 0.7)], false), 100);
        assert_eq!(best(&[c(100, f64::NAN), c(200, 0.1)], true), 200);
        assert_eq!(best(&[c(100, f64::NAN)], true), 100);
        assert_eq!(best(&[], true), 0);
    }
}
