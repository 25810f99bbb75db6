//! A trial's training: seeded shuffling and noise, an epoch of steps, and
//! the evaluation of both splits after every epoch; alone, or packed with
//! other trials of the same batch size and data into one computation that
//! gives each exactly what it would get alone.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{D, DType, Device, Result, Tensor};
use proto::metrics::{Metric, MetricValue, Split as SplitName};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::datagen::Dataset;
use crate::gan::{Gan, GanConfig, zero_gradients};
use crate::init::InitScheme;
use crate::layers::{Pass, bce_with_logits_items};
use crate::metrics::{BoardCounts, SplitMetrics};
use crate::model::{Discriminator, Generator, Z_DIM};
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
pub struct Trainer {
    /// What the trial trains.
    pub config: TrainConfig,
    /// Both networks and their optimisers (a pack of one).
    pub gan: Gan,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) epoch: u32,
    data: Arc<Dataset>,
    pub(crate) device: Device,
}

impl Trainer {
    /// A fresh trial on `data`: weights drawn from the trial's seed.
    pub fn new(config: TrainConfig, data: Arc<Dataset>, device: &Device) -> Result<Self> {
        if data.train.is_empty() {
            candle_core::bail!("the train split has no items");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let gan = Gan::new(&config.gan(), &mut rng, device)?;
        Ok(Self {
            config,
            gan,
            rng,
            epoch: 0,
            data,
            device: device.clone(),
        })
    }

    /// The split the trial is evaluated on besides its train split.
    pub fn test_split(&self) -> &Split {
        &self.data.test
    }

    /// Epochs trained so far.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Whether the two trials can train in one pack: the same batch size on
    /// the same data.
    pub fn packs_with(&self, other: &Trainer) -> bool {
        self.config.batch_size == other.config.batch_size
            && Arc::ptr_eq(&self.data, &other.data)
            && self.device.same_device(&other.device)
    }

    /// Trains one epoch over the shuffled train split, then evaluates both
    /// splits.
    pub fn run_epoch(&mut self) -> Result<EpochReport> {
        Ok(run_epochs(&mut [self])?.remove(0))
    }
}

/// Trains one epoch of every trial of `trials` as one computation (each
/// over its own shuffling of the train split, with its own noise), then
/// evaluates both splits for each; every trial's report and state are
/// exactly those of the trial trained alone. The trials must pack together
/// ([`Trainer::packs_with`]).
pub fn run_epochs(trials: &mut [&mut Trainer]) -> Result<Vec<EpochReport>> {
    let Some(first) = trials.first() else {
        return Ok(Vec::new());
    };
    if trials.iter().any(|t| !first.packs_with(t)) {
        candle_core::bail!("trials of different batch sizes, data or devices cannot share a pack");
    }
    let (data, batch, device) = (
        first.data.clone(),
        first.config.batch_size,
        first.device.clone(),
    );
    let mut reports = if let [alone] = trials {
        let Trainer { gan, rng, .. } = &mut **alone;
        epoch(gan, &mut [rng], batch, &data, &device)?
    } else {
        let mut pack = Gan::stack(&trials.iter().map(|t| &t.gan).collect::<Vec<_>>())?;
        let mut rngs: Vec<&mut ChaCha8Rng> = trials.iter_mut().map(|t| &mut t.rng).collect();
        let reports = epoch(&mut pack, &mut rngs, batch, &data, &device)?;
        pack.unstack_into(&mut trials.iter_mut().map(|t| &mut t.gan).collect::<Vec<_>>())?;
        reports
    };
    for (trial, report) in trials.iter_mut().zip(&mut reports) {
        trial.epoch += 1;
        report.epoch = trial.epoch;
    }
    Ok(reports)
}

/// One epoch of the pack `gan`, whose trials draw from `rngs`; the reports'
/// epoch numbers are left for the caller.
fn epoch(
    gan: &mut Gan,
    rngs: &mut [&mut ChaCha8Rng],
    batch: usize,
    data: &Dataset,
    device: &Device,
) -> Result<Vec<EpochReport>> {
    let start = Instant::now();
    let (pack, n) = (rngs.len(), data.train.len());
    let orders: Vec<Vec<usize>> = rngs
        .iter_mut()
        .map(|rng| {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut **rng);
            order
        })
        .collect();
    let (mut disc_loss, mut gen_loss) = (vec![0.0; pack], vec![0.0; pack]);
    let mut zero_grads = (vec![0; pack], vec![0; pack]);
    let steps = n.div_ceil(batch);
    for step in 0..steps {
        let items = step * batch..((step + 1) * batch).min(n);
        let indices: Vec<usize> = orders
            .iter()
            .flat_map(|o| o[items.clone()].iter().copied())
            .collect();
        let (x, y) = batch_tensors(&data.train, &indices, device)?;
        let z = noise(rngs, items.len(), device)?;
        let out = gan.step(&x, &y, &z)?;
        for k in 0..pack {
            disc_loss[k] += f64::from(out.loss_d_real[k] + out.loss_d_fake[k]);
            gen_loss[k] += f64::from(out.loss_g[k]);
        }
        if step == steps - 1 {
            zero_grads = (
                zero_gradients(&gan.generator.tensors, &out.gen_grads)?,
                zero_gradients(&gan.discriminator.tensors, &out.disc_grads)?,
            );
        }
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let train = evaluate(gan, rngs, &data.train, device)?;
    let test = evaluate(gan, rngs, &data.test, device)?;
    let seconds = start.elapsed().as_secs_f64();
    let steps = steps as f64;
    Ok((0..pack)
        .map(|k| EpochReport {
            epoch: 0,
            train: train[k],
            test: test[k],
            step_disc_loss: disc_loss[k] / steps,
            step_gen_loss: gen_loss[k] / steps,
            gen_zero_grads: zero_grads.0[k],
            disc_zero_grads: zero_grads.1[k],
            seconds,
            train_seconds,
            items_per_second: n as f64 / seconds,
        })
        .collect())
}

/// Items of each trial evaluated in one pass on `device`: on a CPU 32,
/// which keep a pass's activations in a core's cache (an epoch's
/// evaluation took 0.22 s against 0.24 s with 128), elsewhere 128. Noise
/// is drawn and losses are summed item after item, but the metrics may
/// still move in their last bits with it, as candle's CPU matrix product
/// orders its sums by the number of rows; never with the pack.
fn eval_items(device: &Device) -> usize {
    if device.is_cpu() { 32 } else { 128 }
}

/// Trials evaluated in one pass on `device`: on a CPU two (a pass of
/// [`eval_items`] items already spends little on overhead, and a pack's
/// many times that would outgrow the caches), elsewhere up to 256.
fn eval_pack(device: &Device) -> usize {
    if device.is_cpu() { 2 } else { 256 }
}

/// The notebook's `test_loop` over all items of `split` for every trial of
/// the pack `gan`, [`eval_items`] items at a time with running
/// statistics, as many trials per pass as suit the device.
fn evaluate(
    gan: &Gan,
    rngs: &mut [&mut ChaCha8Rng],
    split: &Split,
    device: &Device,
) -> Result<Vec<SplitMetrics>> {
    let per_pass = eval_pack(device);
    if rngs.len() <= per_pass {
        return evaluate_pack(&gan.generator, &gan.discriminator, rngs, split, device);
    }
    let mut metrics = Vec::with_capacity(rngs.len());
    for (i, chunk) in rngs.chunks_mut(per_pass).enumerate() {
        let (start, len) = (i * per_pass, chunk.len());
        metrics.extend(evaluate_pack(
            &gan.generator.select(start, len)?,
            &gan.discriminator.select(start, len)?,
            chunk,
            split,
            device,
        )?);
    }
    Ok(metrics)
}

/// [`evaluate`] of every trial of `generator` and `discriminator` at once.
fn evaluate_pack(
    generator: &Generator,
    discriminator: &Discriminator,
    rngs: &mut [&mut ChaCha8Rng],
    split: &Split,
    device: &Device,
) -> Result<Vec<SplitMetrics>> {
    let pack = rngs.len();
    let mut counts = vec![BoardCounts::default(); pack];
    let (mut disc_loss, mut gen_loss) = (vec![0.0; pack], vec![0.0; pack]);
    let mut disc_right = vec![0u64; pack];
    let all: Vec<usize> = (0..split.len()).collect();
    for batch in all.chunks(eval_items(device)) {
        let every_trial: Vec<usize> = (0..pack).flat_map(|_| batch.iter().copied()).collect();
        let (x, y) = batch_tensors(split, &every_trial, device)?;
        let z = noise(rngs, batch.len(), device)?;
        let real = discriminator.forward(&x, &y, Pass::EVAL)?;
        let y_fake = generator.forward(&x, &z, Pass::EVAL)?;
        let fake = discriminator.forward(&x, &y_fake, Pass::EVAL)?;
        let per_trial = |t: &Tensor| t.reshape((pack, batch.len()));
        // Each item's loss, trial after trial.
        let losses =
            |logits: &Tensor, target: f64| bce_with_logits_items(logits, target)?.to_vec1::<f32>();
        let right = |mask: &Tensor| -> Result<Vec<u32>> {
            per_trial(&mask.to_dtype(DType::U32)?)?.sum(1)?.to_vec1()
        };
        let (real_loss, fake_loss, fooled) = (
            losses(&real, 1.0)?,
            losses(&fake, 0.0)?,
            losses(&fake, 1.0)?,
        );
        let (real_right, fake_right) = (right(&real.gt(0.0)?)?, right(&fake.le(0.0)?)?);
        let pred: Vec<u8> = y_fake
            .argmax(D::Minus1)?
            .to_dtype(DType::U8)?
            .flatten_all()?
            .to_vec1()?;
        for k in 0..pack {
            for i in k * batch.len()..(k + 1) * batch.len() {
                disc_loss[k] += f64::from(real_loss[i]) + f64::from(fake_loss[i]);
                gen_loss[k] += f64::from(fooled[i]);
            }
            disc_right[k] += u64::from(real_right[k]) + u64::from(fake_right[k]);
            let predicted = &pred[k * batch.len() * CELLS..(k + 1) * batch.len() * CELLS];
            for (p, &item) in predicted.chunks_exact(CELLS).zip(batch) {
                counts[k].add(split.x(item), split.y(item), p);
            }
        }
    }
    let n = split.len() as f64;
    Ok((0..pack)
        .map(|k| SplitMetrics {
            disc_loss: disc_loss[k] / n,
            gen_loss: gen_loss[k] / n,
            disc_accuracy: disc_right[k] as f64 / (2.0 * n),
            counts: counts[k],
        })
        .collect())
}

/// `(K*n, 4)` noise, uniform in [0, 1): `n` rows from each trial's
/// generator, trial after trial.
fn noise(rngs: &mut [&mut ChaCha8Rng], n: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = rngs
        .iter_mut()
        .flat_map(|rng| {
            (0..n * Z_DIM)
                .map(|_| rng.random::<f32>())
                .collect::<Vec<_>>()
        })
        .collect();
    Tensor::from_vec(values, (rngs.len() * n, Z_DIM), device)
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
