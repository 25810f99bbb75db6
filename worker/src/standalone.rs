//! `worker train`: one trial trained without a coordinator, from flags or a
//! small YAML file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use proto::names::{init_scheme_name, parse_init_scheme};
use proto::v1 as pb;
use serde::Deserialize;

use crate::checkpoint;
use crate::dataset::DatasetSpec;
use crate::train::{TrainConfig, Trainer};

/// A local trial file: every field optional, flags override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialFile {
    /// Recordings or a generated dataset.
    #[serde(default, with = "serde_yaml_ng::with::singleton_map")]
    pub dataset: Option<DatasetSpec>,
    /// The generator's init scheme by name.
    pub gen_init: Option<String>,
    /// The discriminator's init scheme by name.
    pub disc_init: Option<String>,
    /// The ReLU after the generator's `glob.9` (implied by smart init).
    pub glob_relu: Option<bool>,
    /// Adam's learning rate.
    pub lr: Option<f64>,
    /// Adam's first beta.
    pub beta1: Option<f64>,
    /// Adam's second beta.
    pub beta2: Option<f64>,
    /// Items per training step.
    pub batch_size: Option<usize>,
    /// Epochs to train.
    pub epochs: Option<u32>,
    /// Seed of the weights, the data order and the noise.
    pub seed: Option<u64>,
}

impl TrialFile {
    /// Reads a YAML trial file; errors name the line and column.
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml_ng::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// The file's settings over the notebook's defaults, checked by the
    /// same validation as a sweep's trials ([`proto::config::validate`]).
    pub fn resolve(self) -> Result<(DatasetSpec, TrainConfig)> {
        let defaults = proto::config::notebook_defaults();
        let scheme = |s: Option<String>, default| -> Result<Option<pb::InitScheme>> {
            s.map_or(Ok(default), |s| {
                parse_init_scheme(&s).map(Some).map_err(anyhow::Error::msg)
            })
        };
        let gen_init = scheme(self.gen_init, defaults.gen_init)?;
        let smart = gen_init
            .as_ref()
            .and_then(init_scheme_name)
            .is_some_and(|n| n == "smart");
        let batch_size = match self.batch_size {
            Some(n) => u32::try_from(n).context("batch_size is too large")?,
            None => defaults.batch_size,
        };
        let trial = pb::TrialConfig {
            gen_init,
            disc_init: scheme(self.disc_init, defaults.disc_init)?,
            glob_relu: self.glob_relu.unwrap_or(smart),
            lr: self.lr.unwrap_or(defaults.lr),
            beta1: self.beta1.unwrap_or(defaults.beta1),
            beta2: self.beta2.unwrap_or(defaults.beta2),
            batch_size,
            epochs: self.epochs.unwrap_or(defaults.epochs),
            seed: self.seed.unwrap_or(defaults.seed),
            dataset: None,
        };
        let config = TrainConfig::try_from(&trial).map_err(anyhow::Error::msg)?;
        let dataset = self.dataset.context(
            "no dataset: give --data DIR, --generate SEED:TRAIN:TEST or `dataset:` in the file",
        )?;
        Ok((dataset, config))
    }
}

/// Where a local run writes and what it resumes from.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// JSON lines of epoch reports; stdout when `None`.
    pub out: Option<PathBuf>,
    /// Save the trainer state here after the last epoch.
    pub save: Option<PathBuf>,
    /// Start from this saved state instead of from scratch.
    pub resume: Option<PathBuf>,
}

/// Trains the trial, writing one JSON line of metrics per epoch.
pub fn run(dataset: &DatasetSpec, config: TrainConfig, opts: &RunOptions) -> Result<()> {
    let device = crate::device::parse(&opts.device)?;
    let mut trainer = Trainer::new(config, std::sync::Arc::new(dataset.load()?), &device)?;
    if let Some(path) = &opts.resume {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        checkpoint::load(&mut trainer, &bytes)
            .with_context(|| format!("resuming from {}", path.display()))?;
    }
    let mut out: Box<dyn Write> = match &opts.out {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let bar = indicatif::ProgressBar::new(u64::from(config.epochs)).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} epoch {pos}/{len} {msg} [{elapsed} < {eta}]",
        )
        .expect("a valid template"),
    );
    bar.set_position(u64::from(trainer.epoch()));
    while trainer.epoch() < config.epochs {
        let report = trainer.run_epoch()?;
        writeln!(out, "{}", report.to_json())?;
        out.flush()?;
        bar.set_message(format!(
            "test board accuracy {:.4}, {:.1} s/epoch",
            report.test.counts.board_accuracy(),
            report.seconds
        ));
        bar.inc(1);
    }
    bar.finish();
    if let Some(path) = &opts.save {
        std::fs::write(path, checkpoint::save(&trainer)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
