//! TensorBoard event files: what `coordinator export --tensorboard` writes
//! (every metric of every epoch of every trial as a scalar, one run per
//! trial: `DIR/CONFIGURATION/repeat-N`, and per configuration the latest
//! predictions on the sample items as an image), and a reader that checks
//! them back after writing.
//!
//! The format is TensorBoard's: a file named `events.out.tfevents.*` of
//! records, each a little-endian `u64` length, its masked CRC-32C, the
//! bytes of one `tensorflow.Event` message and their masked CRC-32C. The
//! first event carries the file version; each later one a `Summary` of
//! `simple_value` scalars (32-bit, as TensorBoard keeps them) at a step,
//! here the epoch. The messages below are the fields of `event.proto` and
//! `summary.proto` that these files use, with TensorBoard's field numbers.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use proto::client::AuthChannel;
use proto::v1 as pb;
use proto::v1::sweep_service_client::SweepServiceClient;

/// The version string of the first event of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// `tensorflow.Event`, the fields used here.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The step (here the epoch).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The file version or a summary.
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// What an event holds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The first event of a file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Scalars at the event's step.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// One value per tag.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `tensorflow.Summary.Value`: a scalar, or an image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The value's name, e.g. `test/board_accuracy`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar's value.
    #[prost(float, tag = "2")]
    pub simple_value: f32,
    /// An image.
    #[prost(message, optional, tag = "4")]
    pub image: Option<Image>,
}

/// `tensorflow.Summary.Image`: an encoded PNG.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Pixels down.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Pixels across.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 3 for RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The PNG file's bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// Why an event file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record that is cut short, fails its checksum or does not decode.
    #[error("{path}: record {record} is corrupt: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which record (0-based).
        record: usize,
        /// What is wrong with it.
        why: String,
    },
    /// An image that could not be encoded.
    #[error("encoding a PNG: {0}")]
    Image(String),
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The coordinator refused or went away.
    #[error("{}", .0.message())]
    Rpc(#[from] tonic::Status),
    /// Writing or checking a file failed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A file read back differs from what was written.
    #[error("{path}: read back {found} epochs of scalars, wrote {wrote}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Epochs read back.
        found: usize,
        /// Epochs written.
        wrote: usize,
    },
}

/// What an export wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Runs (trials) written.
    pub runs: usize,
    /// Scalars written, over every run and epoch.
    pub scalars: usize,
    /// Prediction images written (one per configuration that has some).
    pub images: usize,
}

/// A configuration's label as a directory name: `/` and NUL, which a name
/// cannot hold, become `_`.
pub fn run_dir(label: &str) -> String {
    let name: String = label
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if name.is_empty() || name == "." || name == ".." {
        format!("configuration {name}")
    } else {
        name
    }
}

/// Writes every stored epoch of every trial of `sweep` under `dir`, one
/// event file per trial in `dir/CONFIGURATION/repeat-N` (the tag of each
/// scalar `SPLIT/METRIC`, its step the epoch), then reads each file back
/// and checks it. A second export of the same sweep replaces the files.
pub async fn export(
    api: &mut SweepServiceClient<AuthChannel>,
    sweep: i64,
    dir: &Path,
) -> Result<Exported, ExportError> {
    let wall_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut histories = api
        .trial_histories(pb::TrialHistoriesRequest { sweep_id: sweep })
        .await?
        .into_inner();
    let mut exported = Exported::default();
    while let Some(history) = histories.message().await? {
        let trial = history.trial.unwrap_or_default();
        let steps: Vec<(i64, Vec<(String, f32)>)> = history
            .epochs
            .iter()
            .map(|e| {
                let scalars = e
                    .metrics
                    .iter()
                    .map(|m| (format!("{}/{}", m.split, m.name), m.value as f32))
                    .collect();
                (i64::from(e.epoch), scalars)
            })
            .collect();
        let run = dir
            .join(run_dir(&history.label))
            .join(format!("repeat-{}", trial.repeat));
        let name = format!("events.out.tfevents.exp025-trial-{}", trial.id);
        let path = write_scalars(&run, &name, wall_time, &steps)?;
        let found = read_events(&path)?
            .iter()
            .filter(|e| matches!(e.what, Some(What::Summary(_))))
            .count();
        if found != steps.len() {
            return Err(ExportError::Mismatch {
                path,
                found,
                wrote: steps.len(),
            });
        }
        exported.runs += 1;
        exported.scalars += steps.iter().map(|(_, s)| s.len()).sum::<usize>();
    }
    let predictions = api
        .predictions(pb::PredictionsRequest { sweep_id: sweep })
        .await?
        .into_inner();
    for c in &predictions.configurations {
        let run = dir
            .join(run_dir(&c.label))
            .join(format!("repeat-{}", c.repeat));
        let name = format!(
            "events.out.tfevents.exp025-trial-{}-predictions",
            c.trial_id
        );
        let image = predictions_image(&c.samples)?;
        let path = write_events(
            &run,
            &name,
            wall_time,
            &[(
                i64::from(c.epoch),
                vec![Value {
                    tag: PREDICTIONS_TAG.into(),
                    simple_value: 0.0,
                    image: Some(image),
                }],
            )],
        )?;
        let found = read_events(&path)?
            .iter()
            .filter(|e| matches!(&e.what, Some(What::Summary(s)) if s.value.iter().any(|v| v.image.is_some())))
            .count();
        if found != 1 {
            return Err(ExportError::Mismatch {
                path,
                found,
                wrote: 1,
            });
        }
        exported.images += 1;
    }
    Ok(exported)
}

/// The tag of the prediction images.
pub const PREDICTIONS_TAG: &str = "predictions";

/// Pixels per board cell in a prediction image.
const CELL_PX: usize = 4;

/// The predictions on the sample items as one RGB image: a row per item,
/// its input, predicted and true boards side by side (cells of the
/// prediction that differ from the truth in red).
pub fn predictions_image(samples: &[pb::BoardSample]) -> Result<Image, EventError> {
    const GAP: usize = 2 * CELL_PX;
    let (board_w, board_h) = (10 * CELL_PX, 22 * CELL_PX);
    let width = 3 * board_w + 4 * GAP;
    let height = samples.len().max(1) * (board_h + GAP) + GAP;
    let mut pixels = vec![255u8; width * height * 3];
    let mut paint = |x0: usize, y0: usize, cells: &[u8], truth: Option<&[u8]>| {
        for (i, &c) in cells.iter().enumerate().take(220) {
            let wrong = truth.is_some_and(|t| t.get(i) != Some(&c));
            let rgb = match (c == 1, wrong) {
                (true, false) => [51, 51, 68],
                (true, true) => [214, 39, 40],
                (false, true) => [247, 182, 182],
                (false, false) => [238, 238, 238],
            };
            let (cx, cy) = (x0 + (i % 10) * CELL_PX, y0 + (i / 10) * CELL_PX);
            for y in cy..cy + CELL_PX - 1 {
                for x in cx..cx + CELL_PX - 1 {
                    pixels[(y * width + x) * 3..][..3].copy_from_slice(&rgb);
                }
            }
        }
    };
    for (row, s) in samples.iter().enumerate() {
        let y = GAP + row * (board_h + GAP);
        paint(GAP, y, &s.input, None);
        paint(2 * GAP + board_w, y, &s.predicted, Some(&s.truth));
        paint(3 * GAP + 2 * board_w, y, &s.truth, None);
    }
    let mut encoded = Vec::new();
    let mut encoder = png::Encoder::new(&mut encoded, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&pixels))
        .map_err(|e| EventError::Image(e.to_string()))?;
    Ok(Image {
        height: height as i32,
        width: width as i32,
        colorspace: 3,
        encoded_image_string: encoded,
    })
}

/// TensorBoard's CRC-32C mask.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One record's bytes.
fn record(event: &Event) -> Vec<u8> {
    let data = event.encode_to_vec();
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&masked_crc(&data).to_le_bytes());
    out
}

/// Writes the event file `name` (which must hold `tfevents`) in `dir`
/// (made if missing), holding for each `(step, scalars)` one event of its
/// scalars; returns its path.
pub fn write_scalars(
    dir: &Path,
    name: &str,
    wall_time: f64,
    steps: &[(i64, Vec<(String, f32)>)],
) -> Result<PathBuf, EventError> {
    let steps: Vec<(i64, Vec<Value>)> = steps
        .iter()
        .map(|(step, scalars)| {
            let values = scalars
                .iter()
                .map(|(tag, simple_value)| Value {
                    tag: tag.clone(),
                    simple_value: *simple_value,
                    image: None,
                })
                .collect();
            (*step, values)
        })
        .collect();
    write_events(dir, name, wall_time, &steps)
}

/// Writes the event file `name` in `dir` (made if missing), holding for
/// each `(step, values)` one summary event of its values; returns its path.
pub fn write_events(
    dir: &Path,
    name: &str,
    wall_time: f64,
    steps: &[(i64, Vec<Value>)],
) -> Result<PathBuf, EventError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EventError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(name);
    let mut bytes = record(&Event {
        wall_time,
        step: 0,
        what: Some(What::FileVersion(FILE_VERSION.into())),
    });
    for (step, values) in steps {
        bytes.extend(record(&Event {
            wall_time,
            step: *step,
            what: Some(What::Summary(Summary {
                value: values.clone(),
            })),
        }));
    }
    let mut file = std::fs::File::create(&path).map_err(io(&path))?;
    file.write_all(&bytes).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    Ok(path)
}

/// Every event of an event file, each record's length and data checked
/// against their checksums.
pub fn read_events(path: &Path) -> Result<Vec<Event>, EventError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| EventError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut events = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let corrupt = |why: &str| EventError::Corrupt {
            path: path.to_path_buf(),
            record: events.len(),
            why: why.to_string(),
        };
        let (head, tail) = rest
            .split_first_chunk::<12>()
            .ok_or_else(|| corrupt("cut short in its header"))?;
        let (length, crc) = head.split_at(8);
        if masked_crc(length).to_le_bytes() != crc {
            return Err(corrupt("length checksum mismatch"));
        }
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes")) as usize;
        if tail.len() < length.saturating_add(4) {
            return Err(corrupt("cut short in its data"));
        }
        let (data, tail) = tail.split_at(length);
        let (crc, tail) = tail.split_at(4);
        if masked_crc(data).to_le_bytes() != crc {
            return Err(corrupt("data checksum mismatch"));
        }
        events.push(Event::decode(data).map_err(|e| corrupt(&e.to_string()))?);
        rest = tail;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_directory_names() {
        assert_eq!(run_dir("init=smart lr=0.001"), "init=smart lr=0.001");
        assert_eq!(run_dir("dataset=a/b"), "dataset=a_b");
        assert_eq!(run_dir(".."), "configuration ..");
    }

    #[test]
    fn the_crc_is_crc32c_masked_as_tensorflow_masks_it() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720's check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn written_scalars_read_back_and_damage_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let steps = vec![
            (1, vec![("test/board_accuracy".to_string(), 0.25f32)]),
            (2, vec![("test/board_accuracy".to_string(), f32::NAN)]),
        ];
        let path = write_scalars(dir.path(), "events.out.tfevents.t", 1.7e9, &steps).unwrap();
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        );
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, Some(What::FileVersion(FILE_VERSION.into())));
        let Some(What::Summary(s)) = &events[2].what else {
            panic!("{events:?}");
        };
        assert_eq!(events[2].step, 2);
        assert!(s.value[0].simple_value.is_nan());

        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(
            err.contains("record 2 is corrupt: data checksum mismatch"),
            "{err}"
        );
        std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(err.contains("record 2 is corrupt: cut short"), "{err}");
    }
}
