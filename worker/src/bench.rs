//! `worker bench`: seconds per epoch (training plus evaluation of both
//! splits) at batch 4, optionally beside the PyTorch reference
//! `bench_torch.py` run in the same invocation, with the ratio; with
//! `--packs`, sweep throughput instead: trial-epochs per second of packs of
//! K trials trained as one computation, beside PyTorch's own fused training
//! (`bench_torch_packed.py`) and PyTorch training one trial per process,
//! a process per core (`bench_torch.py`). Each runs on the same number of
//! CPU threads (one unless told), like for like.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::dataset::DatasetSpec;
use crate::init::InitScheme;
use crate::train::{TrainConfig, Trainer, run_epochs};

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
    /// Pack sizes to measure sweep throughput at, instead of one trial's
    /// epoch.
    pub packs: Option<Vec<usize>>,
    /// `bench_torch_packed.py`, PyTorch's fused training, for `packs`.
    pub torch_packed: Option<PathBuf>,
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

fn recordings(opts: &BenchOptions) -> Result<std::sync::Arc<crate::datagen::Dataset>> {
    Ok(std::sync::Arc::new(
        DatasetSpec::Recordings {
            path: opts.data.clone(),
        }
        .load()?,
    ))
}

/// The benchmark's trial with `seed`: the notebook's settings at batch 4.
fn bench_config(opts: &BenchOptions, seed: u64) -> TrainConfig {
    TrainConfig {
        gen_init: opts.init,
        disc_init: opts.init,
        glob_relu: opts.init == InitScheme::Smart,
        epochs: opts.epochs,
        seed,
        ..TrainConfig::default()
    }
}

/// Times `epochs` epochs of our trainer on the recordings in `data`.
pub fn candle_epochs(opts: &BenchOptions) -> Result<Value> {
    let data = recordings(opts)?;
    let device = crate::device::parse(&opts.device)?;
    let mut trainer = Trainer::new(bench_config(opts, 0), data.clone(), &device)?;
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

/// Runs a PyTorch reference script on the same data, threads and epochs
/// with `args`, and returns what it printed (JSON lines).
fn run_script(opts: &BenchOptions, script: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(&opts.python)
        .arg(script)
        .args(["--json", "--threads", &opts.threads.to_string()])
        .args(["--epochs", &opts.epochs.to_string()])
        .args(args)
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
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs the PyTorch reference benchmark on the same data and threads.
pub fn torch_epochs(opts: &BenchOptions, script: &Path) -> Result<Value> {
    let init = match opts.init {
        InitScheme::Kaiming { .. } => {
            bail!("bench_torch.py takes default, smart or kaiming_fan_in|out")
        }
        other => other.to_string(),
    };
    let line = run_script(opts, script, &["--init", &init])?;
    let first = line
        .lines()
        .next()
        .context("bench_torch.py printed nothing")?;
    Ok(serde_json::from_str(first)?)
}

/// Sweep throughput: for each pack size K, `epochs` epochs of K trials
/// (seeds 0..K) trained as one pack; the best epoch gives trial-epochs per
/// second, as `bench_torch_packed.py` reports its own.
pub fn candle_packs(opts: &BenchOptions, packs: &[usize]) -> Result<Vec<Value>> {
    let data = recordings(opts)?;
    let device = crate::device::parse(&opts.device)?;
    packs
        .iter()
        .map(|&k| {
            let mut trainers = (0..k as u64)
                .map(|seed| Trainer::new(bench_config(opts, seed), data.clone(), &device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let mut times = Vec::new();
            let mut accuracy = 0.0;
            for _ in 0..opts.epochs {
                let start = std::time::Instant::now();
                let reports = run_epochs(&mut trainers.iter_mut().collect::<Vec<_>>())?;
                times.push(start.elapsed().as_secs_f64());
                accuracy = reports
                    .iter()
                    .map(|r| r.test.counts.board_accuracy())
                    .sum::<f64>()
                    / k as f64;
            }
            let best = times.iter().copied().fold(f64::INFINITY, f64::min);
            eprintln!("candle pack {k}: {:.3} s per trial-epoch", best / k as f64);
            Ok(json!({
                "impl": "candle-packed",
                "device": opts.device,
                "threads": opts.threads,
                "pack": k,
                "epoch_s": times,
                "trial_epochs_per_s": k as f64 / best,
                "s_per_trial_epoch": best / k as f64,
                "test_board_accuracy_mean": accuracy,
            }))
        })
        .collect()
}

/// Runs PyTorch's fused training of K trials for each pack size.
pub fn torch_packs(opts: &BenchOptions, script: &Path, packs: &[usize]) -> Result<Vec<Value>> {
    let packs: Vec<String> = packs.iter().map(usize::to_string).collect();
    let init = match opts.init {
        InitScheme::Default | InitScheme::Smart => opts.init.to_string(),
        _ => bail!("bench_torch_packed.py takes default or smart"),
    };
    run_script(
        opts,
        script,
        &["--init", &init, "--packs", &packs.join(",")],
    )?
    .lines()
    .map(|line| Ok(serde_json::from_str(line)?))
    .collect()
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
    if let Some(packs) = &opts.packs {
        let candle = candle_packs(opts, packs)?;
        let one = candle[0]["trial_epochs_per_s"].as_f64().unwrap_or(f64::NAN);
        let mut rows: Vec<Value> = candle
            .into_iter()
            .map(|row| {
                let rate = row["trial_epochs_per_s"].as_f64().unwrap_or(f64::NAN);
                json!({ "pack": row["pack"], "candle": row, "speedup_vs_first_pack": rate / one })
            })
            .collect();
        if let Some(script) = &opts.torch_packed {
            for (row, torch) in rows.iter_mut().zip(torch_packs(opts, script, packs)?) {
                let ours = row["candle"]["trial_epochs_per_s"].as_f64();
                let theirs = torch["trial_epochs_per_s"].as_f64();
                if let (Some(ours), Some(theirs)) = (ours, theirs) {
                    row["speedup_vs_torch_packed"] = json!(ours / theirs);
                }
                row["torch_packed"] = torch;
            }
        }
        let mut report = json!({});
        if let Some(script) = &opts.torch_script {
            // PyTorch one trial per process, a process per core (thread):
            // a core's trial-epochs per second are one over its epoch.
            let torch = torch_epochs(opts, script)?;
            let theirs = 1.0 / torch["min_total_s"].as_f64().unwrap_or(f64::NAN);
            for row in rows.iter_mut() {
                let ours = row["candle"]["trial_epochs_per_s"]
                    .as_f64()
                    .unwrap_or(f64::NAN);
                row["speedup_vs_torch_per_core"] = json!(ours / theirs);
            }
            report["torch_per_core"] = torch;
        }
        report["packs"] = json!(rows);
        println!("{}", serde_json::to_string_pretty(&report)?);
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
