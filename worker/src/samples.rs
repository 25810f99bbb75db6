//! The generator's predictions on a few fixed test items, as the notebook
//! showed them beside the true boards: the first [`PER_KIND`] spawns and
//! the first [`PER_KIND`] other moves ("falls") of the test split, so every
//! trial of a dataset shows the same items.
//!
//! The noise of these predictions comes from a generator of its own (the
//! trial's seed, a stream per epoch), and the networks run in evaluation
//! mode, so taking samples never changes what a trial trains or reports.

use candle_core::{D, DType, Result, Tensor};
use proto::v1::BoardSample;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::layers::Pass;
use crate::metrics::is_spawn;
use crate::model::Z_DIM;
use crate::split::Split;
use crate::tetris::CELLS;
use crate::train::{Trainer, batch_tensors};

/// Items of each kind shown.
pub const PER_KIND: usize = 4;

/// The sample items of `split`: (index, kind), spawns first.
pub fn items(split: &Split) -> Vec<(usize, &'static str)> {
    let spawn = |i: &usize| is_spawn(split.x(*i), split.y(*i));
    let spawns = (0..split.len()).filter(spawn).take(PER_KIND);
    let falls = (0..split.len()).filter(|i| !spawn(i)).take(PER_KIND);
    spawns
        .map(|i| (i, "spawn"))
        .chain(falls.map(|i| (i, "fall")))
        .collect()
}

impl Trainer {
    /// The generator's predictions now on the sample items of the test
    /// split.
    pub fn samples(&self) -> Result<Vec<BoardSample>> {
        let split = self.test_split();
        let chosen = items(split);
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let indices: Vec<usize> = chosen.iter().map(|(i, _)| *i).collect();
        let (x, _) = batch_tensors(split, &indices, &self.device)?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(u64::from(self.epoch()) + 1);
        let noise: Vec<f32> = (0..indices.len() * Z_DIM)
            .map(|_| rng.random::<f32>())
            .collect();
        let z = Tensor::from_vec(noise, (indices.len(), Z_DIM), &self.device)?;
        let predicted: Vec<u8> = self
            .gan
            .generator
            .forward(&x, &z, Pass::EVAL)?
            .argmax(D::Minus1)?
            .to_dtype(DType::U8)?
            .flatten_all()?
            .to_vec1()?;
        Ok(chosen
            .iter()
            .zip(predicted.chunks_exact(CELLS))
            .map(|(&(item, kind), predicted)| BoardSample {
                item: item as u32,
                kind: kind.to_string(),
                input: split.x(item).to_vec(),
                predicted: predicted.to_vec(),
                truth: split.y(item).to_vec(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::{GeneratedSpec, generate};
    use crate::train::TrainConfig;
    use candle_core::Device;
    use std::collections::BTreeMap;

    /// Every tensor's bytes and every metadata entry of a trainer's
    /// checkpoint, by name.
    fn state(trainer: &Trainer) -> BTreeMap<String, Vec<u8>> {
        let bytes = crate::checkpoint::save(trainer).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut out: BTreeMap<String, Vec<u8>> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (name, view) in safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .tensors()
        {
            out.insert(name, view.data().to_vec());
        }
        out
    }

    #[test]
    fn samples_show_fixed_items_and_leave_training_as_it_was() {
        let data = std::sync::Arc::new(generate(&GeneratedSpec {
            seed: 3,
            train: 24,
            test: 200,
            pairing: Default::default(),
        }));
        let chosen = items(&data.test);
        assert_eq!(chosen.len(), 2 * PER_KIND, "{chosen:?}");
        assert!(
            chosen[..PER_KIND]
                .iter()
                .all(|(i, k)| *k == "spawn" && is_spawn(data.test.x(*i), data.test.y(*i)))
        );
        assert!(
            chosen[PER_KIND..]
                .iter()
                .all(|(i, k)| *k == "fall" && !is_spawn(data.test.x(*i), data.test.y(*i)))
        );

        let config = TrainConfig {
            epochs: 2,
            ..TrainConfig::default()
        };
        let device = Device::Cpu;
        let mut sampled = Trainer::new(config, data.clone(), &device).unwrap();
        let mut plain = Trainer::new(config, data.clone(), &device).unwrap();
        for _ in 0..2 {
            let first = sampled.samples().unwrap();
            assert_eq!(
                first,
                sampled.samples().unwrap(),
                "the same at the same epoch"
            );
            for s in &first {
                assert_eq!(s.input, data.test.x(s.item as usize));
                assert_eq!(s.truth, data.test.y(s.item as usize));
                assert_eq!(s.predicted.len(), CELLS);
                assert!(s.predicted.iter().all(|&c| c <= 1));
            }
            sampled.run_epoch().unwrap();
            plain.run_epoch().unwrap();
            // Weights, optimiser state and the trial's generator: all equal.
            assert!(
                state(&sampled) == state(&plain),
                "sampling changed training"
            );
        }
    }
}
