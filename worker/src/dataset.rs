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
    Recordings {
        /// The directory.
        path: PathBuf,
    },
    /// Built by the Tetris engine from `seed`; identical on every machine.
    Generated {
        /// Seed of the games and of the split.
        seed: u64,
        /// Items in the train split.
        train: usize,
        /// Items in the test split.
        test: usize,
        /// How consecutive boards become items.
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

impl TryFrom<&proto::v1::Dataset> for DatasetSpec {
    type Error = String;

    fn try_from(d: &proto::v1::Dataset) -> Result<Self, String> {
        use proto::v1::dataset::Source;
        match d.source.as_ref().ok_or("the trial names no dataset")? {
            Source::RecordingsPath(path) => Ok(DatasetSpec::Recordings { path: path.into() }),
            Source::Generated(g) => Ok(DatasetSpec::Generated {
                seed: g.seed,
                train: g.train as usize,
                test: g.test as usize,
                pairing: match proto::v1::Pairing::try_from(g.pairing) {
                    Ok(proto::v1::Pairing::Overlapping) => Pairing::Overlapping,
                    _ => Pairing::NonOverlapping,
                },
            }),
        }
    }
}

/// Datasets of this process, and generated datasets of this machine: a
/// generated dataset is written once under `dir` (keyed by its parameters)
/// and read back by every later worker process; each dataset is held in
/// memory once and shared by all slots.
#[derive(Debug)]
pub struct DatasetCache {
    dir: PathBuf,
    loaded: tokio::sync::Mutex<std::collections::HashMap<DatasetSpec, std::sync::Arc<Dataset>>>,
}

impl DatasetCache {
    /// A cache keeping generated datasets under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            loaded: Default::default(),
        }
    }

    /// The dataset of `spec`, loading or building it on first use.
    pub async fn get(&self, spec: &DatasetSpec) -> anyhow::Result<std::sync::Arc<Dataset>> {
        let mut loaded = self.loaded.lock().await;
        if let Some(data) = loaded.get(spec) {
            return Ok(data.clone());
        }
        let (dir, owned) = (self.dir.clone(), spec.clone());
        let data = std::sync::Arc::new(
            tokio::task::spawn_blocking(move || load_or_build(&dir, &owned)).await??,
        );
        loaded.insert(spec.clone(), data.clone());
        Ok(data)
    }
}

fn load_or_build(dir: &std::path::Path, spec: &DatasetSpec) -> anyhow::Result<Dataset> {
    let DatasetSpec::Generated {
        seed,
        train,
        test,
        pairing,
    } = spec
    else {
        return Ok(spec.load()?);
    };
    let path = dir.join(format!("generated-{seed}-{train}-{test}-{pairing}"));
    if path.join("complete").exists() {
        return Ok(DatasetSpec::Recordings { path }.load()?);
    }
    let data = spec.load()?;
    let staging = dir.join(format!(
        ".building-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    datagen::write_split(&data.train, &staging.join("train"))?;
    datagen::write_split(&data.test, &staging.join("test"))?;
    std::fs::write(staging.join("complete"), "")?;
    // Another process may have finished first; its copy is identical.
    if std::fs::rename(&staging, &path).is_err() {
        std::fs::remove_dir_all(&staging)?;
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_generated_dataset_is_built_once_per_machine_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let spec = DatasetSpec::Generated {
            seed: 4,
            train: 12,
            test: 5,
            pairing: Pairing::Overlapping,
        };
        let cache = DatasetCache::new(dir.path().to_path_buf());
        let first = cache.get(&spec).await.unwrap();
        assert!(
            std::sync::Arc::ptr_eq(&first, &cache.get(&spec).await.unwrap()),
            "one copy per process"
        );
        let on_disk = dir.path().join("generated-4-12-5-overlapping");
        assert!(on_disk.join("complete").exists() && on_disk.join("train/11.npy").exists());

        // Another process finds the files: it reads them instead of playing games.
        std::fs::write(on_disk.join("test/0.npy"), b"not npy").unwrap();
        let err = DatasetCache::new(dir.path().to_path_buf())
            .get(&spec)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("0.npy"),
            "read from the cache: {err:#}"
        );
    }
}
