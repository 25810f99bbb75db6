//! Both networks with their optimisers, and the notebook's training step.

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

/// The generator, the discriminator and one Adam for each.
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

/// What one training step produced.
#[derive(Debug)]
pub struct StepOutput {
    /// BCE(D(x, y), 1) of the step.
    pub loss_d_real: f32,
    /// BCE(D(x, G(x, z)), 0) of the step.
    pub loss_d_fake: f32,
    /// BCE(D(x, G(x, z)), 1) of the step.
    pub loss_g: f32,
    /// The generator's train-mode output, `(B, 220, 2)`.
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
    /// Builds both networks, drawing initial weights from `rng` (generator
    /// first).
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

    /// The notebook's `train_loop` body on one batch: the discriminator
    /// learns from the real batch and the detached fake batch, then the
    /// generator learns through the updated discriminator.
    pub fn step(&mut self, x: &Tensor, y: &Tensor, z: &Tensor) -> Result<StepOutput> {
        let y_fake = self.generator.forward(x, z, TRAIN)?;
        // The discriminator has no batch statistics, so the real and the
        // detached fake batch go through it as one batch of 2B.
        let b = x.dim(0)?;
        let logits = self.discriminator.forward(
            &Tensor::cat(&[x, x], 0)?,
            &Tensor::cat(&[y, &y_fake.detach()], 0)?,
            TRAIN,
        )?;
        let loss_d_real = bce_with_logits(&logits.narrow(0, 0, b)?, REAL)?;
        let loss_d_fake = bce_with_logits(&logits.narrow(0, b, b)?, FAKE)?;
        let disc_grads = (&loss_d_real + &loss_d_fake)?.backward()?;
        self.opt_disc.step(&disc_grads)?;

        let through_disc = Pass {
            train: true,
            track_params: false,
        };
        let loss_g = bce_with_logits(&self.discriminator.forward(x, &y_fake, through_disc)?, REAL)?;
        let gen_grads = loss_g.backward()?;
        self.opt_gen.step(&gen_grads)?;
        Ok(StepOutput {
            loss_d_real: loss_d_real.to_scalar()?,
            loss_d_fake: loss_d_fake.to_scalar()?,
            loss_g: loss_g.to_scalar()?,
            y_fake: y_fake.detach(),
            disc_grads,
            gen_grads,
        })
    }
}

/// The number of gradient entries exactly zero over `params`' trainable
/// tensors (the notebook's "zero gradients" scalar).
pub fn zero_gradients(params: &NamedTensors, grads: &GradStore) -> Result<u64> {
    let mut zeros = 0;
    for (_, var) in params.parameters() {
        if let Some(g) = grads.get(var.as_tensor()) {
            zeros += g
                .eq(0.0)?
                .to_dtype(candle_core::DType::U32)?
                .sum_all()?
                .to_scalar::<u32>()? as u64;
        }
    }
    Ok(zeros)
}
