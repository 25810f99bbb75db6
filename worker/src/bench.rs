//! `worker bench`: seconds per epoch (training plus evaluation of both
//! splits) at batch 4, optionally beside the PyTorch reference
//! `bench_torch.py` run in the same invocation, with the ratio. Both run on
//! the same number of CPU threads (one unless told), like for like.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::dataset::DatasetSpec;
use crate::init::InitScheme;
use crate::train::{TrainConfig, Trainer};

/// What to measure.
#[derive(Debug)]
pub struct BenchOptions {
    /// The recordings directory.
    pub data: PathBuf,
    /// Epochs timed (the median is reported).
    pub epochs: u32,
    /// Init scheme of both networks.
    pub init: InitScheme,
    /// `bench_torch.py`, run with `python` for the baseline.
    pub torch_script: Option<PathBuf>,
    /// The Python interpreter for the PyTorch script.
    pub python: String,
    /// CPU threads of both, ours and PyTorch's.
    pub threads: std::num::NonZeroUsize,
    /// Where ours trains: `cpu` or `cuda:N`.
    pub device: String,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Times `epochs` epochs of our trainer on the recordings in `data`.
pub fn candle_epochs(opts: &BenchOptions) -> Result<Value> {
    let data = DatasetSpec::Recordings {
        path: opts.data.clone(),
    }
    .load()?;
    let config = TrainConfig {
        gen_init: opts.init,
        disc_init: opts.init,
        glob_relu: opts.init == InitScheme::Smart,
        epochs: opts.epochs,
        seed: 0,
        ..TrainConfig::default()
    };
    let device = crate::device::parse(&opts.device)?;
    let mut trainer = Trainer::new(config, &data.train, &data.test, &device)?;
    let (mut train_s, mut eval_s, mut total_s) = (vec![], vec![], vec![]);
    for _ in 0..opts.epochs {
        let report = trainer.run_epoch()?;
        eprintln!("candle epoch {}: {:.2} s", report.epoch, report.seconds);
        train_s.push(report.train_seconds);
        eval_s.push(report.seconds - report.train_seconds);
        total_s.push(report.seconds);
    }
    Ok(json!({
        "impl": "candle",
        "device": opts.device,
        "threads": opts.threads,
        "train_s": train_s,
        "eval_s": eval_s,
        "total_s": total_s.clone(),
        "min_total_s": total_s.iter().copied().fold(f64::INFINITY, f64::min),
        "median_total_s": median(&mut total_s),
        "n_train": data.train.len(),
        "n_test": data.test.len(),
        "batch_size": 4,
        "init": opts.init.to_string(),
    }))
}

/// Runs the PyTorch reference benchmark on the same data and threads.
pub fn torch_epochs(opts: &BenchOptions, script: &Path) -> Result<Value> {
    let init = match opts.init {
        InitScheme::Kaiming { .. } => {
            bail!("bench_torch.py takes default, smart or kaiming_fan_in|out")
        }
        other => other.to_string(),
    };
    let out = Command::new(&opts.python)
        .arg(script)
        .args(["--json", "--threads", &opts.threads.to_string()])
        .args(["--init", &init])
        .args(["--epochs", &opts.epochs.to_string()])
        .arg("--data")
        .arg(&opts.data)
        .output()
        .with_context(|| format!("running {} {}", opts.python, script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8(out.stdout)?;
    let first = line
        .lines()
        .next()
        .context("bench_torch.py printed nothing")?;
    Ok(serde_json::from_str(first)?)
}

/// Measures ours, then the baseline if given, and prints one JSON object.
///
/// candle reads its thread count from `RAYON_NUM_THREADS` whenever it
/// multiplies, so the benchmark runs itself again with that set to
/// `threads` unless it already is.
pub fn run(opts: &BenchOptions) -> Result<()> {
    let threads = opts.threads.to_string();
    if std::env::var("RAYON_NUM_THREADS").ok() != Some(threads.clone()) {
        let status = Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env("RAYON_NUM_THREADS", &threads)
            .status()
            .context("running the benchmark on its threads")?;
        if !status.success() {
            bail!("the benchmark failed ({status})");
        }
        return Ok(());
    }
    let candle = candle_epochs(opts)?;
    let mut report = json!({ "candle": candle });
    if let Some(script) = &opts.torch_script {
        let torch = torch_epochs(opts, script)?;
        let ours = report["candle"]["median_total_s"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let theirs = torch["median_total_s"].as_f64().unwrap_or(f64::NAN);
        report["torch"] = torch;
        report["speedup_vs_torch"] = json!(theirs / ours);
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
