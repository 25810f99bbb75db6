//! `worker datagen` and `worker train` as separate processes: seeded runs
//! repeat bit for bit, and a run saved after 2 epochs and resumed in a fresh
//! process for 2 more equals 4 epochs straight.

use std::path::Path;
use std::process::Command;

use candle_core::Device;
use serde_json::Value;

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

fn worker(args: &[&str]) -> String {
    let out = Command::new(WORKER).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "worker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Epoch lines without the wall-clock figures, which differ run to run.
fn metrics(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            let train = v["train"].as_object_mut().unwrap();
            for timing in ["epoch_seconds", "train_seconds", "items_per_second"] {
                assert!(train.remove(timing).is_some(), "{timing} reported");
            }
            v
        })
        .collect()
}

fn dataset(dir: &Path) -> String {
    let data = dir.join("data");
    let summary = worker(&[
        "datagen",
        "--out",
        data.to_str().unwrap(),
        "--seed",
        "5",
        "--train",
        "24",
        "--test",
        "8",
    ]);
    assert!(summary.contains("train: 24 items"), "{summary}");
    data.to_str().unwrap().to_string()
}

fn train(data: &str, epochs: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "--data",
        data,
        "--epochs",
        epochs,
        "--seed",
        "3",
        "--init",
        "smart",
        "--batch-size",
        "5",
    ];
    args.extend_from_slice(extra);
    worker(&args)
}

#[test]
fn the_same_seed_gives_bit_identical_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let first = metrics(&train(&data, "2", &[]));
    assert_eq!(first.len(), 2);
    assert_eq!(first, metrics(&train(&data, "2", &[])));
    let other_seed = metrics(&worker(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "2",
        "--seed",
        "4",
        "--init",
        "smart",
        "--batch-size",
        "5",
    ]));
    assert_ne!(first, other_seed);
}

#[test]
fn resuming_from_a_checkpoint_equals_training_straight_through() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let straight = metrics(&train(
        &data,
        "4",
        &["--save", &path("straight.safetensors")],
    ));
    let first_half = metrics(&train(&data, "2", &["--save", &path("half.safetensors")]));
    let second_half = metrics(&train(
        &data,
        "4",
        &[
            "--resume",
            &path("half.safetensors"),
            "--save",
            &path("resumed.safetensors"),
        ],
    ));
    assert_eq!(first_half, straight[..2]);
    assert_eq!(second_half, straight[2..]);

    let load = |name: &str| candle_core::safetensors::load(path(name), &Device::Cpu).unwrap();
    let (a, b) = (load("straight.safetensors"), load("resumed.safetensors"));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let (x, y) = (t.flatten_all().unwrap(), b[name].flatten_all().unwrap());
        assert_eq!(
            x.to_vec1::<f32>().unwrap(),
            y.to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_checkpoint_of_another_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let ckpt = dir.path().join("c.safetensors");
    train(&data, "1", &["--save", ckpt.to_str().unwrap()]);
    let out = Command::new(WORKER)
        .args([
            "train", "--data", &data, "--epochs", "2", "--seed", "3", "--init", "default",
        ])
        .args(["--batch-size", "5", "--resume", ckpt.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another configuration"), "{err}");
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    for (args, reason) in [
        (vec!["--epochs", "0"], "epochs: must be at least 1"),
        (
            vec!["--epochs", "1", "--init", "xavier"],
            "unknown init scheme",
        ),
        (
            vec!["--epochs", "1", "--lr=-1"],
            "lr: must be a positive number",
        ),
        (
            vec!["--epochs", "1", "--beta1", "1.5"],
            "beta1: must lie in [0, 1)",
        ),
        (
            vec!["--epochs", "1", "--batch-size", "0"],
            "batch_size: must be at least 1",
        ),
        (vec!["--epochs", "1", "--gen-init", "smart"], ""),
        (vec!["--epochs", "1", "--device", "tpu:0"], "unknown device"),
    ] {
        let out = Command::new(WORKER)
            .args(["train", "--generate", "1:8:4"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if reason.is_empty() {
            // Smart init implies the generator's glob ReLU: accepted.
            assert!(out.status.success(), "{args:?}: {err}");
        } else {
            assert!(
                !out.status.success() && err.contains(reason),
                "{args:?}: {err}"
            );
        }
    }
}

#[test]
fn a_yaml_trial_file_sets_the_trial_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trial.yaml");
    std::fs::write(
        &file,
        "dataset:\n  generated: {seed: 2, train: 12, test: 4}\ngen_init: kaiming_fan_out_zero_bias\n\
         disc_init: kaiming_fan_out_zero_bias\nepochs: 3\nseed: 8\nbatch_size: 4\n",
    )
    .unwrap();
    let from_file = metrics(&worker(&["train", "--config", file.to_str().unwrap()]));
    assert_eq!(from_file.len(), 3);
    let overridden = metrics(&worker(&[
        "train",
        "--config",
        file.to_str().unwrap(),
        "--epochs",
        "1",
    ]));
    assert_eq!(overridden[..], from_file[..1]);

    std::fs::write(&file, "epochs: 3\nlearning_rate: 0.1\n").unwrap();
    let out = Command::new(WORKER)
        .args(["train", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown field `learning_rate`") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn datagen_writes_byte_identical_files_for_the_same_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let generate = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        worker(&[
            "datagen",
            "--out",
            out.to_str().unwrap(),
            "--seed",
            seed,
            "--train",
            "30",
            "--test",
            "10",
            "--pairs",
            "overlapping",
        ]);
        out
    };
    let (a, b, c) = (generate("a", "9"), generate("b", "9"), generate("c", "10"));
    let bytes = |root: &Path, split: &str, i: usize| {
        std::fs::read(root.join(split).join(format!("{i}.npy"))).unwrap()
    };
    let mut differs = false;
    for (split, n) in [("train", 30), ("test", 10)] {
        for i in 0..n {
            assert_eq!(bytes(&a, split, i), bytes(&b, split, i), "{split}/{i}.npy");
            differs |= bytes(&a, split, i) != bytes(&c, split, i);
        }
        assert!(!a.join(split).join(format!("{n}.npy")).exists());
    }
    assert!(differs, "another seed gives other recordings");
    let again = Command::new(WORKER)
        .args([
            "datagen",
            "--out",
            a.to_str().unwrap(),
            "--seed",
            "1",
            "--train",
            "2",
            "--test",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        !again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not empty")
    );
}
