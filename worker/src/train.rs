//! One trial's training: seeded shuffling and noise, an epoch of steps, and
//! the evaluation of both splits after every epoch.

use std::time::Instant;

use candle_core::{D, DType, Device, Result, Tensor};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::gan::{Gan, GanConfig, zero_gradients};
use crate::init::InitScheme;
use crate::layers::{Pass, bce_with_logits_items};
use crate::metrics::{BoardCounts, SplitMetrics};
use crate::model::Z_DIM;
use crate::optim::AdamConfig;
use crate::split::Split;
use crate::tetris::CELLS;

/// Everything that determines a trial's training, but the data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub gen_init: InitScheme,
    pub disc_init: InitScheme,
    /// The smart variant's ReLU after the generator's `glob.9`.
    pub glob_relu: bool,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub batch_size: usize,
    pub epochs: u32,
    pub seed: u64,
}

impl Default for TrainConfig {
    /// The notebook's settings (`proto::notebook_defaults`).
    fn default() -> Self {
        TrainConfig::try_from(&proto::notebook_defaults())
            .expect("the notebook's settings are valid")
    }
}

impl TrainConfig {
    fn gan(&self) -> GanConfig {
        GanConfig {
            gen_init: self.gen_init,
            disc_init: self.disc_init,
            glob_relu: self.glob_relu,
            adam: AdamConfig {
                lr: self.lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: 1e-8,
            },
        }
    }
}

/// Items evaluated per forward pass; eval-mode BatchNorm makes results
/// independent of it.
pub const EVAL_BATCH: usize = 128;

/// What one epoch produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// 1-based: the number of epochs trained so far.
    pub epoch: u32,
    pub train: SplitMetrics,
    pub test: SplitMetrics,
    /// Mean over the epoch's steps of the step losses.
    pub step_disc_loss: f64,
    pub step_gen_loss: f64,
    /// Exactly-zero gradient entries in the epoch's last step.
    pub gen_zero_grads: u64,
    pub disc_zero_grads: u64,
    /// Wall time of training plus evaluation.
    pub seconds: f64,
    /// Wall time of the training steps alone.
    pub train_seconds: f64,
    /// Training items per second of the whole epoch.
    pub items_per_second: f64,
}

impl EpochReport {
    /// Every metric as (split, name, value), as stored and reported.
    pub fn metrics(&self) -> Vec<(&'static str, &'static str, f64)> {
        let mut all: Vec<_> = self
            .train
            .named()
            .into_iter()
            .map(|(n, v)| ("train", n, v))
            .chain(self.test.named().into_iter().map(|(n, v)| ("test", n, v)))
            .collect();
        all.extend([
            ("train", "step_disc_loss", self.step_disc_loss),
            ("train", "step_gen_loss", self.step_gen_loss),
            ("train", "gen_zero_grads", self.gen_zero_grads as f64),
            ("train", "disc_zero_grads", self.disc_zero_grads as f64),
            ("train", "epoch_seconds", self.seconds),
            ("train", "train_seconds", self.train_seconds),
            ("train", "items_per_second", self.items_per_second),
        ]);
        all
    }

    /// `{"epoch": n, "train": {metric: value}, "test": {metric: value}}`;
    /// NaN becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut splits = serde_json::Map::new();
        for (split, name, value) in self.metrics() {
            let entry = splits
                .entry(split)
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            entry[name] = serde_json::json!(value);
        }
        splits.insert("epoch".into(), self.epoch.into());
        serde_json::Value::Object(splits)
    }
}

/// A trial in progress.
#[derive(Debug)]
pub struct Trainer<'d> {
    pub config: TrainConfig,
    pub gan: Gan,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) epoch: u32,
    train: &'d Split,
    test: &'d Split,
    pub(crate) device: Device,
}

impl<'d> Trainer<'d> {
    /// A fresh trial: weights drawn from the trial's seed.
    pub fn new(
        config: TrainConfig,
        train: &'d Split,
        test: &'d Split,
        device: &Device,
    ) -> Result<Self> {
        if train.is_empty() {
            candle_core::bail!("the train split has no items");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let gan = Gan::new(&config.gan(), &mut rng, device)?;
        Ok(Self {
            config,
            gan,
            rng,
            epoch: 0,
            train,
            test,
            device: device.clone(),
        })
    }

    /// Epochs trained so far.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Trains one epoch over the shuffled train split, then evaluates both
    /// splits.
    pub fn run_epoch(&mut self) -> Result<EpochReport> {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(&mut self.rng);
        let (mut disc_loss, mut gen_loss, mut steps) = (0.0, 0.0, 0);
        let mut zero_grads = (0, 0);
        let batches = order.chunks(self.config.batch_size);
        let last = batches.len() - 1;
        for (i, batch) in batches.enumerate() {
            let (x, y) = batch_tensors(self.train, batch, &self.device)?;
            let z = self.noise(batch.len())?;
            let out = self.gan.step(&x, &y, &z)?;
            disc_loss += f64::from(out.loss_d_real + out.loss_d_fake);
            gen_loss += f64::from(out.loss_g);
            steps += 1;
            if i == last {
                zero_grads = (
                    zero_gradients(&self.gan.generator.params, &out.gen_grads)?,
                    zero_gradients(&self.gan.discriminator.params, &out.disc_grads)?,
                );
            }
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let train = self.evaluate(self.train)?;
        let test = self.evaluate(self.test)?;
        self.epoch += 1;
        let seconds = start.elapsed().as_secs_f64();
        Ok(EpochReport {
            epoch: self.epoch,
            train,
            test,
            step_disc_loss: disc_loss / f64::from(steps),
            step_gen_loss: gen_loss / f64::from(steps),
            gen_zero_grads: zero_grads.0,
            disc_zero_grads: zero_grads.1,
            seconds,
            train_seconds,
            items_per_second: self.train.len() as f64 / seconds,
        })
    }

    /// The notebook's `test_loop` over all items of `split`, in large
    /// batches with running statistics.
    pub fn evaluate(&mut self, split: &Split) -> Result<SplitMetrics> {
        let mut counts = BoardCounts::default();
        let (mut disc_loss, mut gen_loss, mut disc_right) = (0.0, 0.0, 0u64);
        let all: Vec<usize> = (0..split.len()).collect();
        for batch in all.chunks(EVAL_BATCH) {
            let (x, y) = batch_tensors(split, batch, &self.device)?;
            let z = self.noise(batch.len())?;
            let real = self.gan.discriminator.forward(&x, &y, Pass::EVAL)?;
            let y_fake = self.gan.generator.forward(&x, &z, Pass::EVAL)?;
            let fake = self.gan.discriminator.forward(&x, &y_fake, Pass::EVAL)?;
            disc_loss += sum(&bce_with_logits_items(&real, 1.0)?)?
                + sum(&bce_with_logits_items(&fake, 0.0)?)?;
            gen_loss += sum(&bce_with_logits_items(&fake, 1.0)?)?;
            disc_right += count(&real.gt(0.0)?)? + count(&fake.le(0.0)?)?;
            let pred: Vec<u8> = y_fake
                .argmax(D::Minus1)?
                .to_dtype(DType::U8)?
                .flatten_all()?
                .to_vec1()?;
            for (p, &item) in pred.chunks_exact(CELLS).zip(batch) {
                counts.add(split.x(item), split.y(item), p);
            }
        }
        let n = split.len() as f64;
        Ok(SplitMetrics {
            disc_loss: disc_loss / n,
            gen_loss: gen_loss / n,
            disc_accuracy: disc_right as f64 / (2.0 * n),
            counts,
        })
    }

    /// `(n, 4)` noise, uniform in [0, 1), from the trial's generator.
    fn noise(&mut self, n: usize) -> Result<Tensor> {
        let values: Vec<f32> = (0..n * Z_DIM).map(|_| self.rng.random::<f32>()).collect();
        Tensor::from_vec(values, (n, Z_DIM), &self.device)
    }
}

fn sum(t: &Tensor) -> Result<f64> {
    Ok(f64::from(t.sum_all()?.to_scalar::<f32>()?))
}

fn count(mask: &Tensor) -> Result<u64> {
    Ok(u64::from(
        mask.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()?,
    ))
}

/// One-hot `(B, 220, 2)` tensors of x and y for the items `indices`.
pub fn batch_tensors(
    split: &Split,
    indices: &[usize],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let one_hot = |board: &[u8], out: &mut Vec<f32>| {
        for &c in board {
            out.extend([f32::from(1 - c), f32::from(c)]);
        }
    };
    let (mut x, mut y) = (
        Vec::with_capacity(indices.len() * CELLS * 2),
        Vec::with_capacity(indices.len() * CELLS * 2),
    );
    for &i in indices {
        one_hot(split.x(i), &mut x);
        one_hot(split.y(i), &mut y);
    }
    let shape = (indices.len(), CELLS, 2);
    Ok((
        Tensor::from_vec(x, shape, device)?,
        Tensor::from_vec(y, shape, device)?,
    ))
}

impl TryFrom<&proto::v1::TrialConfig> for TrainConfig {
    type Error = String;

    /// The training settings of a leased trial, checked as `worker train`
    /// checks its own.
    fn try_from(c: &proto::v1::TrialConfig) -> std::result::Result<Self, String> {
        let scheme = |s: &Option<proto::v1::InitScheme>, net: &str| {
            InitScheme::try_from(
                s.as_ref()
                    .ok_or_else(|| format!("the trial names no {net} init"))?,
            )
        };
        let config = TrainConfig {
            gen_init: scheme(&c.gen_init, "generator")?,
            disc_init: scheme(&c.disc_init, "discriminator")?,
            glob_relu: c.glob_relu,
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            batch_size: c.batch_size as usize,
            epochs: c.epochs,
            seed: c.seed,
        };
        crate::local::validate(&config).map_err(|e| e.to_string())?;
        Ok(config)
    }
}
