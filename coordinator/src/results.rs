//! Results by configuration: which epoch of each trial is read, summaries
//! per configuration, Welch's t-tests between groups of configurations and
//! learning curves. The gRPC API and the CLI show these same numbers.
//!
//! A configuration is a trial's parameters without its seed: the trials
//! that share a `config_key` are its repeats.

use std::collections::{BTreeMap, HashMap};

use proto::v1 as pb;

use crate::convert;
use crate::error::Error;
use crate::spec::{self, Objective, SPLIT_METRICS};
use crate::stats;
use crate::store::{MetricRow, Store, SweepRow, TrialRow};

/// The repeats of one configuration, in repeat order.
#[derive(Debug)]
struct Configuration {
    key: String,
    label: String,
    /// The configuration's last epoch.
    epochs: u32,
    trials: Vec<TrialRow>,
}

/// Which epoch of each configuration's trials is read.
#[derive(Debug)]
enum Selection {
    Last,
    At(u32),
    Stop { candidates: Vec<u32>, by: Objective },
}

/// A configuration with the epoch its values are read at.
#[derive(Debug)]
struct Chosen {
    configuration: Configuration,
    /// 0 where nothing is there to read.
    epoch: u32,
    /// With StopEpochs: the `by` metric at each candidate some trial reached.
    candidates: Vec<pb::CandidateScore>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

fn split_or_default(split: &str) -> Result<String, Error> {
    match split {
        "" => Ok("test".to_string()),
        "train" | "test" => Ok(split.to_string()),
        other => Err(invalid(format!(
            "unknown split {other:?}; expected train or test"
        ))),
    }
}

/// `key=value` pairs of a config key, in its order.
fn pairs(config_key: &str) -> Vec<(&str, &str)> {
    config_key
        .split(' ')
        .filter_map(|p| p.split_once('='))
        .collect()
}

fn value_of<'a>(pairs: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// Groups trials (in id order) by configuration, in order of first trial,
/// and labels each by the parameters that vary across the sweep.
fn configurations(trials: Vec<TrialRow>) -> Vec<Configuration> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Configuration> = Vec::new();
    for trial in trials {
        let i = *index.entry(trial.config_key.clone()).or_insert_with(|| {
            out.push(Configuration {
                key: trial.config_key.clone(),
                label: String::new(),
                epochs: trial.config.epochs,
                trials: Vec::new(),
            });
            out.len() - 1
        });
        out[i].trials.push(trial);
    }
    for c in &mut out {
        c.trials.sort_by_key(|t| (t.repeat, t.id));
    }
    let labels = labels(&out.iter().map(|c| c.key.as_str()).collect::<Vec<_>>());
    for (c, label) in out.iter_mut().zip(labels) {
        c.label = label;
    }
    out
}

/// Each key's varying parameters as `name=value`; `init=X` where a
/// configuration's generator and discriminator inits vary together. A sweep
/// with one configuration is labelled by its whole key.
pub fn labels(keys: &[&str]) -> Vec<String> {
    let parsed: Vec<Vec<(&str, &str)>> = keys.iter().map(|k| pairs(k)).collect();
    let Some(first) = parsed.first() else {
        return Vec::new();
    };
    let varies = |name: &str| {
        parsed
            .iter()
            .any(|p| value_of(p, name) != value_of(first, name))
    };
    let inits_together = varies("gen_init")
        && parsed
            .iter()
            .all(|p| value_of(p, "gen_init") == value_of(p, "disc_init"));
    parsed
        .iter()
        .zip(keys)
        .map(|(p, key)| {
            let label: Vec<String> = p
                .iter()
                .filter(|(k, _)| varies(k))
                .filter_map(|(k, v)| match *k {
                    "disc_init" if inits_together => Some(format!("init={v}")),
                    "gen_init" if inits_together => None,
                    _ => Some(format!("{k}={v}")),
                })
                .collect();
            if label.is_empty() {
                key.to_string()
            } else {
                label.join(" ")
            }
        })
        .collect()
}

/// A `key=value` filter on configurations.
#[derive(Debug)]
struct Filter {
    key: String,
    value: String,
}

impl Filter {
    fn parse(text: &str, known: &[&str]) -> Result<Self, Error> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| invalid(format!("{text:?} is not KEY=VALUE")))?;
        if key != "init" && !known.contains(&key) {
            return Err(invalid(format!(
                "unknown parameter {key:?} in {text:?}; expected one of init, {}",
                known.join(", ")
            )));
        }
        Ok(Self {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    fn matches(&self, config_key: &str) -> bool {
        let same = |stored: &str| {
            stored == self.value
                || matches!(
                    (stored.parse::<f64>(), self.value.parse::<f64>()),
                    (Ok(a), Ok(b)) if a == b
                )
        };
        let pairs = pairs(config_key);
        match self.key.as_str() {
            "init" => {
                value_of(&pairs, "gen_init").is_some_and(same)
                    && value_of(&pairs, "disc_init").is_some_and(same)
            }
            key => value_of(&pairs, key).is_some_and(same),
        }
    }
}

/// The configurations matching every filter of one group.
fn select(
    configurations: &[&Configuration],
    filters: &[String],
    group: &str,
) -> Result<Vec<usize>, Error> {
    if filters.is_empty() {
        return Err(invalid(format!(
            "group {group} needs at least one KEY=VALUE filter"
        )));
    }
    let known: Vec<&str> = configurations
        .first()
        .map(|c| pairs(&c.key).into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    let filters = filters
        .iter()
        .map(|f| Filter::parse(f, &known))
        .collect::<Result<Vec<_>, _>>()?;
    let chosen: Vec<usize> = (0..configurations.len())
        .filter(|&i| filters.iter().all(|f| f.matches(&configurations[i].key)))
        .collect();
    if chosen.is_empty() {
        let labels: Vec<&str> = configurations.iter().map(|c| c.label.as_str()).collect();
        return Err(invalid(format!(
            "no configuration matches group {group} ({}); the sweep has: {}",
            filters_text(&filters),
            labels.join("; ")
        )));
    }
    Ok(chosen)
}

fn filters_text(filters: &[Filter]) -> String {
    let parts: Vec<String> = filters
        .iter()
        .map(|f| format!("{}={}", f.key, f.value))
        .collect();
    parts.join(" ")
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

/// Values by (trial, epoch), then by metric.
type Index = HashMap<(i64, u32), Vec<(String, f64)>>;

fn index(rows: Vec<MetricRow>) -> Index {
    let mut out: Index = HashMap::new();
    for r in rows {
        out.entry((r.trial_id, r.epoch))
            .or_default()
            .push((r.metric, r.value));
    }
    out
}

/// One value per trial of the configuration that has the metric at `epoch`.
fn values_at<'a>(
    configuration: &'a Configuration,
    index: &'a Index,
    epoch: u32,
    metric: &'a str,
) -> impl Iterator<Item = (&'a TrialRow, f64)> + 'a {
    configuration.trials.iter().filter_map(move |t| {
        index
            .get(&(t.id, epoch))?
            .iter()
            .find(|(m, _)| m == metric)
            .map(|(_, v)| (t, *v))
    })
}

async fn sweep(store: &Store, id: i64) -> Result<SweepRow, Error> {
    store
        .sweep(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("sweep {id}")))
}

/// Refuses a metric that the sweep's trials do not report.
async fn check_metric(
    store: &Store,
    sweep_id: i64,
    split: &str,
    metric: &str,
) -> Result<(), Error> {
    let mut known = store.metric_names(sweep_id, split).await?;
    if known.is_empty() {
        known = SPLIT_METRICS.iter().map(|m| m.to_string()).collect();
    }
    if known.iter().any(|m| m == metric) {
        Ok(())
    } else {
        Err(invalid(format!(
            "unknown {split} metric {metric:?}; expected one of {}",
            known.join(", ")
        )))
    }
}

async fn selection(
    store: &Store,
    sweep: &SweepRow,
    split: &str,
    selection: Option<&pb::EpochSelection>,
) -> Result<Selection, Error> {
    use pb::epoch_selection::Choice;
    Ok(match selection.and_then(|s| s.choice.as_ref()) {
        None => Selection::Last,
        Some(Choice::Epoch(0)) => return Err(invalid("epochs count from 1")),
        Some(Choice::Epoch(e)) => Selection::At(*e),
        Some(Choice::StopEpochs(stop)) => {
            let mut candidates = stop.candidates.clone();
            candidates.sort_unstable();
            candidates.dedup();
            if candidates.is_empty() || candidates[0] == 0 {
                return Err(invalid(
                    "stopping epochs must be one or more epochs counted from 1",
                ));
            }
            let by = if stop.by.is_empty() {
                Objective {
                    metric: sweep.metric.clone(),
                    split: sweep.metric_split.clone(),
                    maximize: sweep.maximize,
                }
            } else {
                check_metric(store, sweep.id, split, &stop.by).await?;
                Objective {
                    metric: stop.by.clone(),
                    split: split.to_string(),
                    maximize: spec::maximized_by_default(&stop.by),
                }
            };
            Selection::Stop { candidates, by }
        }
    })
}

async fn choose(store: &Store, sweep_id: i64, selection: &Selection) -> Result<Vec<Chosen>, Error> {
    let configurations = configurations(store.trials(sweep_id).await?);
    let scored = match selection {
        Selection::Stop { candidates, by } => index(
            store
                .metric_values(
                    sweep_id,
                    &by.split,
                    Some(candidates),
                    Some(&by.metric),
                    None,
                )
                .await?,
        ),
        _ => Index::new(),
    };
    Ok(configurations
        .into_iter()
        .map(|configuration| {
            let (epoch, candidates) = match selection {
                Selection::Last => (configuration.epochs, Vec::new()),
                Selection::At(e) => (*e, Vec::new()),
                Selection::Stop { candidates, by } => {
                    let scores: Vec<pb::CandidateScore> = candidates
                        .iter()
                        .filter_map(|&epoch| {
                            let values: Vec<f64> =
                                values_at(&configuration, &scored, epoch, &by.metric)
                                    .map(|(_, v)| v)
                                    .collect();
                            (!values.is_empty()).then(|| pb::CandidateScore {
                                epoch,
                                by: Some(summary(&values)),
                            })
                        })
                        .collect();
                    (best(&scores, by.maximize), scores)
                }
            };
            Chosen {
                configuration,
                epoch,
                candidates,
            }
        })
        .collect())
}

/// Every metric of `split` per configuration at the selected epoch.
pub async fn results(store: &Store, r: &pb::ResultsRequest) -> Result<pb::ResultsResponse, Error> {
    let sweep = sweep(store, r.sweep_id).await?;
    let split = split_or_default(&r.split)?;
    let selection = selection(store, &sweep, &split, r.epoch.as_ref()).await?;
    let chosen = choose(store, sweep.id, &selection).await?;
    let index = chosen_values(store, sweep.id, &split, &chosen, None).await?;
    let configurations = chosen
        .into_iter()
        .map(
            |Chosen {
                 configuration: c,
                 epoch,
                 candidates,
             }| {
                let present: Vec<(i64, &Vec<(String, f64)>)> = c
                    .trials
                    .iter()
                    .filter_map(|t| Some((t.id, index.get(&(t.id, epoch))?)))
                    .collect();
                let names = present.iter().flat_map(|(_, v)| v.iter().map(|(m, _)| m));
                let metrics = metric_order(names)
                    .into_iter()
                    .map(|name| {
                        let (trial_ids, values): (Vec<i64>, Vec<f64>) = present
                            .iter()
                            .filter_map(|(id, v)| {
                                let value = v.iter().find(|(m, _)| *m == name)?.1;
                                Some((*id, value))
                            })
                            .unzip();
                        pb::MetricSummary {
                            summary: Some(summary(&values)),
                            name,
                            values,
                            trial_ids,
                        }
                    })
                    .collect();
                pb::ConfigurationResult {
                    config_key: c.key.clone(),
                    label: c.label.clone(),
                    trials: c.trials.len() as u32,
                    epoch,
                    trial_ids: present.iter().map(|(id, _)| *id).collect(),
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
        split,
        stop_by,
        stop_maximize,
        configurations,
    })
}

/// Welch's t-test of one metric between two groups of configurations,
/// or between every ordered pair of configurations.
pub async fn compare(store: &Store, r: &pb::CompareRequest) -> Result<pb::CompareResponse, Error> {
    let sweep = sweep(store, r.sweep_id).await?;
    let split = split_or_default(&r.split)?;
    if r.metric.is_empty() {
        return Err(invalid("a metric to compare is required"));
    }
    check_metric(store, sweep.id, &split, &r.metric).await?;
    let alternative = convert::alternative(r.alternative)
        .ok_or_else(|| invalid(format!("unknown alternative {}", r.alternative)))?;
    let selection = selection(store, &sweep, &split, r.epoch.as_ref()).await?;
    let chosen = choose(store, sweep.id, &selection).await?;
    let index = chosen_values(store, sweep.id, &split, &chosen, Some(&r.metric)).await?;
    let group = |members: &[usize], label: String| {
        let mut g = pb::Group {
            label,
            ..Default::default()
        };
        for &i in members {
            let Chosen {
                configuration: c,
                epoch,
                ..
            } = &chosen[i];
            let epoch = *epoch;
            g.config_keys.push(c.key.clone());
            for (t, v) in values_at(c, &index, epoch, &r.metric) {
                g.trial_ids.push(t.id);
                g.epochs.push(epoch);
                g.values.push(v);
            }
        }
        g.summary = Some(summary(&g.values));
        g
    };
    let pairs: Vec<(pb::Group, pb::Group)> = if r.all_pairs {
        let n = chosen.len();
        let label = |i: usize| chosen[i].configuration.label.clone();
        (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| (group(&[i], label(i)), group(&[j], label(j))))
            .collect()
    } else {
        let configurations: Vec<&Configuration> = chosen.iter().map(|c| &c.configuration).collect();
        let a = select(&configurations, &r.a, "a")?;
        let b = select(&configurations, &r.b, "b")?;
        if let Some(&shared) = a.iter().find(|i| b.contains(i)) {
            return Err(invalid(format!(
                "groups a and b both hold configuration {}",
                configurations[shared].label
            )));
        }
        vec![(group(&a, r.a.join(" ")), group(&b, r.b.join(" ")))]
    };
    let comparisons = pairs
        .into_iter()
        .map(|(a, b)| {
            let w = stats::welch(&a.values, &b.values, alternative);
            pb::Comparison {
                a: Some(a),
                b: Some(b),
                statistic: w.statistic,
                df: w.df,
                pvalue: w.pvalue,
            }
        })
        .collect();
    Ok(pb::CompareResponse {
        metric: r.metric.clone(),
        split,
        alternative: r.alternative,
        comparisons,
    })
}

/// Per configuration and epoch, one metric summarised across repeats.
pub async fn learning_curves(
    store: &Store,
    r: &pb::LearningCurvesRequest,
) -> Result<pb::LearningCurvesResponse, Error> {
    let sweep = sweep(store, r.sweep_id).await?;
    let split = split_or_default(&r.split)?;
    if r.metric.is_empty() {
        return Err(invalid("a metric is required"));
    }
    check_metric(store, sweep.id, &split, &r.metric).await?;
    let configurations = configurations(store.trials(sweep.id).await?);
    let mut by_trial: HashMap<i64, BTreeMap<u32, f64>> = HashMap::new();
    for row in store
        .metric_values(sweep.id, &split, None, Some(&r.metric), None)
        .await?
    {
        by_trial
            .entry(row.trial_id)
            .or_default()
            .insert(row.epoch, row.value);
    }
    let curves = configurations
        .iter()
        .map(|c| {
            let mut by_epoch: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
            for t in &c.trials {
                for (&epoch, &value) in by_trial.get(&t.id).into_iter().flatten() {
                    by_epoch.entry(epoch).or_default().push(value);
                }
            }
            pb::Curve {
                config_key: c.key.clone(),
                label: c.label.clone(),
                points: by_epoch
                    .into_iter()
                    .map(|(epoch, values)| pb::CurvePoint {
                        epoch,
                        summary: Some(summary(&values)),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(pb::LearningCurvesResponse {
        metric: r.metric.clone(),
        split,
        curves,
    })
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

/// The values of `split` (one metric, or all) of every configuration at
/// its chosen epoch: one query per distinct epoch, naming the
/// configurations only when some chose another epoch.
async fn chosen_values(
    store: &Store,
    sweep_id: i64,
    split: &str,
    chosen: &[Chosen],
    metric: Option<&str>,
) -> Result<Index, Error> {
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
        rows.extend(
            store
                .metric_values(sweep_id, split, Some(&[*epoch]), metric, keys)
                .await?,
        );
    }
    Ok(index(rows))
}

/// Metric names: the notebook's split metrics in their order, then any
/// others by name.
fn metric_order<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut all: Vec<String> = names.cloned().collect();
    all.sort_by_key(|m| {
        (
            SPLIT_METRICS
                .iter()
                .position(|k| k == m)
                .unwrap_or(SPLIT_METRICS.len()),
            m.clone(),
        )
    });
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_what_varies_and_join_inits() {
        let keys = [
            "batch_size=4 disc_init=default gen_init=default lr=0.001",
            "batch_size=4 disc_init=smart gen_init=smart lr=0.001",
            "batch_size=4 disc_init=smart gen_init=smart lr=0.0001",
        ];
        assert_eq!(
            labels(&keys),
            [
                "init=default lr=0.001",
                "init=smart lr=0.001",
                "init=smart lr=0.0001"
            ]
        );
        let apart = [
            "disc_init=default gen_init=smart",
            "disc_init=smart gen_init=smart",
        ];
        assert_eq!(labels(&apart), ["disc_init=default", "disc_init=smart"]);
        assert_eq!(labels(&["lr=0.1 epochs=3"]), ["lr=0.1 epochs=3"]);
    }

    #[test]
    fn filters_compare_numbers_by_value_and_init_means_both() {
        let key = "disc_init=smart gen_init=smart lr=0.0001";
        let known = ["disc_init", "gen_init", "lr"];
        let f = |t: &str| Filter::parse(t, &known).unwrap().matches(key);
        assert!(f("lr=1e-4"));
        assert!(f("init=smart"));
        assert!(!f("init=default"));
        assert!(
            !Filter::parse("init=smart", &known)
                .unwrap()
                .matches("disc_init=smart gen_init=default")
        );
        assert!(Filter::parse("lr", &known).is_err());
        assert!(Filter::parse("seed=1", &known).is_err());
    }

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
