//! Learning curves: per configuration and epoch, one metric summarised
//! across the configuration's repeats.

use std::collections::{BTreeMap, HashMap};

use proto::metrics::Metric;
use proto::v1 as pb;

use crate::error::Error;
use crate::store::Store;

use super::configurations::configurations;
use super::{invalid, split_or_default, summary, sweep};

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
    let metric = Metric::parse(&r.metric, split).map_err(invalid)?;
    let configurations = configurations(store.trials(sweep.id).await?);
    let mut by_trial: HashMap<i64, BTreeMap<u32, f64>> = HashMap::new();
    for row in store
        .metric_values(sweep.id, split, None, Some(metric), None)
        .await?
    {
        by_trial
            .entry(row.trial_id)
            .or_default()
            .insert(row.epoch, row.value.value);
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
        metric: metric.name().to_string(),
        split: split.name().to_string(),
        curves,
    })
}
