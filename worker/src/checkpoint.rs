//! A trainer's whole state as one safetensors blob: both networks with their
//! BatchNorm buffers, both optimisers' moments and step counts, the RNG
//! position and the epoch, so that a resumed trial continues bit-identically.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use crate::train::{TrainConfig, Trainer};

/// Why a checkpoint could not be read or does not fit the trainer.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not a safetensors blob.
    #[error("checkpoint is not valid safetensors: {0}")]
    Format(#[from] safetensors::SafeTensorError),
    /// A tensor that does not fit the trainer.
    #[error("checkpoint tensors: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A metadata entry missing or unreadable.
    #[error("checkpoint metadata {0} is missing or invalid")]
    Metadata(&'static str),
    /// Saved by a trial of another configuration.
    #[error("checkpoint was written for another configuration")]
    ConfigMismatch,
}

const GEN: &str = "generator.";
const DISC: &str = "discriminator.";
const OPT_GEN: &str = "opt_generator.";
const OPT_DISC: &str = "opt_discriminator.";

/// Serialises the trainer's state.
pub fn save(trainer: &Trainer) -> Result<Vec<u8>, CheckpointError> {
    let gan = &trainer.gan;
    let mut tensors: HashMap<String, Tensor> = gan.generator.tensors.snapshot(0, GEN)?;
    tensors.extend(gan.discriminator.tensors.snapshot(0, DISC)?);
    tensors.extend(gan.opt_gen.state(0, OPT_GEN)?);
    tensors.extend(gan.opt_disc.state(0, OPT_DISC)?);
    let metadata = HashMap::from([
        ("epoch".to_string(), trainer.epoch.to_string()),
        (
            "opt_generator.step".to_string(),
            gan.opt_gen.steps(0).to_string(),
        ),
        (
            "opt_discriminator.step".to_string(),
            gan.opt_disc.steps(0).to_string(),
        ),
        (
            "rng.word_pos".to_string(),
            trainer.rng.get_word_pos().to_string(),
        ),
        (
            "config".to_string(),
            serde_json::to_string(&trainer.config).expect("config serialises"),
        ),
    ]);
    let cpu: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()?;
    Ok(safetensors::serialize(cpu, Some(metadata))?)
}

/// Restores a state written by [`save`] into a trainer built with the same
/// configuration.
pub fn load(trainer: &mut Trainer, bytes: &[u8]) -> Result<(), CheckpointError> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let field = |key: &'static str| meta.get(key).ok_or(CheckpointError::Metadata(key));
    let number = |key: &'static str| -> Result<u128, CheckpointError> {
        field(key)?
            .parse()
            .map_err(|_| CheckpointError::Metadata(key))
    };
    let config: TrainConfig =
        serde_json::from_str(field("config")?).map_err(|_| CheckpointError::Metadata("config"))?;
    // The epoch budget may grow between runs; everything else must match.
    let same = TrainConfig {
        epochs: trainer.config.epochs,
        ..config
    } == trainer.config;
    if !same {
        return Err(CheckpointError::ConfigMismatch);
    }
    let device = trainer.device.clone();
    let tensors = candle_core::safetensors::load_buffer(bytes, &device)?;
    let gan = &mut trainer.gan;
    gan.generator.tensors.load(&tensors, GEN)?;
    gan.discriminator.tensors.load(&tensors, DISC)?;
    let steps = |key| -> Result<u64, CheckpointError> {
        u64::try_from(number(key)?).map_err(|_| CheckpointError::Metadata(key))
    };
    gan.opt_gen
        .load_state(&tensors, OPT_GEN, steps("opt_generator.step")?)?;
    gan.opt_disc
        .load_state(&tensors, OPT_DISC, steps("opt_discriminator.step")?)?;
    let epoch = u32::try_from(number("epoch")?).map_err(|_| CheckpointError::Metadata("epoch"))?;
    let mut rng: ChaCha8Rng = rand::SeedableRng::seed_from_u64(config.seed);
    rng.set_word_pos(number("rng.word_pos")?);
    trainer.rng = rng;
    trainer.epoch = epoch;
    Ok(())
}
