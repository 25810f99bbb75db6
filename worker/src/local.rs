//! `worker train`: one trial run locally from flags or a small YAML file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use serde::Deserialize;

use crate::checkpoint;
use crate::dataset::DatasetSpec;
use crate::init::InitScheme;
use crate::train::{TrainConfig, Trainer};

/// A local trial file: every field optional, flags override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialFile {
    #[serde(default, with = "serde_yaml_ng::with::singleton_map")]
    pub dataset: Option<DatasetSpec>,
    pub gen_init: Option<String>,
    pub disc_init: Option<String>,
    pub glob_relu: Option<bool>,
    pub lr: Option<f64>,
    pub beta1: Option<f64>,
    pub beta2: Option<f64>,
    pub batch_size: Option<usize>,
    pub epochs: Option<u32>,
    pub seed: Option<u64>,
}

impl TrialFile {
    /// Reads a YAML trial file; errors name the line and column.
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml_ng::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// The file's settings over the notebook's defaults, checked.
    pub fn resolve(self) -> Result<(DatasetSpec, TrainConfig)> {
        let defaults = TrainConfig::default();
        let scheme = |s: Option<String>| -> Result<InitScheme> {
            s.map_or(Ok(InitScheme::Default), |s| {
                s.parse().map_err(anyhow::Error::msg)
            })
        };
        let gen_init = scheme(self.gen_init)?;
        let config = TrainConfig {
            gen_init,
            disc_init: scheme(self.disc_init)?,
            glob_relu: self.glob_relu.unwrap_or(gen_init == InitScheme::Smart),
            lr: self.lr.unwrap_or(defaults.lr),
            beta1: self.beta1.unwrap_or(defaults.beta1),
            beta2: self.beta2.unwrap_or(defaults.beta2),
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            epochs: self.epochs.unwrap_or(defaults.epochs),
            seed: self.seed.unwrap_or(defaults.seed),
        };
        validate(&config)?;
        let dataset = self.dataset.context(
            "no dataset: give --data DIR, --generate SEED:TRAIN:TEST or `dataset:` in the file",
        )?;
        Ok((dataset, config))
    }
}

/// Checks what the types cannot: positive sizes, a sane learning rate and
/// betas, and smart init only with the ReLU it was designed for.
pub fn validate(c: &TrainConfig) -> Result<()> {
    if c.epochs == 0 {
        bail!("epochs must be at least 1");
    }
    if c.batch_size == 0 {
        bail!("batch_size must be at least 1");
    }
    if !(c.lr.is_finite() && c.lr > 0.0) {
        bail!("lr must be a positive number, got {}", c.lr);
    }
    for (name, beta) in [("beta1", c.beta1), ("beta2", c.beta2)] {
        if !(0.0..1.0).contains(&beta) {
            bail!("{name} must lie in [0, 1), got {beta}");
        }
    }
    if c.gen_init == InitScheme::Smart && !c.glob_relu {
        bail!(
            "smart init of the generator needs glob_relu: true (the notebook's GenWithSmartInit)"
        );
    }
    Ok(())
}

/// Parses `cpu` or `cuda:N`.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = name
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .with_context(|| format!("unknown device {name:?}; expected cpu or cuda:N"))?;
            Device::new_cuda(ordinal).with_context(|| {
                format!("opening {name} (the worker must be built with --features cuda)")
            })
        }
    }
}

/// Where a local run writes and what it resumes from.
#[derive(Debug, Default)]
pub struct RunOptions {
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
    let device = device(&opts.device)?;
    let data = dataset.load()?;
    let mut trainer = Trainer::new(config, &data.train, &data.test, &device)?;
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
