//! Configurations: a sweep's trials grouped by their parameters without the
//! seed (the trials that share a `config_key` are its repeats), the labels
//! that name them by what varies, and the `key=value` filters that pick
//! them for a comparison.

use std::collections::HashMap;

use crate::error::Error;
use crate::store::{TrialRow, status};

use super::invalid;

/// The repeats of one configuration, in repeat order.
#[derive(Debug)]
pub(super) struct Configuration {
    pub key: String,
    pub label: String,
    /// The configuration's last epoch: its configured one, or the rung the
    /// early-stopping rule stopped it at.
    pub epochs: u32,
    pub trials: Vec<TrialRow>,
}

impl Configuration {
    /// Its trials stopped early.
    pub fn stopped(&self) -> u32 {
        self.trials
            .iter()
            .filter(|t| t.status == status::STOPPED)
            .count() as u32
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
pub(super) fn configurations(trials: Vec<TrialRow>) -> Vec<Configuration> {
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
        if let Some(rung) = c.trials.iter().map(|t| t.stop_epoch).find(|e| *e > 0) {
            c.epochs = rung;
        }
    }
    let labels = labels(&out.iter().map(|c| c.key.as_str()).collect::<Vec<_>>());
    for (c, label) in out.iter_mut().zip(labels) {
        c.label = label;
    }
    out
}

/// Each configuration's label by its key, for trials in any order.
pub fn labels_by_key(trials: &[TrialRow]) -> HashMap<String, String> {
    let mut keys: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in trials {
        if seen.insert(t.config_key.as_str()) {
            keys.push(&t.config_key);
        }
    }
    keys.iter()
        .map(|k| k.to_string())
        .zip(labels(&keys))
        .collect()
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

/// The indices of the configurations matching every filter of one group.
pub(super) fn select(
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
}
