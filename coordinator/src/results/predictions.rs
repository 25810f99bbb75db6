//! Per configuration, the generator's latest predictions on the sample
//! items, beside the true boards, as the notebook showed them.

use std::collections::HashMap;

use prost::Message;
use proto::v1 as pb;

use crate::error::Error;
use crate::store::{Store, StoreError};

use super::configurations::configurations;
use super::sweep;

/// For each configuration with predictions, those of its trial furthest
/// along (the lowest repeat on a tie), in results order.
pub async fn predictions(
    store: &Store,
    r: &pb::PredictionsRequest,
) -> Result<pb::PredictionsResponse, Error> {
    let sweep = sweep(store, r.sweep_id).await?;
    let mut stored: HashMap<i64, pb::BoardSamples> = HashMap::new();
    for (trial_id, data) in store.sweep_samples(sweep.id).await? {
        let samples = pb::BoardSamples::decode(data.as_slice())
            .map_err(|e| StoreError::Unreadable(format!("the samples of trial {trial_id}: {e}")))?;
        stored.insert(trial_id, samples);
    }
    let configurations = configurations(store.trials(sweep.id).await?)
        .into_iter()
        .filter_map(|c| {
            let (trial, samples) = c
                .trials
                .iter()
                .filter_map(|t| Some((t, stored.remove(&t.id)?)))
                .max_by_key(|(t, s)| (s.epoch, std::cmp::Reverse(t.repeat)))?;
            Some(pb::ConfigurationPredictions {
                config_key: c.key.clone(),
                label: c.label.clone(),
                trial_id: trial.id,
                repeat: trial.repeat,
                epoch: samples.epoch,
                samples: samples.samples,
            })
        })
        .collect();
    Ok(pb::PredictionsResponse { configurations })
}
