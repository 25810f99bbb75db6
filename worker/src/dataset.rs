//! Where a trial's data comes from: a recordings directory or a dataset
//! generated from a seed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::datagen::{self, Dataset, GeneratedSpec, Pairing};
use crate::recordings::{self, RecordingsError};

/// A dataset reference, as a trial configuration carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// `{path}/train/{i}.npy` and `{path}/test/{i}.npy`.
    Recordings { path: PathBuf },
    /// Built by the Tetris engine from `seed`; identical on every machine.
    Generated {
        seed: u64,
        train: usize,
        test: usize,
        #[serde(default, with = "pairing_name")]
        pairing: Pairing,
    },
}

impl DatasetSpec {
    /// Reads or generates both splits.
    pub fn load(&self) -> Result<Dataset, RecordingsError> {
        match self {
            DatasetSpec::Recordings { path } => Ok(Dataset {
                train: recordings::load_split(&path.join("train"))?,
                test: recordings::load_split(&path.join("test"))?,
            }),
            DatasetSpec::Generated {
                seed,
                train,
                test,
                pairing,
            } => Ok(datagen::generate(&GeneratedSpec {
                seed: *seed,
                train: *train,
                test: *test,
                pairing: *pairing,
            })),
        }
    }
}

mod pairing_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::datagen::Pairing;

    pub fn serialize<S: Serializer>(p: &Pairing, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pairing, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
