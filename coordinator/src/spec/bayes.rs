//! Method bayes: a Tree-structured Parzen Estimator (the `optimizer`
//! crate's, as Optuna and Hyperopt do it) proposes configurations one at a
//! time from the results of those already tried.
//!
//! ```yaml
//! method: bayes
//! budget: 40        # configurations in all, each run `repeats` times
//! startup: 10       # the first ones drawn at random (default min(10, budget))
//! parallel: 4       # configurations in flight at once (default min(4, budget))
//! search_seed: 0
//! ```
//!
//! A configuration is observed once all its trials have ended: its value is
//! the mean over its repeats of the sweep's metric at each one's last
//! epoch (a configuration stopped early is observed at its stopping rung).
//! The estimator is rebuilt from those observations for every proposal,
//! seeded by the search seed and the proposal's number, so a proposal
//! depends on nothing but the observations before it.

use std::collections::HashSet;

use optimizer::param::ParamValue;
use optimizer::parameter::{CategoricalParam, FloatParam, IntParam, Parameter};
use optimizer::sampler::tpe::TpeSampler;
use optimizer::{Direction, Study, Trial};
use proto::v1::TrialConfig;
use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{
    Domain, Objective, Param, PlannedTrial, Space, SpecError, SweepFile, Value, configuration,
    repeated, whole,
};

/// Asks before giving up on finding a configuration the sweep has not
/// tried (a small, all-categorical space can run out).
const ASKS: usize = 64;

/// A configuration already tried, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Its parameters (any repeat's).
    pub config: TrialConfig,
    /// The mean over its repeats of the sweep's metric.
    pub value: f64,
}

/// The search of a method bayes sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    space: Space,
    seed: u64,
    /// Configurations proposed at random before the estimator takes over.
    pub startup: u32,
    /// Configurations in flight at once.
    pub parallel: u32,
    maximize: bool,
}

/// One searched parameter as the estimator sees it.
enum Knob {
    Float(FloatParam),
    Int(IntParam),
    Choice(CategoricalParam<usize>, Vec<Value>),
}

impl Knob {
    fn of(domain: &Domain) -> Option<Self> {
        Some(match domain {
            Domain::Fixed(_) => return None,
            Domain::Choice(values) if values.len() < 2 => return None,
            Domain::Choice(values) => Knob::Choice(
                CategoricalParam::new((0..values.len()).collect()),
                values.clone(),
            ),
            Domain::Uniform(a, b) if a == b => return None,
            Domain::Uniform(a, b) => Knob::Float(FloatParam::new(*a, *b)),
            Domain::LogUniform(a, b) if a == b => return None,
            Domain::LogUniform(a, b) => Knob::Float(FloatParam::new(*a, *b).log_scale()),
            Domain::IntUniform(a, b) if a == b => return None,
            Domain::IntUniform(a, b) => Knob::Int(IntParam::new(i64::from(*a), i64::from(*b))),
        })
    }

    /// The estimator's coordinate of a tried value.
    fn coordinate(&self, value: &Value) -> Option<(optimizer::parameter::ParamId, ParamValue)> {
        Some(match (self, value) {
            (Knob::Float(p), Value::Float(x)) => (p.id(), ParamValue::Float(*x)),
            (Knob::Int(p), Value::Int(n)) => (p.id(), ParamValue::Int(i64::from(*n))),
            (Knob::Choice(p, values), v) => (
                p.id(),
                ParamValue::Categorical(values.iter().position(|c| c == v)?),
            ),
            _ => return None,
        })
    }

    fn suggest(&self, trial: &mut Trial) -> Option<Value> {
        Some(match self {
            Knob::Float(p) => Value::Float(p.suggest(trial).ok()?),
            Knob::Int(p) => Value::Int(u32::try_from(p.suggest(trial).ok()?).ok()?),
            Knob::Choice(p, values) => values.get(p.suggest(trial).ok()?)?.clone(),
        })
    }
}

/// A parameter's value in a trial configuration.
fn value_of(param: Param, c: &TrialConfig) -> Value {
    match param {
        Param::Init | Param::GenInit => Value::Init(c.gen_init.unwrap_or_default()),
        Param::DiscInit => Value::Init(c.disc_init.unwrap_or_default()),
        Param::GlobRelu => Value::Bool(c.glob_relu),
        Param::Lr => Value::Float(c.lr),
        Param::Beta1 => Value::Float(c.beta1),
        Param::Beta2 => Value::Float(c.beta2),
        Param::BatchSize => Value::Int(c.batch_size),
        Param::Epochs => Value::Int(c.epochs),
    }
}

impl Search {
    pub(super) fn new(
        file: &SweepFile,
        space: Space,
        seed: u64,
        budget: u32,
        objective: Objective,
    ) -> Result<Self, SpecError> {
        let method = file.method.as_ref().expect("bayes is named");
        if space
            .domains
            .iter()
            .all(|(_, (d, _))| Knob::of(d).is_none())
        {
            return Err(SpecError::at(
                method,
                "parameters",
                "method bayes needs a parameter to search: a distribution or two or more values",
            ));
        }
        let count = |given: &Option<marked_yaml::Spanned<String>>, field: &str, default: u32| {
            let Some(v) = given else {
                return Ok(default.min(budget));
            };
            match whole::<u32>(v, field)? {
                n if (1..=budget).contains(&n) => Ok(n),
                n => Err(SpecError::at(
                    v,
                    field,
                    format!("must lie in 1..={budget} (the budget), got {n}"),
                )),
            }
        };
        Ok(Self {
            startup: count(&file.startup, "startup", 10)?,
            parallel: count(&file.parallel, "parallel", 4)?,
            space,
            seed,
            maximize: objective.maximize,
        })
    }

    /// The trials of configuration number `proposal` (1-based), proposed
    /// from the observations so far and unlike every configuration in
    /// `taken`; None when no untried configuration was found.
    pub fn propose(
        &self,
        history: &[Observation],
        taken: &HashSet<String>,
        proposal: u32,
    ) -> Option<Vec<PlannedTrial>> {
        let domains = &self.space.domains;
        let knobs: Vec<Option<Knob>> = domains.iter().map(|(_, (d, _))| Knob::of(d)).collect();
        // One stream of seeds per sweep, a seed per proposal.
        let seed = ChaCha8Rng::seed_from_u64(self.seed)
            .random_iter::<u64>()
            .nth(proposal as usize)
            .expect("an endless stream");
        let sampler = TpeSampler::builder()
            .n_startup_trials(self.startup as usize)
            .seed(seed)
            .build()
            .expect("default gamma and bandwidth are valid");
        let direction = if self.maximize {
            Direction::Maximize
        } else {
            Direction::Minimize
        };
        let study: Study<f64> = Study::with_sampler(direction, sampler);
        for observed in history.iter().filter(|o| o.value.is_finite()) {
            let coordinates = domains
                .iter()
                .zip(&knobs)
                .filter_map(|((param, _), knob)| {
                    knob.as_ref()?
                        .coordinate(&value_of(*param, &observed.config))
                })
                .collect();
            study.enqueue(coordinates);
            let mut trial = study.ask();
            for knob in knobs.iter().flatten() {
                knob.suggest(&mut trial);
            }
            study.tell(trial, Ok::<_, String>(observed.value));
        }
        let proposed_by = if history.len() < self.startup as usize {
            "random"
        } else {
            "tpe"
        };
        (0..ASKS).find_map(|_| {
            let mut trial = study.ask();
            let values = domains
                .iter()
                .zip(&knobs)
                .map(|((_, (domain, _)), knob)| match (knob, domain) {
                    (Some(knob), _) => knob.suggest(&mut trial),
                    (None, Domain::Fixed(v)) => Some(v.clone()),
                    (None, Domain::Choice(vs)) => vs.first().cloned(),
                    (None, Domain::Uniform(a, _) | Domain::LogUniform(a, _)) => {
                        Some(Value::Float(*a))
                    }
                    (None, Domain::IntUniform(a, _)) => Some(Value::Int(*a)),
                })
                .collect::<Option<Vec<Value>>>()?;
            let (config, key) = configuration(&values, domains, &self.space.dataset).ok()?;
            (!taken.contains(&key)).then(|| {
                repeated(
                    &config,
                    &key,
                    self.space.repeats,
                    self.space.base_seed,
                    proposal,
                    proposed_by,
                )
            })
        })
    }
}
