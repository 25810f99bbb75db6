//! Method bayes: a Tree-structured Parzen Estimator (the `tpe` crate's,
//! one estimator per parameter as Hyperopt and Optuna's default do it)
//! proposes configurations one at a time from the results of those already
//! tried, after `startup` drawn at random as method random draws.
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
//! The estimators are rebuilt from those observations for every proposal,
//! seeded by the search seed and the proposal's number, so a proposal
//! depends on nothing but the observations before it. Learning rates and
//! other log-uniform parameters are modelled on the log scale.

use std::collections::HashSet;

use proto::v1::TrialConfig;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tpe::TpeOptimizer;
use tpe::density_estimation::DefaultEstimatorBuilder;

use super::{
    Domain, Objective, Param, PlannedTrial, Space, SpecError, SweepFile, Value, configuration,
    repeated, sample, whole,
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

/// How a searched parameter maps to the estimator's axis.
enum Axis {
    Linear,
    Log,
    Whole,
    Choice(Vec<Value>),
}

/// One searched parameter: its axis and its estimator.
struct Knob {
    axis: Axis,
    estimator: TpeOptimizer<DefaultEstimatorBuilder>,
}

impl Knob {
    fn of(domain: &Domain) -> Option<Self> {
        let (axis, range) = match domain {
            Domain::Choice(values) if values.len() >= 2 => (
                Axis::Choice(values.clone()),
                tpe::categorical_range(values.len()),
            ),
            Domain::Uniform(a, b) if a < b => (Axis::Linear, tpe::range(*a, *b)),
            Domain::LogUniform(a, b) if a < b => (Axis::Log, tpe::range(a.ln(), b.ln())),
            // Whole numbers a..=b as the reals a..b+1, floored.
            Domain::IntUniform(a, b) if a < b => {
                (Axis::Whole, tpe::range(f64::from(*a), f64::from(*b) + 1.0))
            }
            _ => return None,
        };
        let builder = match axis {
            Axis::Choice(_) => tpe::histogram_estimator(),
            _ => tpe::parzen_estimator(),
        };
        Some(Self {
            estimator: TpeOptimizer::new(builder, range.expect("checked bounds")),
            axis,
        })
    }

    /// The estimator's coordinate of a tried value.
    fn coordinate(&self, value: &Value) -> Option<f64> {
        Some(match (&self.axis, value) {
            (Axis::Linear, Value::Float(x)) => *x,
            (Axis::Log, Value::Float(x)) => x.ln(),
            (Axis::Whole, Value::Int(n)) => f64::from(*n) + 0.5,
            (Axis::Choice(values), v) => values.iter().position(|c| c == v)? as f64,
            _ => return None,
        })
    }

    fn tell(&mut self, value: &Value, loss: f64) {
        if let Some(x) = self.coordinate(value) {
            // The range is half open: a value at its top (min == max
            // aside) is told just inside it.
            if self.estimator.tell(x, loss).is_err() {
                let _ = self.estimator.tell(x - x.abs().max(1.0) * 1e-12, loss);
            }
        }
    }

    fn ask(&mut self, rng: &mut rand_08::rngs::StdRng) -> Option<Value> {
        let x = self.estimator.ask(rng).ok()?;
        Some(match &self.axis {
            Axis::Linear => Value::Float(x),
            Axis::Log => Value::Float(x.exp()),
            Axis::Whole => Value::Int(x.floor() as u32),
            Axis::Choice(values) => values.get(x as usize)?.clone(),
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
        // One stream of seeds per sweep, a seed per proposal.
        let seed = ChaCha8Rng::seed_from_u64(self.seed)
            .random_iter::<u64>()
            .nth(proposal as usize)
            .expect("an endless stream");
        let observed: Vec<&Observation> = history.iter().filter(|o| o.value.is_finite()).collect();
        // The first `startup` proposals are drawn at random, whatever has
        // been observed when they are made.
        let random = proposal <= self.startup;
        let mut knobs: Vec<Option<Knob>> = domains.iter().map(|(_, (d, _))| Knob::of(d)).collect();
        for o in &observed {
            // The estimators minimise.
            let loss = if self.maximize { -o.value } else { o.value };
            for ((param, _), knob) in domains.iter().zip(&mut knobs) {
                if let Some(knob) = knob {
                    knob.tell(&value_of(*param, &o.config), loss);
                }
            }
        }
        let mut rng = <rand_08::rngs::StdRng as rand_08::SeedableRng>::seed_from_u64(seed);
        let mut draws = sample(domains, ASKS as u32, seed).into_iter();
        let proposed_by = if random { "random" } else { "tpe" };
        (0..ASKS).find_map(|_| {
            let values = if random {
                draws.next()?
            } else {
                domains
                    .iter()
                    .zip(&mut knobs)
                    .map(|((_, (domain, _)), knob)| match (knob, domain) {
                        (Some(knob), _) => knob.ask(&mut rng),
                        (None, Domain::Fixed(v)) => Some(v.clone()),
                        (None, Domain::Choice(vs)) => vs.first().cloned(),
                        (None, Domain::Uniform(a, _) | Domain::LogUniform(a, _)) => {
                            Some(Value::Float(*a))
                        }
                        (None, Domain::IntUniform(a, _)) => Some(Value::Int(*a)),
                    })
                    .collect::<Option<Vec<Value>>>()?
            };
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
