//! Sweep files: parsing (every error with line, column and field), checking
//! and expansion into trials.
//!
//! ```yaml
//! name: init-study
//! method: grid            # random (with `budget`, `search_seed`) or bayes (below)
//! repeats: 3              # trials per configuration; repeat r has seed `seed + r`
//! seed: 0
//! metric: {name: board_accuracy, split: test, goal: maximize}
//! dataset:
//!   generated: {seed: 25, train: 1762, test: 440}
//! parameters:
//!   init: {values: [default, kaiming_fan_in_zero_bias, smart]}
//!   lr: {value: 0.0001}
//!   epochs: {value: 300}
//! early_stopping: {method: asha, grace: 10, reduction_factor: 3}   # optional
//! stop_epochs: [100, 200, 300]   # optional: the epochs results will be read at
//! metric_precision: float32       # optional: store values as 32-bit floats
//! ```
//!
//! `method: bayes` proposes `budget` configurations one at a time with a
//! Tree-structured Parzen Estimator ([`bayes`]); `early_stopping` stops
//! configurations, never single trials ([`early_stopping`]).

mod bayes;
mod early_stopping;

pub use bayes::{Observation, Search};

use std::collections::HashMap;

use marked_yaml::{LoaderOptions, Spanned};
use proto::config::{self as trial_config, check_beta, check_count, check_lr};
use proto::metrics::{Metric, Split};
use proto::names::parse_init_scheme;
use proto::v1::{Dataset, GeneratedDataset, InitScheme, Pairing, TrialConfig, dataset::Source};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::limits;

/// A problem in a sweep file, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {field}: {message}")]
pub struct SpecError {
    /// 1-based line of the offending value.
    pub line: usize,
    /// 1-based column of the offending value.
    pub column: usize,
    /// The dotted path of the offending field, e.g. `parameters.lr.min`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl SpecError {
    fn at<T>(spanned: &Spanned<T>, field: impl Into<String>, message: impl Into<String>) -> Self {
        let (line, column) = spanned
            .span()
            .start()
            .map_or((0, 0), |m| (m.line(), m.column()));
        Self {
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The sweep's objective: which metric of which split, and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objective {
    /// The metric.
    pub metric: Metric,
    /// The split it is read on.
    pub split: Split,
    /// Whether higher is better.
    pub maximize: bool,
}

/// One trial to create.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTrial {
    /// Everything that determines the trial, its seed included.
    pub config: TrialConfig,
    /// The configuration's parameters without the seed; repeats share it.
    pub config_key: String,
    /// Which repeat of its configuration (0-based).
    pub repeat: u32,
    /// The order (1-based) in which its configuration was proposed.
    pub proposal: u32,
    /// What proposed it: `grid`, `random` or `tpe`.
    pub proposed_by: &'static str,
}

/// How a sweep makes its configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Every combination of the listed values, made at submission.
    Grid,
    /// `budget` configurations drawn at submission.
    Random,
    /// `budget` configurations proposed one at a time as results arrive.
    Bayes,
}

impl Method {
    /// The name in sweep files and in the store.
    pub fn name(self) -> &'static str {
        match self {
            Method::Grid => "grid",
            Method::Random => "random",
            Method::Bayes => "bayes",
        }
    }

    /// The method of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Method::Grid, Method::Random, Method::Bayes]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// How exactly a sweep's metrics are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Every value as the worker computed it (a 64-bit float).
    Float64,
    /// Each value rounded to the nearest 32-bit float (about 7 significant
    /// digits; whole numbers exact up to 2^24), which halves what a
    /// finished trial's epochs take.
    Float32,
}

impl Precision {
    /// The name in sweep files and in the store.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float64 => "float64",
            Precision::Float32 => "float32",
        }
    }

    /// The precision of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Precision::Float64, Precision::Float32]
            .into_iter()
            .find(|p| p.name() == name)
    }

    /// `value` as stored at this precision. Every NaN is stored as the one
    /// NaN (`f64::NAN`) at 32 bits: a NaN is an undefined metric, whatever
    /// its payload.
    pub fn round(self, value: f64) -> f64 {
        match self {
            Precision::Float64 => value,
            Precision::Float32 if value.is_nan() => f64::NAN,
            Precision::Float32 => f64::from(value as f32),
        }
    }
}

/// A checked, expanded sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPlan {
    /// The sweep's name.
    pub name: String,
    /// Free text from the file.
    pub description: String,
    /// The metric the sweep optimises.
    pub objective: Objective,
    /// How its configurations are made.
    pub method: Method,
    /// The configurations it will try (for grid and random, all of
    /// `trials`' configurations).
    pub budget: u32,
    /// Its early-stopping rule, if any.
    pub early_stopping: Option<proto::v1::EarlyStopping>,
    /// For method bayes, the search that proposes its configurations.
    pub search: Option<Search>,
    /// The epochs results will be read at (`stop_epochs`), in order: the
    /// store keeps a copy of every trial's metrics there.
    pub stop_epochs: Vec<u32>,
    /// How exactly its metrics are stored (`metric_precision`).
    pub precision: Precision,
    /// Configurations x repeats, in configuration order; empty for method
    /// bayes, whose trials its search proposes.
    pub trials: Vec<PlannedTrial>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    budget: Option<Spanned<String>>,
    search_seed: Option<Spanned<String>>,
    startup: Option<Spanned<String>>,
    parallel: Option<Spanned<String>>,
    seed: Option<Spanned<String>>,
    repeats: Option<Spanned<String>>,
    metric: Option<MetricFile>,
    dataset: Spanned<DatasetFile>,
    parameters: Spanned<HashMap<Spanned<String>, ParamFile>>,
    early_stopping: Option<Spanned<early_stopping::EarlyStoppingFile>>,
    stop_epochs: Option<Spanned<Vec<Spanned<String>>>>,
    metric_precision: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricFile {
    name: Spanned<String>,
    split: Option<Spanned<String>>,
    goal: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetFile {
    generated: Option<GeneratedFile>,
    recordings: Option<RecordingsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratedFile {
    seed: u64,
    train: Spanned<u32>,
    test: Spanned<u32>,
    pairing: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingsFile {
    path: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamFile {
    value: Option<Spanned<String>>,
    values: Option<Spanned<Vec<Spanned<String>>>>,
    distribution: Option<Spanned<String>>,
    min: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
}

/// The parameters a sweep may vary or fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Param {
    Init,
    GenInit,
    DiscInit,
    GlobRelu,
    Lr,
    Beta1,
    Beta2,
    BatchSize,
    Epochs,
}

const PARAMS: [(&str, Param); 9] = [
    ("init", Param::Init),
    ("gen_init", Param::GenInit),
    ("disc_init", Param::DiscInit),
    ("glob_relu", Param::GlobRelu),
    ("lr", Param::Lr),
    ("beta1", Param::Beta1),
    ("beta2", Param::Beta2),
    ("batch_size", Param::BatchSize),
    ("epochs", Param::Epochs),
];

/// A parameter's value in one configuration.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Init(InitScheme),
    Bool(bool),
    Float(f64),
    Int(u32),
}

impl Param {
    fn name(self) -> &'static str {
        PARAMS.iter().find(|(_, p)| *p == self).expect("listed").0
    }

    /// Parses one value of this parameter.
    fn parse(self, text: &str) -> Result<Value, String> {
        match self {
            Param::Init | Param::GenInit | Param::DiscInit => {
                parse_init_scheme(text).map(Value::Init)
            }
            Param::GlobRelu => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("expected true or false, got {text:?}")),
            },
            Param::Lr | Param::Beta1 | Param::Beta2 => {
                let x: f64 = text
                    .parse()
                    .map_err(|_| format!("expected a number, got {text:?}"))?;
                self.check_float(x).map(|()| Value::Float(x))
            }
            Param::BatchSize | Param::Epochs => {
                let n: i64 = text
                    .parse()
                    .map_err(|_| format!("expected a whole number, got {text:?}"))?;
                if n < 1 {
                    return Err(format!("must be at least 1, got {n}"));
                }
                let n = u32::try_from(n).map_err(|_| format!("{n} is too large"))?;
                check_count(n.into()).map(|()| Value::Int(n))
            }
        }
    }

    /// The trial configuration's own check of a number (see
    /// [`proto::config`]).
    fn check_float(self, x: f64) -> Result<(), String> {
        match self {
            Param::Lr => check_lr(x),
            Param::Beta1 | Param::Beta2 => check_beta(x),
            _ => Ok(()),
        }
    }
}

/// How a parameter takes its values.
#[derive(Debug, Clone, PartialEq)]
enum Domain {
    Fixed(Value),
    Choice(Vec<Value>),
    Uniform(f64, f64),
    LogUniform(f64, f64),
    IntUniform(u32, u32),
}

/// Parses, checks and expands a sweep file.
pub fn parse(yaml: &str) -> Result<SweepPlan, SpecError> {
    if yaml.len() > limits::MAX_SWEEP_FILE_BYTES {
        return Err(SpecError {
            line: 1,
            column: 1,
            field: "(document)".into(),
            message: format!(
                "the file is {} bytes; at most {} are allowed",
                yaml.len(),
                limits::MAX_SWEEP_FILE_BYTES
            ),
        });
    }
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let file: SweepFile =
        marked_yaml::from_yaml_with_options(0, yaml, options).map_err(load_error)?;
    let name = file.name.trim().to_string();
    if name.is_empty() {
        return Err(SpecError::at(&file.name, "name", "must not be empty"));
    }
    let too_long = |text: &Spanned<String>, field: &str, max: usize| {
        let n = text.chars().count();
        (n > max).then(|| {
            SpecError::at(
                text,
                field,
                format!("is {n} characters long; at most {max} are allowed"),
            )
        })
    };
    if let Some(e) = too_long(&file.name, "name", limits::MAX_NAME_CHARS) {
        return Err(e);
    }
    if let Some(e) = file
        .description
        .as_ref()
        .and_then(|d| too_long(d, "description", limits::MAX_TEXT_CHARS))
    {
        return Err(e);
    }
    let objective = objective(file.metric.as_ref())?;
    let dataset = dataset(&file.dataset)?;
    let repeats = match &file.repeats {
        Some(r) => match whole::<u32>(r, "repeats")? {
            0 => return Err(SpecError::at(r, "repeats", "must be at least 1")),
            n => n,
        },
        None => 1,
    };
    let domains = domains(&file.parameters)?;
    let method = match &file.method {
        None => Method::Grid,
        Some(m) => Method::parse(m.as_str()).ok_or_else(|| {
            SpecError::at(
                m,
                "method",
                format!(
                    "unknown method {:?}; expected grid, random or bayes",
                    m.as_str()
                ),
            )
        })?,
    };
    for (given, field) in [(&file.startup, "startup"), (&file.parallel, "parallel")] {
        if let Some(v) = given.as_ref().filter(|_| method != Method::Bayes) {
            return Err(SpecError::at(
                v,
                field,
                format!("only method bayes takes {field}"),
            ));
        }
    }
    let base_seed = match &file.seed {
        Some(s) => whole::<u64>(s, "seed")?,
        None => 0,
    };
    let search_seed = match &file.search_seed {
        Some(s) => whole::<u64>(s, "search_seed")?,
        None => 0,
    };
    let early_stopping = file
        .early_stopping
        .as_ref()
        .map(|e| early_stopping::rule(e, repeats))
        .transpose()?;
    let (budget, configurations) = if method == Method::Grid {
        if let Some(budget) = &file.budget {
            return Err(SpecError::at(
                budget,
                "budget",
                "method grid tries every combination; only random and bayes take a budget",
            ));
        }
        if let Some((p, span)) = domains.iter().find_map(|(p, (d, span))| {
            matches!(
                d,
                Domain::Uniform(..) | Domain::LogUniform(..) | Domain::IntUniform(..)
            )
            .then_some((p, span))
        }) {
            return Err(SpecError {
                field: format!("parameters.{}.distribution", p.name()),
                message: "distributions need method: random or bayes".into(),
                ..span.clone()
            });
        }
        let configurations = domains
            .iter()
            .map(|(_, (d, _))| match d {
                Domain::Choice(values) => values.len() as u64,
                _ => 1,
            })
            .fold(1u64, u64::saturating_mul);
        check_trials(configurations, repeats, &file.parameters, "parameters")?;
        (configurations as u32, grid(&domains))
    } else {
        let budget = file.budget.as_ref().ok_or_else(|| {
            SpecError::at(
                file.method.as_ref().expect("random and bayes are named"),
                "budget",
                format!("method {} needs a budget", method.name()),
            )
        })?;
        let n = whole::<u32>(budget, "budget")?;
        if n == 0 {
            return Err(SpecError::at(budget, "budget", "must be at least 1"));
        }
        check_trials(u64::from(n), repeats, budget, "budget")?;
        let configurations = match method {
            Method::Random => sample(&domains, n, search_seed),
            _ => Vec::new(),
        };
        (n, configurations)
    };
    let search = (method == Method::Bayes)
        .then(|| {
            Search::new(
                &file,
                Space {
                    domains: domains.clone(),
                    dataset: dataset.clone(),
                    repeats,
                    base_seed,
                },
                search_seed,
                budget,
                objective,
            )
        })
        .transpose()?;
    let mut trials = Vec::new();
    for (i, values) in configurations.iter().enumerate() {
        let (config, key) = configuration(values, &domains, &dataset)?;
        trials.extend(repeated(
            &config,
            &key,
            repeats,
            base_seed,
            i as u32 + 1,
            method.name(),
        ));
    }
    let stop_epochs = stop_epochs(file.stop_epochs.as_ref(), &trials, &domains)?;
    let precision = match &file.metric_precision {
        None => Precision::Float64,
        Some(p) => Precision::parse(p.as_str()).ok_or_else(|| {
            SpecError::at(
                p,
                "metric_precision",
                format!(
                    "unknown precision {:?}; expected float64 (every value exactly, the default) or float32",
                    p.as_str()
                ),
            )
        })?,
    };
    Ok(SweepPlan {
        name,
        description: file.description.map(|d| d.to_string()).unwrap_or_default(),
        objective,
        method,
        budget,
        early_stopping,
        search,
        stop_epochs,
        precision,
        trials,
    })
}

/// The `repeats` trials of one configuration: repeat r has seed
/// `base_seed + r`.
fn repeated(
    config: &TrialConfig,
    key: &str,
    repeats: u32,
    base_seed: u64,
    proposal: u32,
    proposed_by: &'static str,
) -> Vec<PlannedTrial> {
    (0..repeats)
        .map(|repeat| PlannedTrial {
            config: TrialConfig {
                seed: base_seed + u64::from(repeat),
                ..config.clone()
            },
            config_key: key.to_string(),
            repeat,
            proposal,
            proposed_by,
        })
        .collect()
}

/// The epochs of `stop_epochs`, each from 1, named once, in order, and
/// reached by some planned trial, or where the trials are not planned yet
/// (a bayes search), by a trial the search space allows.
fn stop_epochs(
    given: Option<&Spanned<Vec<Spanned<String>>>>,
    trials: &[PlannedTrial],
    domains: &Domains,
) -> Result<Vec<u32>, SpecError> {
    let Some(list) = given else {
        return Ok(Vec::new());
    };
    let field = "stop_epochs";
    if list.is_empty() {
        return Err(SpecError::at(list, field, "name one or more epochs"));
    }
    if list.len() > limits::MAX_STOP_EPOCHS {
        return Err(SpecError::at(
            list,
            field,
            format!(
                "names {} epochs; at most {} are allowed",
                list.len(),
                limits::MAX_STOP_EPOCHS
            ),
        ));
    }
    let last = trials
        .iter()
        .map(|t| t.config.epochs)
        .max()
        .unwrap_or_else(|| most_epochs(domains));
    let mut epochs: Vec<u32> = Vec::with_capacity(list.len());
    for given in list.iter() {
        let epoch = whole::<u32>(given, field)?;
        let refusal = if epoch == 0 {
            Some("epochs count from 1".to_string())
        } else if epochs.contains(&epoch) {
            Some(format!("epoch {epoch} is named twice"))
        } else {
            (epoch > last).then(|| format!("epoch {epoch} is past every trial's last ({last})"))
        };
        if let Some(message) = refusal {
            return Err(SpecError::at(given, field, message));
        }
        epochs.push(epoch);
    }
    epochs.sort_unstable();
    Ok(epochs)
}

/// The most epochs a trial of the search space runs: the largest value of
/// its `epochs`, or the notebook's where the sweep does not set them.
fn most_epochs(domains: &Domains) -> u32 {
    let int = |v: &Value| match v {
        Value::Int(n) => *n,
        _ => unreachable!("epochs are parsed as whole numbers"),
    };
    match domains.iter().find(|(p, _)| *p == Param::Epochs) {
        None => trial_config::notebook_defaults().epochs,
        Some((_, (domain, _))) => match domain {
            Domain::Fixed(v) => int(v),
            Domain::Choice(vs) => vs.iter().map(int).max().unwrap_or(0),
            Domain::IntUniform(_, most) => *most,
            Domain::Uniform(..) | Domain::LogUniform(..) => {
                unreachable!("epochs take whole numbers only")
            }
        },
    }
}

/// A whole number (not negative) of a top-level field such as `repeats`.
fn whole<T: std::str::FromStr>(value: &Spanned<String>, field: &str) -> Result<T, SpecError> {
    value.trim().parse().map_err(|_| {
        SpecError::at(
            value,
            field,
            format!("expected a whole number, got {:?}", value.as_str()),
        )
    })
}

/// Refuses a sweep of more than [`limits::MAX_TRIALS`] trials before any is
/// made.
fn check_trials<T>(
    configurations: u64,
    repeats: u32,
    at: &Spanned<T>,
    field: &str,
) -> Result<(), SpecError> {
    let trials = configurations.saturating_mul(u64::from(repeats));
    if trials > limits::MAX_TRIALS {
        return Err(SpecError::at(
            at,
            field,
            format!(
                "the sweep expands to {trials} trials ({configurations} configurations x {repeats} repeats); at most {} are allowed",
                limits::MAX_TRIALS
            ),
        ));
    }
    Ok(())
}

fn load_error(e: marked_yaml::FromYamlError) -> SpecError {
    match e {
        marked_yaml::FromYamlError::ParseYaml(load) => {
            let (line, column, field, message) = match &load {
                marked_yaml::LoadError::DuplicateKey(inner) => {
                    let mark = inner.key.span().start().copied();
                    (
                        mark.map_or(0, |m| m.line()),
                        mark.map_or(0, |m| m.column()),
                        inner.key.as_str().to_string(),
                        "duplicate key".to_string(),
                    )
                }
                other => {
                    let text = other.to_string();
                    let (line, column) = first_marker(&text);
                    (
                        line,
                        column,
                        "(document)".to_string(),
                        format!("invalid YAML: {text}"),
                    )
                }
            };
            SpecError {
                line,
                column,
                field,
                message,
            }
        }
        marked_yaml::FromYamlError::FromNode(node) => {
            let mark = node.start_mark();
            SpecError {
                line: mark.map_or(0, |m| m.line()),
                column: mark.map_or(0, |m| m.column()),
                field: node.path().unwrap_or("(document)").to_string(),
                message: node.into_inner().to_string(),
            }
        }
    }
}

/// The `line:column` in a loader message such as `"2:5: ..."`.
fn first_marker(text: &str) -> (usize, usize) {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let line = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let column = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (line, column)
}

fn objective(metric: Option<&MetricFile>) -> Result<Objective, SpecError> {
    let Some(m) = metric else {
        return Ok(Objective {
            metric: Metric::BoardAccuracy,
            split: Split::Test,
            maximize: true,
        });
    };
    let split = match &m.split {
        None => Split::Test,
        Some(s) => Split::parse(s).map_err(|e| SpecError::at(s, "metric.split", e))?,
    };
    let metric =
        Metric::parse(&m.name, split).map_err(|e| SpecError::at(&m.name, "metric.name", e))?;
    let maximize = match &m.goal {
        None => metric.maximize(),
        Some(g) if g.as_str() == "maximize" => true,
        Some(g) if g.as_str() == "minimize" => false,
        Some(g) => {
            return Err(SpecError::at(
                g,
                "metric.goal",
                "expected maximize or minimize",
            ));
        }
    };
    Ok(Objective {
        metric,
        split,
        maximize,
    })
}

fn dataset(d: &Spanned<DatasetFile>) -> Result<Dataset, SpecError> {
    let source = match (&d.generated, &d.recordings) {
        (Some(g), None) => {
            for (n, field) in [
                (&g.train, "dataset.generated.train"),
                (&g.test, "dataset.generated.test"),
            ] {
                if **n == 0 {
                    return Err(SpecError::at(n, field, "must be at least 1"));
                }
            }
            let pairing = match &g.pairing {
                None => Pairing::NonOverlapping,
                Some(p) => match p.as_str() {
                    "non-overlapping" => Pairing::NonOverlapping,
                    "overlapping" => Pairing::Overlapping,
                    _ => {
                        return Err(SpecError::at(
                            p,
                            "dataset.generated.pairing",
                            "expected non-overlapping or overlapping",
                        ));
                    }
                },
            };
            Source::Generated(GeneratedDataset {
                seed: g.seed,
                train: *g.train,
                test: *g.test,
                pairing: pairing.into(),
            })
        }
        (None, Some(r)) if !r.path.trim().is_empty() => Source::RecordingsPath(r.path.to_string()),
        (None, Some(r)) => {
            return Err(SpecError::at(
                &r.path,
                "dataset.recordings.path",
                "must not be empty",
            ));
        }
        _ => {
            return Err(SpecError::at(
                d,
                "dataset",
                "give exactly one of generated or recordings",
            ));
        }
    };
    Ok(Dataset {
        source: Some(source),
    })
}

type Domains = Vec<(Param, (Domain, SpecError))>;

/// What turns a combination of parameter values into trials.
#[derive(Debug, Clone, PartialEq)]
struct Space {
    domains: Domains,
    dataset: Dataset,
    repeats: u32,
    base_seed: u64,
}

fn domains(params: &Spanned<HashMap<Spanned<String>, ParamFile>>) -> Result<Domains, SpecError> {
    let mut out: Domains = Vec::new();
    for (key, spec) in params.iter() {
        let param = PARAMS
            .iter()
            .find(|(n, _)| *n == key.as_str())
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                let known: Vec<&str> = PARAMS.iter().map(|(n, _)| *n).collect();
                SpecError::at(
                    key,
                    format!("parameters.{}", key.as_str()),
                    format!("unknown parameter; expected one of {}", known.join(", ")),
                )
            })?;
        let field = |sub: &str| format!("parameters.{}{sub}", key.as_str());
        let value = |s: &Spanned<String>, sub: &str| {
            param.parse(s).map_err(|m| SpecError::at(s, field(sub), m))
        };
        let domain = match (&spec.value, &spec.values, &spec.distribution) {
            (Some(v), None, None) => Domain::Fixed(value(v, ".value")?),
            (None, Some(vs), None) => {
                if vs.is_empty() {
                    return Err(SpecError::at(
                        vs,
                        field(".values"),
                        "must list at least one value",
                    ));
                }
                let parsed = vs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| value(v, &format!(".values[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Domain::Choice(parsed)
            }
            (None, None, Some(dist)) => distribution(param, dist, spec, &field)?,
            _ => {
                return Err(SpecError::at(
                    key,
                    field(""),
                    "give exactly one of value, values or distribution",
                ));
            }
        };
        if !matches!(
            domain,
            Domain::Uniform(..) | Domain::LogUniform(..) | Domain::IntUniform(..)
        ) && (spec.min.is_some() || spec.max.is_some())
        {
            return Err(SpecError::at(
                key,
                field(""),
                "min and max go with a distribution",
            ));
        }
        out.push((param, (domain, SpecError::at(key, field(""), ""))));
    }
    out.sort_by_key(|(p, _)| *p);
    let has = |p| out.iter().any(|(q, _)| *q == p);
    if has(Param::Init) && (has(Param::GenInit) || has(Param::DiscInit)) {
        let (_, (_, at)) = out
            .iter()
            .find(|(p, _)| *p == Param::Init)
            .expect("present");
        return Err(SpecError {
            message: "init sets both networks; give either init or gen_init/disc_init".into(),
            ..at.clone()
        });
    }
    Ok(out)
}

fn distribution(
    param: Param,
    dist: &Spanned<String>,
    spec: &ParamFile,
    field: &dyn Fn(&str) -> String,
) -> Result<Domain, SpecError> {
    let bound =
        |b: &Option<Spanned<String>>, sub: &str| -> Result<(f64, Spanned<String>), SpecError> {
            let b = b.as_ref().ok_or_else(|| {
                SpecError::at(
                    dist,
                    field(sub),
                    "missing; a distribution needs min and max",
                )
            })?;
            let x: f64 = b.parse().map_err(|_| {
                SpecError::at(
                    b,
                    field(sub),
                    format!("expected a number, got {:?}", b.as_str()),
                )
            })?;
            Ok((x, b.clone()))
        };
    let ((min, min_at), (max, max_at)) = (bound(&spec.min, ".min")?, bound(&spec.max, ".max")?);
    if min > max {
        return Err(SpecError::at(
            &min_at,
            field(".min"),
            format!("min {min} is greater than max {max}"),
        ));
    }
    let float_param = matches!(param, Param::Lr | Param::Beta1 | Param::Beta2);
    let int_param = matches!(param, Param::BatchSize | Param::Epochs);
    if float_param {
        for (x, at, sub) in [(min, &min_at, ".min"), (max, &max_at, ".max")] {
            param
                .check_float(x)
                .map_err(|m| SpecError::at(at, field(sub), m))?;
        }
    }
    match dist.as_str() {
        "uniform" if float_param => Ok(Domain::Uniform(min, max)),
        "log_uniform" if float_param && min > 0.0 => Ok(Domain::LogUniform(min, max)),
        "log_uniform" if float_param => Err(SpecError::at(
            &min_at,
            field(".min"),
            "log_uniform needs min > 0",
        )),
        "int_uniform" if int_param => {
            let int = |x: f64| {
                (x.fract() == 0.0 && x >= 1.0 && x <= f64::from(u32::MAX))
                    .then_some(x as u32)
                    .ok_or_else(|| {
                        SpecError::at(
                            &min_at,
                            field(""),
                            format!("{x} is not a whole number >= 1"),
                        )
                    })
            };
            Ok(Domain::IntUniform(int(min)?, int(max)?))
        }
        "uniform" | "log_uniform" | "int_uniform" => Err(SpecError::at(
            dist,
            field(".distribution"),
            format!("{} does not suit parameter {}", dist.as_str(), param.name()),
        )),
        other => Err(SpecError::at(
            dist,
            field(".distribution"),
            format!("unknown distribution {other:?}; expected uniform, log_uniform or int_uniform"),
        )),
    }
}

/// Every combination of the parameters' values, in parameter order.
fn grid(domains: &Domains) -> Vec<Vec<Value>> {
    let mut configs = vec![Vec::new()];
    for (_, (domain, _)) in domains {
        let values = match domain {
            Domain::Fixed(v) => vec![v.clone()],
            Domain::Choice(vs) => vs.clone(),
            _ => unreachable!("grid sweeps are checked to hold no distributions"),
        };
        configs = configs
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(v.clone());
                    c
                })
            })
            .collect();
    }
    configs
}

/// `budget` configurations drawn with the search's own seed.
fn sample(domains: &Domains, budget: u32, seed: u64) -> Vec<Vec<Value>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..budget)
        .map(|_| {
            domains
                .iter()
                .map(|(_, (domain, _))| match domain {
                    Domain::Fixed(v) => v.clone(),
                    Domain::Choice(vs) => vs[rng.random_range(0..vs.len())].clone(),
                    Domain::Uniform(a, b) => Value::Float(a + (b - a) * rng.random::<f64>()),
                    Domain::LogUniform(a, b) => {
                        Value::Float((a.ln() + (b.ln() - a.ln()) * rng.random::<f64>()).exp())
                    }
                    Domain::IntUniform(a, b) => Value::Int(rng.random_range(*a..=*b)),
                })
                .collect()
        })
        .collect()
}

/// The trial configuration (seed 0) and configuration key of one
/// combination of values; the notebook's settings fill what is not given,
/// and the whole is checked by [`proto::config::validate`].
fn configuration(
    values: &[Value],
    domains: &Domains,
    dataset: &Dataset,
) -> Result<(TrialConfig, String), SpecError> {
    let mut config = TrialConfig {
        dataset: Some(dataset.clone()),
        ..trial_config::notebook_defaults()
    };
    let mut glob_relu = None;
    for ((param, _), value) in domains.iter().zip(values) {
        match (param, value) {
            (Param::Init, Value::Init(s)) => {
                config.gen_init = Some(*s);
                config.disc_init = Some(*s);
            }
            (Param::GenInit, Value::Init(s)) => config.gen_init = Some(*s),
            (Param::DiscInit, Value::Init(s)) => config.disc_init = Some(*s),
            (Param::GlobRelu, Value::Bool(b)) => glob_relu = Some(*b),
            (Param::Lr, Value::Float(x)) => config.lr = *x,
            (Param::Beta1, Value::Float(x)) => config.beta1 = *x,
            (Param::Beta2, Value::Float(x)) => config.beta2 = *x,
            (Param::BatchSize, Value::Int(n)) => config.batch_size = *n,
            (Param::Epochs, Value::Int(n)) => config.epochs = *n,
            _ => unreachable!("values are parsed per parameter"),
        }
    }
    // Smart init of the generator implies its ReLU unless the file says.
    let smart = parse_init_scheme("smart").expect("a known name");
    config.glob_relu = glob_relu.unwrap_or(config.gen_init == Some(smart));
    trial_config::validate(&config).map_err(|e| {
        let param = |p: &Param| match p {
            Param::Init => ["gen_init", "disc_init"].contains(&e.field),
            _ => p.name() == e.field,
        };
        let (_, (_, at)) = domains
            .iter()
            .find(|(p, _)| param(p))
            .expect("only a given parameter can be invalid");
        SpecError {
            message: e.message.clone(),
            ..at.clone()
        }
    })?;
    Ok((config.clone(), config_key(&config)))
}

/// `name=value` pairs of everything that defines a configuration but the
/// seed and the dataset (shared by the whole sweep), sorted by name.
pub fn config_key(c: &TrialConfig) -> String {
    let init = |s: &Option<InitScheme>| {
        s.as_ref()
            .and_then(proto::names::init_scheme_name)
            .unwrap_or_default()
    };
    format!(
        "batch_size={} beta1={} beta2={} disc_init={} epochs={} gen_init={} glob_relu={} lr={}",
        c.batch_size,
        c.beta1,
        c.beta2,
        init(&c.disc_init),
        c.epochs,
        init(&c.gen_init),
        c.glob_relu,
        c.lr
    )
}
