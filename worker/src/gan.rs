//! Both networks with their optimisers, and the notebook's training step,
//! for a pack of trials (one trial alone is a pack of one).

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor};
use rand::Rng;

use crate::init::InitScheme;
use crate::layers::{Pass, bce_with_logits};
use crate::model::{Discriminator, Generator};
use crate::optim::{Adam, AdamConfig};
use crate::tensors::NamedTensors;

/// What builds a GAN: init per network, the generator variant, Adam.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanConfig {
    /// The generator's init scheme.
    pub gen_init: InitScheme,
    /// The discriminator's init scheme.
    pub disc_init: InitScheme,
    /// The smart variant's ReLU after the generator's `glob.9`.
    pub glob_relu: bool,
    /// Both optimisers' settings.
    pub adam: AdamConfig,
}

/// The generator, the discriminator and one Adam for each, of a pack of
/// trials.
#[derive(Debug)]
pub struct Gan {
    /// G(x, z): the next board.
    pub generator: Generator,
    /// D(x, y): real or generated.
    pub discriminator: Discriminator,
    /// The generator's optimiser.
    pub opt_gen: Adam,
    /// The discriminator's optimiser.
    pub opt_disc: Adam,
}

/// What one training step produced, per trial of the pack.
#[derive(Debug)]
pub struct StepOutput {
    /// BCE(D(x, y), 1) of the step, per trial.
    pub loss_d_real: Vec<f32>,
    /// BCE(D(x, G(x, z)), 0) of the step, per trial.
    pub loss_d_fake: Vec<f32>,
    /// BCE(D(x, G(x, z)), 1) of the step, per trial.
    pub loss_g: Vec<f32>,
    /// The generator's train-mode output, `(K*B, 220, 2)`.
    pub y_fake: Tensor,
    /// Gradients of the discriminator step (real + fake).
    pub disc_grads: GradStore,
    /// Gradients of the generator step.
    pub gen_grads: GradStore,
}

const REAL: f64 = 1.0;
const FAKE: f64 = 0.0;
const TRAIN: Pass = Pass {
    train: true,
    track_params: true,
};

impl Gan {
    /// Builds both networks of one trial, drawing initial weights from
    /// `rng` (generator first).
    pub fn new<R: Rng>(config: &GanConfig, rng: &mut R, device: &Device) -> Result<Self> {
        let generator = Generator::new(config.gen_init, config.glob_relu, rng, device)?;
        let discriminator = Discriminator::new(config.disc_init, rng, device)?;
        Ok(Self {
            opt_gen: Adam::new(&generator.tensors, config.adam)?,
            opt_disc: Adam::new(&discriminator.tensors, config.adam)?,
            generator,
            discriminator,
        })
    }

    /// The pack of `trials`: their networks and optimisers stacked.
    pub fn stack(trials: &[&Gan]) -> Result<Self> {
        let generator = Generator::stack(&trials.iter().map(|t| &t.generator).collect::<Vec<_>>())?;
        let discriminator =
            Discriminator::stack(&trials.iter().map(|t| &t.discriminator).collect::<Vec<_>>())?;
        Ok(Self {
            opt_gen: Adam::stack(
                &trials.iter().map(|t| &t.opt_gen).collect::<Vec<_>>(),
                &generator.tensors,
            )?,
            opt_disc: Adam::stack(
                &trials.iter().map(|t| &t.opt_disc).collect::<Vec<_>>(),
                &discriminator.tensors,
            )?,
            generator,
            discriminator,
        })
    }

    /// Sets each GAN of `targets` (one trial each) to its trial of this
    /// pack, in order.
    pub fn unstack_into(&self, targets: &mut [&mut Gan]) -> Result<()> {
        let gens: Vec<&NamedTensors> = targets.iter().map(|t| &t.generator.tensors).collect();
        self.generator.tensors.unstack_into(&gens)?;
        let discs: Vec<&NamedTensors> = targets.iter().map(|t| &t.discriminator.tensors).collect();
        self.discriminator.tensors.unstack_into(&discs)?;
        let mut opts: Vec<&mut Adam> = targets.iter_mut().map(|t| &mut t.opt_gen).collect();
        self.opt_gen.unstack_into(&mut opts)?;
        let mut opts: Vec<&mut Adam> = targets.iter_mut().map(|t| &mut t.opt_disc).collect();
        self.opt_disc.unstack_into(&mut opts)
    }

    /// Trials in the pack.
    pub fn pack(&self) -> usize {
        self.generator.pack()
    }

    /// The notebook's `train_loop` body on one batch per trial (`x`, `y`:
    /// `(K*B, 220, 2)`, `z`: `(K*B, 4)`, trial after trial): the
    /// discriminator learns from the real batch and the detached fake
    /// batch, then the generator learns through the updated discriminator.
    pub fn step(&mut self, x: &Tensor, y: &Tensor, z: &Tensor) -> Result<StepOutput> {
        let pack = self.pack();
        let y_fake = self.generator.forward(x, z, TRAIN)?;
        // The discriminator has no batch statistics, so each trial's real
        // and detached fake batch go through it as one batch of 2B.
        let (kb, hw, c) = x.dims3()?;
        let b = kb / pack;
        let per_trial = |t: &Tensor| t.reshape((pack, b, hw, c));
        let both = |first: &Tensor, second: &Tensor| {
            Tensor::cat(&[per_trial(first)?, per_trial(second)?], 1)?.reshape((2 * kb, hw, c))
        };
        let logits = self
            .discriminator
            .forward(&both(x, x)?, &both(y, &y_fake.detach())?, TRAIN)?
            .reshape((pack, 2 * b))?;
        let half = |from: usize| -> Result<Tensor> { logits.narrow(1, from, b)?.flatten_all() };
        let loss_d_real = bce_with_logits(&half(0)?, REAL, pack)?;
        let loss_d_fake = bce_with_logits(&half(b)?, FAKE, pack)?;
        let disc_grads = (&loss_d_real + &loss_d_fake)?.sum_all()?.backward()?;
        self.opt_disc.step(&disc_grads)?;

        let through_disc = Pass {
            train: true,
            track_params: false,
        };
        let loss_g = bce_with_logits(
            &self.discriminator.forward(x, &y_fake, through_disc)?,
            REAL,
            pack,
        )?;
        let gen_grads = loss_g.sum_all()?.backward()?;
        self.opt_gen.step(&gen_grads)?;
        Ok(StepOutput {
            loss_d_real: loss_d_real.to_vec1()?,
            loss_d_fake: loss_d_fake.to_vec1()?,
            loss_g: loss_g.to_vec1()?,
            y_fake: y_fake.detach(),
            disc_grads,
            gen_grads,
        })
    }
}

/// Per trial, the number of gradient entries exactly zero over `params`'
/// trainable tensors (the notebook's "zero gradients" scalar).
pub fn zero_gradients(params: &NamedTensors, grads: &GradStore) -> Result<Vec<u64>> {
    let pack = params.iter().next().map_or(Ok(0), |(_, v, _)| v.dim(0))?;
    let mut zeros = vec![0; pack];
    for (_, var) in params.parameters() {
        if let Some(g) = grads.get(var.as_tensor()) {
            let counts: Vec<u32> = g
                .eq(0.0)?
                .to_dtype(candle_core::DType::U32)?
                .reshape((pack, ()))?
                .sum(1)?
                .to_vec1()?;
            for (z, c) in zeros.iter_mut().zip(counts) {
                *z += u64::from(c);
            }
        }
    }
    Ok(zeros)
}
