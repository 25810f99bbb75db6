//! Sweeps over time: submission, configurations proposed as results arrive
//! (method bayes, see [`crate::spec::Search`]) and configurations stopped
//! early (see [`crate::early_stopping`]).
//!
//! Both run in the coordinator on the worker's calls: a configuration is
//! judged when a report reaches one of its rungs, and the search proposes
//! when a trial ends. Several coordinators may share a database: a
//! proposal is stored only if no other was stored since the history it
//! came from was read, and a stop touches only trials still queued or
//! running.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use proto::v1::EarlyStopping;

use crate::early_stopping::{self, Standing};
use crate::spec::{self, Method, Objective, Observation, SweepPlan};
use crate::store::{Store, StoreError, SweepRow, TrialFacts, TrialRow, status};

/// Stores a new sweep and, for method bayes, proposes its first
/// configurations. Returns its id.
pub async fn submit(store: &Store, yaml: &str, plan: &SweepPlan) -> Result<i64, StoreError> {
    let id = store.create_sweep(yaml, plan).await?;
    top_up(store, id).await?;
    Ok(id)
}

/// Proposes configurations of a method bayes sweep until `parallel` are in
/// flight or the budget is spent. Returns how many it proposed.
pub async fn top_up(store: &Store, sweep_id: i64) -> Result<u32, StoreError> {
    let mut proposed = 0;
    loop {
        let Some(sweep) = store.sweep(sweep_id).await? else {
            return Ok(proposed);
        };
        if sweep.method != Method::Bayes || sweep.cancelled || sweep.proposed >= sweep.budget {
            return Ok(proposed);
        }
        let Ok(SweepPlan {
            search: Some(search),
            ..
        }) = spec::parse(&sweep.yaml)
        else {
            tracing::error!(sweep = sweep_id, "stored bayes sweep no longer parses");
            return Ok(proposed);
        };
        let trials = store.trials(sweep_id).await?;
        let in_flight: HashSet<&str> = trials
            .iter()
            .filter(|t| !status::is_final(&t.status))
            .map(|t| t.config_key.as_str())
            .collect();
        if in_flight.len() >= search.parallel as usize {
            return Ok(proposed);
        }
        let history = observations(store, &sweep, &trials).await?;
        let taken: HashSet<String> = trials.iter().map(|t| t.config_key.clone()).collect();
        let proposal = sweep.proposed + 1;
        let Some(planned) = search.propose(&history, &taken, proposal) else {
            tracing::info!(
                sweep = sweep_id,
                configurations = sweep.proposed,
                "the search found no configuration left to try; budget closed"
            );
            store.close_budget(sweep_id, sweep.proposed).await?;
            return Ok(proposed);
        };
        if store
            .add_configuration(sweep_id, sweep.proposed, &planned)
            .await?
        {
            proposed += 1;
            tracing::info!(
                sweep = sweep_id,
                proposal,
                by = planned[0].proposed_by,
                config = planned[0].config_key,
                "configuration proposed"
            );
        }
    }
}

/// The configurations whose trials have all ended, with the mean over
/// their repeats of the sweep's metric at each one's last epoch (the rung
/// of one stopped early), in order of proposal.
async fn observations(
    store: &Store,
    sweep: &SweepRow,
    trials: &[TrialRow],
) -> Result<Vec<Observation>, StoreError> {
    let mut by_key: HashMap<&str, Vec<&TrialRow>> = HashMap::new();
    for t in trials {
        by_key.entry(&t.config_key).or_default().push(t);
    }
    let mut ended: Vec<(&str, Vec<&TrialRow>)> = by_key
        .into_iter()
        .filter(|(_, ts)| {
            ts.iter()
                .all(|t| status::is_final(&t.status) && t.status != status::CANCELLED)
        })
        .collect();
    if ended.is_empty() {
        return Ok(Vec::new());
    }
    ended.sort_by_key(|(_, ts)| ts[0].proposal);
    let keys: Vec<&str> = ended.iter().map(|(k, _)| *k).collect();
    let Objective { metric, split, .. } = sweep.objective;
    let rows = store
        .metric_values(sweep.id, split, metric, Some(&keys))
        .await?;
    let value: HashMap<(i64, u32), f64> = rows
        .iter()
        .map(|r| ((r.trial_id, r.epoch), r.value.value))
        .collect();
    Ok(ended
        .into_iter()
        .map(|(_, ts)| {
            let values: Vec<f64> = ts
                .iter()
                .filter_map(|t| {
                    let last = if t.stop_epoch > 0 {
                        t.stop_epoch
                    } else {
                        t.epochs_done
                    };
                    value.get(&(t.id, last)).copied()
                })
                .collect();
            Observation {
                config: ts[0].config.clone(),
                value: Standing::of(&values).mean,
            }
        })
        .collect())
}

/// What the coordinator needs to know of a sweep on every report, read
/// once: a sweep's method and rule never change.
#[derive(Debug, Clone, Default)]
pub struct SweepFacts(Arc<Mutex<HashMap<i64, Option<Arc<Facts>>>>>);

/// A sweep's method, and its early-stopping rule with the metric it judges
/// by.
#[derive(Debug)]
pub struct Facts {
    method: Method,
    stopping: Option<EarlyStopping>,
    objective: Objective,
}

impl SweepFacts {
    async fn of(&self, store: &Store, sweep_id: i64) -> Result<Option<Arc<Facts>>, StoreError> {
        if let Some(facts) = self.0.lock().expect("not poisoned").get(&sweep_id) {
            return Ok(facts.clone());
        }
        let facts = store.sweep(sweep_id).await?.map(|s| {
            Arc::new(Facts {
                method: s.method,
                stopping: s.early_stopping,
                objective: s.objective,
            })
        });
        self.0
            .lock()
            .expect("not poisoned")
            .insert(sweep_id, facts.clone());
        Ok(facts)
    }

    /// After a trial of the sweep ended: proposes what a method bayes sweep
    /// may now need.
    pub async fn after_end(&self, store: &Store, sweep_id: i64) -> Result<(), StoreError> {
        if self
            .of(store, sweep_id)
            .await?
            .is_some_and(|f| f.method == Method::Bayes)
        {
            top_up(store, sweep_id).await?;
        }
        Ok(())
    }

    /// Judges the configuration of `trial`, which has just stored `epoch`,
    /// if that is one of its rungs and it is now due; stops it if the rule
    /// says so. Returns whether it was stopped.
    pub async fn after_epoch(
        &self,
        store: &Store,
        trial: &TrialFacts,
        epoch: u32,
    ) -> Result<bool, StoreError> {
        let Some(facts) = self.of(store, trial.sweep_id).await? else {
            return Ok(false);
        };
        let Some(stopping) = &facts.stopping else {
            return Ok(false);
        };
        if !early_stopping::is_rung(stopping, epoch, trial.epochs) {
            return Ok(false);
        }
        let objective = facts.objective;
        let values = store
            .rung_values(trial.sweep_id, objective.split, objective.metric, epoch)
            .await?;
        // Repeat -> value, per configuration.
        let mut by_key: HashMap<&str, HashMap<u32, f64>> = HashMap::new();
        for (key, repeat, value) in &values {
            by_key.entry(key).or_default().insert(*repeat, *value);
        }
        let needed = match stopping.min_repeats {
            0 => {
                store
                    .configuration_size(trial.sweep_id, &trial.config_key)
                    .await?
            }
            n => n,
        } as usize;
        let mine = by_key.remove(trial.config_key.as_str()).unwrap_or_default();
        // Judged once: when the last repeat it waits for arrives.
        if mine.len() != needed {
            return Ok(false);
        }
        // The others on the same repeats, that is the same seeds.
        let others: Vec<f64> = by_key
            .values()
            .filter_map(|theirs| {
                let values: Option<Vec<f64>> =
                    mine.keys().map(|r| theirs.get(r).copied()).collect();
                Some(Standing::of(&values?).mean)
            })
            .collect();
        let mine: Vec<f64> = mine.into_values().collect();
        let Some(reason) =
            early_stopping::judge(stopping, &objective, epoch, Standing::of(&mine), &others)
        else {
            return Ok(false);
        };
        let stopped = store
            .stop_configuration(
                trial.sweep_id,
                &trial.config_key,
                trial.epochs,
                epoch,
                &reason,
            )
            .await?;
        tracing::info!(
            sweep = trial.sweep_id,
            config = trial.config_key,
            trials = stopped,
            reason,
            "configuration stopped early"
        );
        top_up(store, trial.sweep_id).await?;
        Ok(stopped > 0)
    }
}
