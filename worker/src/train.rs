//! One trial's training: seeded shuffling and noise, an epoch of steps, and
//! the evaluation of both splits after every epoch.

use std::time::Instant;

use candle_core::{D, DType, Device, Result, Tensor};
use proto::metrics::{Metric, MetricValue, Split as SplitName};
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
    /// The generator's init scheme.
    pub gen_init: InitScheme,
    /// The discriminator's init scheme.
    pub disc_init: InitScheme,
    /// The smart variant's ReLU after the generator's `glob.9`.
    pub glob_relu: bool,
    /// Adam's learning rate.
    pub lr: f64,
    /// Adam's first beta.
    pub beta1: f64,
    /// Adam's second beta.
    pub beta2: f64,
    /// Items per training step.
    pub batch_size: usize,
    /// Epochs to train.
    pub epochs: u32,
    /// Seed of the weights, the data order and the noise.
    pub seed: u64,
}

impl Default for TrainConfig {
    /// The notebook's settings (`proto::config::notebook_defaults`).
    fn default() -> Self {
        TrainConfig::try_from(&proto::config::notebook_defaults())
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
    /// Evaluation of the train split after the epoch.
    pub train: SplitMetrics,
    /// Evaluation of the test split after the epoch.
    pub test: SplitMetrics,
    /// Mean over the epoch's steps of the discriminator's step loss.
    pub step_disc_loss: f64,
    /// Mean over the epoch's steps of the generator's step loss.
    pub step_gen_loss: f64,
    /// Exactly-zero entries of the generator's gradients in the last step.
    pub gen_zero_grads: u64,
    /// Exactly-zero entries of the discriminator's gradients in the last step.
    pub disc_zero_grads: u64,
    /// Wall time of training plus evaluation.
    pub seconds: f64,
    /// Wall time of the training steps alone.
    pub train_seconds: f64,
    /// Training items per second of the whole epoch.
    pub items_per_second: f64,
}

impl EpochReport {
    /// Every metric of both splits, as stored and reported.
    pub fn metrics(&self) -> Vec<MetricValue> {
        let evaluated = |split: SplitName, m: &SplitMetrics| {
            m.values().map(|(metric, value)| MetricValue {
                split,
                metric,
                value,
            })
        };
        let step = [
            (Metric::StepDiscLoss, self.step_disc_loss),
            (Metric::StepGenLoss, self.step_gen_loss),
            (Metric::GenZeroGrads, self.gen_zero_grads as f64),
            (Metric::DiscZeroGrads, self.disc_zero_grads as f64),
            (Metric::EpochSeconds, self.seconds),
            (Metric::TrainSeconds, self.train_seconds),
            (Metric::ItemsPerSecond, self.items_per_second),
        ]
        .map(|(metric, value)| MetricValue {
            split: SplitName::Train,
            metric,
            value,
        });
        evaluated(SplitName::Train, &self.train)
            .into_iter()
            .chain(evaluated(SplitName::Test, &self.test))
            .chain(step)
            .collect()
    }

    /// `{"epoch": n, "train": {metric: value}, "test": {metric: value}}`;
    /// NaN becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut splits = serde_json::Map::new();
        for m in self.metrics() {
            let entry = splits
                .entry(m.split.name())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            entry[m.metric.name()] = serde_json::json!(m.value);
        }
        splits.insert("epoch".into(), self.epoch.into());
        serde_json::Value::Object(splits)
    }
}

/// A trial in progress.
#[derive(Debug)]
pub struct Trainer<'d> {
    /// What the trial trains.
    pub config: TrainConfig,
    /// Both networks and their optimisers.
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

    /// The split the trial is evaluated on besides its train split.
    pub fn test_split(&self) -> &Split {
        self.test
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
                    zero_gradients(&self.gan.generator.tensors, &out.gen_grads)?,
                    zero_gradients(&self.gan.discriminator.tensors, &out.disc_grads)?,
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

    /// The training settings of a trial, checked by
    /// [`proto::config::validate`].
    fn try_from(c: &proto::v1::TrialConfig) -> std::result::Result<Self, String> {
        proto::config::validate(c).map_err(|e| e.to_string())?;
        let scheme = |s: &Option<proto::v1::InitScheme>| {
            InitScheme::try_from(s.as_ref().expect("validated"))
        };
        Ok(TrainConfig {
            gen_init: scheme(&c.gen_init)?,
            disc_init: scheme(&c.disc_init)?,
            glob_relu: c.glob_relu,
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            batch_size: c.batch_size as usize,
            epochs: c.epochs,
            seed: c.seed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_reports_every_metric_of_the_vocabulary_once() {
        let split = SplitMetrics {
            disc_loss: 0.0,
            gen_loss: 0.0,
            disc_accuracy: 0.0,
            counts: BoardCounts::default(),
        };
        let report = EpochReport {
            epoch: 1,
            train: split,
            test: split,
            step_disc_loss: 0.0,
            step_gen_loss: 0.0,
            gen_zero_grads: 0,
            disc_zero_grads: 0,
            seconds: 0.0,
            train_seconds: 0.0,
            items_per_second: 0.0,
        };
        let mut got: Vec<(SplitName, Metric)> = report
            .metrics()
            .iter()
            .map(|m| (m.split, m.metric))
            .collect();
        let mut want: Vec<(SplitName, Metric)> = SplitName::ALL
            .into_iter()
            .flat_map(|s| Metric::of_split(s).map(move |m| (s, m)))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}
