//! Per configuration, the generator's latest predictions on the sample
//! items, beside the true boards, as the notebook showed them.

use std::collections::HashMap;

use prost::Message;
use proto::v1 as pb;

use crate::error::Error;
use crate::store::{Store, StoreError, TrialRow};

use super::configurations::{Configuration, configurations};
use super::sweep;

/// For each configuration with predictions, those of its trial furthest
/// along (the lowest repeat on a tie), in results order. Only those trials'
/// predictions are read.
pub async fn predictions(
    store: &Store,
    r: &pb::PredictionsRequest,
) -> Result<pb::PredictionsResponse, Error> {
    let sweep = sweep(store, r.sweep_id).await?;
    let epochs: HashMap<i64, u32> = store
        .sweep_sample_epochs(sweep.id)
        .await?
        .into_iter()
        .collect();
    let chosen: Vec<(Configuration, TrialRow, u32)> = configurations(store.trials(sweep.id).await?)
        .into_iter()
        .filter_map(|c| {
            let (trial, epoch) = c
                .trials
                .iter()
                .filter_map(|t| Some((t, *epochs.get(&t.id)?)))
                .max_by_key(|(t, epoch)| (*epoch, std::cmp::Reverse(t.repeat)))?;
            let trial = trial.clone();
            Some((c, trial, epoch))
        })
        .collect();
    let ids: Vec<i64> = chosen.iter().map(|(_, t, _)| t.id).collect();
    let mut stored: HashMap<i64, Vec<u8>> = store.samples_of(&ids).await?.into_iter().collect();
    let configurations = chosen
        .into_iter()
        .filter_map(|(c, trial, _)| {
            let data = stored.remove(&trial.id)?;
            Some((c, trial, data))
        })
        .map(|(c, trial, data)| {
            let samples = pb::BoardSamples::decode(data.as_slice()).map_err(|e| {
                StoreError::Unreadable(format!("the samples of trial {}: {e}", trial.id))
            })?;
            Ok(pb::ConfigurationPredictions {
                config_key: c.key.clone(),
                label: c.label.clone(),
                trial_id: trial.id,
                repeat: trial.repeat,
                epoch: samples.epoch,
                samples: samples.samples,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(pb::PredictionsResponse { configurations })
}
