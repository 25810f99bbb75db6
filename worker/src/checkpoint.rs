//! A trainer's whole state as one safetensors blob: both networks with their
//! BatchNorm buffers, both optimisers' moments and step counts, the RNG
//! position and the epoch, so that a resumed trial continues bit-identically.

use std::collections::HashMap;
use std::str::FromStr;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

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

/// The metadata entry holding a state's scalars, as one JSON object: one
/// entry, because safetensors writes its metadata in a `HashMap`'s order,
/// which differs between processes, and a state's bytes should not.
const SCALARS: &str = "exp025.state";

/// A state's scalars: the epoch, the optimisers' step counts, the RNG
/// position and the trial's configuration.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scalars {
    epoch: u32,
    opt_generator_step: u64,
    opt_discriminator_step: u64,
    rng_word_pos: u128,
    config: TrainConfig,
}

impl Scalars {
    /// The scalars of a state written before [`SCALARS`]: one metadata entry
    /// each, numbers as text.
    fn from_entries(meta: &HashMap<String, String>) -> Result<Self, CheckpointError> {
        type Entries = HashMap<String, String>;
        fn field<'m>(meta: &'m Entries, key: &'static str) -> Result<&'m str, CheckpointError> {
            meta.get(key)
                .map(String::as_str)
                .ok_or(CheckpointError::Metadata(key))
        }
        fn number<T: FromStr>(meta: &Entries, key: &'static str) -> Result<T, CheckpointError> {
            field(meta, key)?
                .parse()
                .map_err(|_| CheckpointError::Metadata(key))
        }
        Ok(Self {
            epoch: number(meta, "epoch")?,
            opt_generator_step: number(meta, "opt_generator.step")?,
            opt_discriminator_step: number(meta, "opt_discriminator.step")?,
            rng_word_pos: number(meta, "rng.word_pos")?,
            config: serde_json::from_str(field(meta, "config")?)
                .map_err(|_| CheckpointError::Metadata("config"))?,
        })
    }
}

/// Serialises the trainer's state: the same state gives the same bytes.
pub fn save(trainer: &Trainer) -> Result<Vec<u8>, CheckpointError> {
    let gan = &trainer.gan;
    let mut tensors: HashMap<String, Tensor> = gan.generator.tensors.snapshot(0, GEN)?;
    tensors.extend(gan.discriminator.tensors.snapshot(0, DISC)?);
    tensors.extend(gan.opt_gen.state(0, OPT_GEN)?);
    tensors.extend(gan.opt_disc.state(0, OPT_DISC)?);
    let scalars = Scalars {
        epoch: trainer.epoch,
        opt_generator_step: gan.opt_gen.steps(0),
        opt_discriminator_step: gan.opt_disc.steps(0),
        rng_word_pos: trainer.rng.get_word_pos(),
        config: trainer.config,
    };
    let metadata = HashMap::from([(
        SCALARS.to_string(),
        serde_json::to_string(&scalars).expect("the scalars serialise"),
    )]);
    let cpu: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()?;
    Ok(safetensors::serialize(cpu, Some(metadata))?)
}

/// Restores a state written by [`save`] (or by a worker from before
/// [`SCALARS`]) into a trainer built with the same configuration.
pub fn load(trainer: &mut Trainer, bytes: &[u8]) -> Result<(), CheckpointError> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let scalars = match meta.get(SCALARS) {
        Some(json) => {
            serde_json::from_str::<Scalars>(json).map_err(|_| CheckpointError::Metadata(SCALARS))?
        }
        None => Scalars::from_entries(&meta)?,
    };
    // The epoch budget may grow between runs; everything else must match.
    let same = TrainConfig {
        epochs: trainer.config.epochs,
        ..scalars.config
    } == trainer.config;
    if !same {
        return Err(CheckpointError::ConfigMismatch);
    }
    let device = trainer.device.clone();
    let tensors = candle_core::safetensors::load_buffer(bytes, &device)?;
    let gan = &mut trainer.gan;
    gan.generator.tensors.load(&tensors, GEN)?;
    gan.discriminator.tensors.load(&tensors, DISC)?;
    gan.opt_gen
        .load_state(&tensors, OPT_GEN, scalars.opt_generator_step)?;
    gan.opt_disc
        .load_state(&tensors, OPT_DISC, scalars.opt_discriminator_step)?;
    let mut rng: ChaCha8Rng = rand::SeedableRng::seed_from_u64(scalars.config.seed);
    rng.set_word_pos(scalars.rng_word_pos);
    trainer.rng = rng;
    trainer.epoch = scalars.epoch;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::datagen::{Dataset, GeneratedSpec, generate};

    /// A trainer one epoch into a small generated dataset, and the dataset.
    fn trained() -> (Trainer, Arc<Dataset>) {
        let data = Arc::new(generate(&GeneratedSpec {
            seed: 3,
            train: 12,
            test: 6,
            pairing: Default::default(),
        }));
        let config = TrainConfig {
            epochs: 2,
            seed: 11,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(config, data.clone(), &Device::Cpu).unwrap();
        trainer.run_epoch().unwrap();
        (trainer, data)
    }

    #[test]
    fn the_same_state_saves_to_the_same_bytes() {
        let (trainer, _) = trained();
        let first = save(&trainer).unwrap();
        for _ in 0..5 {
            assert!(save(&trainer).unwrap() == first);
        }
    }

    /// A state saved by a worker from before [`SCALARS`], with one metadata
    /// entry per scalar, loads to the same state.
    #[test]
    fn a_state_with_one_metadata_entry_per_scalar_still_loads() {
        let (trainer, data) = trained();
        let saved = save(&trainer).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&saved).unwrap();
        let views: Vec<_> = tensors.tensors();
        let metadata = HashMap::from([
            ("epoch".to_string(), trainer.epoch.to_string()),
            (
                "opt_generator.step".to_string(),
                trainer.gan.opt_gen.steps(0).to_string(),
            ),
            (
                "opt_discriminator.step".to_string(),
                trainer.gan.opt_disc.steps(0).to_string(),
            ),
            (
                "rng.word_pos".to_string(),
                trainer.rng.get_word_pos().to_string(),
            ),
            (
                "config".to_string(),
                serde_json::to_string(&trainer.config).unwrap(),
            ),
        ]);
        let old = safetensors::serialize(views, Some(metadata)).unwrap();
        assert!(old != saved);

        let mut resumed = Trainer::new(trainer.config, data.clone(), &Device::Cpu).unwrap();
        load(&mut resumed, &old).unwrap();
        assert!(save(&resumed).unwrap() == saved);

        // The old form's key `"epoch"` renamed (the config's `\"epochs\"`
        // is escaped), and the new form's scalar `epoch` (escaped in the
        // entry's text): each error names the entry.
        let load_renamed = |bytes: &[u8], name: &[u8]| {
            let mut broken = bytes.to_vec();
            let at = broken
                .windows(name.len())
                .position(|w| w == name)
                .expect("the epoch's name");
            let e = name.iter().position(|&b| b == b'e').expect("an e");
            broken[at + e] = b'f';
            let mut fresh = Trainer::new(trainer.config, data.clone(), &Device::Cpu).unwrap();
            load(&mut fresh, &broken).unwrap_err().to_string()
        };
        assert_eq!(
            load_renamed(&old, b"\"epoch\""),
            "checkpoint metadata epoch is missing or invalid"
        );
        assert_eq!(
            load_renamed(&saved, b"\\\"epoch\\\""),
            "checkpoint metadata exp025.state is missing or invalid"
        );
    }
}
