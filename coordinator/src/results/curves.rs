//! Learning curves: per configuration and epoch, one metric summarised
//! across the configuration's repeats.

use std::collections::{BTreeMap, HashMap};

use proto::metrics::Metric;
use proto::v1 as pb;

use crate::error::Error;
use crate::packed;
use crate::store::Store;

use super::configurations::labels;
use super::{invalid, split_or_default, sweep};

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
    // Running summaries kept as epochs arrive (see crate::aggregates): one
    // row per configuration and epoch, whatever the number of repeats.
    let keys = store.config_keys(sweep.id).await?;
    let mut by_key: HashMap<String, BTreeMap<u32, pb::Summary>> = HashMap::new();
    for (key, epoch, running) in store
        .curve_points(sweep.id, packed::slot_of(split, metric))
        .await?
    {
        if running.n + running.nan > 0 {
            by_key
                .entry(key)
                .or_default()
                .insert(epoch, running.summary());
        }
    }
    let labels = labels(&keys.iter().map(String::as_str).collect::<Vec<_>>());
    let curves = keys
        .into_iter()
        .zip(labels)
        .map(|(key, label)| pb::Curve {
            points: by_key
                .remove(&key)
                .unwrap_or_default()
                .into_iter()
                .map(|(epoch, summary)| pb::CurvePoint {
                    epoch,
                    summary: Some(summary),
                })
                .collect(),
            config_key: key,
            label,
        })
        .collect();
    Ok(pb::LearningCurvesResponse {
        metric: metric.name().to_string(),
        split: split.name().to_string(),
        curves,
    })
}
