//! Packing changes speed, never results: on the CPU, a trial trained in a
//! pack reports the same bits every epoch and ends with the same
//! checkpoint (to the byte) as the trial trained alone, whatever it is
//! packed with, and a trial resumed from a checkpoint into another pack
//! goes on exactly as it would have alone.

use std::sync::Arc;

use candle_core::Device;
use proto::metrics::Metric;
use worker::checkpoint;
use worker::datagen::{Dataset, GeneratedSpec, generate};
use worker::init::{Distribution, FanMode, InitScheme};
use worker::train::{EpochReport, TrainConfig, Trainer, run_epochs};

fn data() -> Arc<Dataset> {
    Arc::new(generate(&GeneratedSpec {
        seed: 5,
        train: 26,
        test: 18,
        pairing: Default::default(),
    }))
}

/// Four trials that differ in everything a pack may mix: init schemes, the
/// glob ReLU, learning rates, betas and seeds.
fn configs() -> Vec<TrainConfig> {
    let base = TrainConfig {
        epochs: 4,
        ..TrainConfig::default()
    };
    vec![
        TrainConfig { seed: 1, ..base },
        TrainConfig {
            gen_init: InitScheme::Smart,
            disc_init: InitScheme::Smart,
            glob_relu: true,
            lr: 3e-3,
            seed: 2,
            ..base
        },
        TrainConfig {
            gen_init: InitScheme::Kaiming {
                fan: FanMode::FanOut,
                dist: Distribution::Normal,
                zero_bias: true,
            },
            lr: 1e-3,
            beta1: 0.5,
            beta2: 0.99,
            seed: 3,
            ..base
        },
        TrainConfig {
            disc_init: InitScheme::Kaiming {
                fan: FanMode::FanIn,
                dist: Distribution::Uniform,
                zero_bias: false,
            },
            glob_relu: true,
            lr: 2e-4,
            seed: 4,
            ..base
        },
    ]
}

/// Every metric of an epoch as bits (NaN included), but its timings.
fn bits(report: &EpochReport) -> Vec<(String, u64)> {
    let timing = [
        Metric::EpochSeconds,
        Metric::TrainSeconds,
        Metric::ItemsPerSecond,
    ];
    report
        .metrics()
        .into_iter()
        .filter(|m| !timing.contains(&m.metric))
        .map(|m| {
            (
                format!("{}.{}", m.split.name(), m.metric.name()),
                m.value.to_bits(),
            )
        })
        .collect()
}

fn alone(config: TrainConfig, data: &Arc<Dataset>, epochs: u32) -> (Vec<EpochReport>, Vec<u8>) {
    let mut trainer = Trainer::new(config, data.clone(), &Device::Cpu).unwrap();
    let reports = (0..epochs).map(|_| trainer.run_epoch().unwrap()).collect();
    (reports, checkpoint::save(&trainer).unwrap())
}

#[test]
fn a_pack_of_four_trains_each_trial_bit_for_bit_as_alone() {
    let data = data();
    let mut trainers: Vec<Trainer> = configs()
        .into_iter()
        .map(|c| Trainer::new(c, data.clone(), &Device::Cpu).unwrap())
        .collect();
    let mut packed: Vec<Vec<EpochReport>> = vec![Vec::new(); trainers.len()];
    for _ in 0..3 {
        let mut pack: Vec<&mut Trainer> = trainers.iter_mut().collect();
        for (k, report) in run_epochs(&mut pack).unwrap().into_iter().enumerate() {
            packed[k].push(report);
        }
    }
    for (k, (config, trainer)) in configs().into_iter().zip(&trainers).enumerate() {
        let (reports, state) = alone(config, &data, 3);
        for (epoch, (p, a)) in packed[k].iter().zip(&reports).enumerate() {
            assert_eq!(p.epoch, a.epoch);
            assert_eq!(bits(p), bits(a), "trial {k}, epoch {}", epoch + 1);
        }
        assert!(
            checkpoint::save(trainer).unwrap() == state,
            "trial {k}: the packed checkpoint differs from the one trained alone"
        );
    }
}

#[test]
fn a_trial_resumed_into_another_pack_goes_on_as_alone() {
    let data = data();
    let configs = configs();
    // Trial 1 trains two epochs in a pack with trial 0, and is checkpointed.
    let mut first: Vec<Trainer> = configs[..2]
        .iter()
        .map(|c| Trainer::new(*c, data.clone(), &Device::Cpu).unwrap())
        .collect();
    for _ in 0..2 {
        run_epochs(&mut first.iter_mut().collect::<Vec<_>>()).unwrap();
    }
    let saved = checkpoint::save(&first[1]).unwrap();

    // It resumes in another pack, beside two fresh trials, and runs to its end.
    let mut resumed = Trainer::new(configs[1], data.clone(), &Device::Cpu).unwrap();
    checkpoint::load(&mut resumed, &saved).unwrap();
    let fresh = |c| Trainer::new(c, data.clone(), &Device::Cpu).unwrap();
    let (mut before, mut behind) = (fresh(configs[2]), fresh(configs[3]));
    let mut after = Vec::new();
    for _ in 0..2 {
        let mut pack: Vec<&mut Trainer> = vec![&mut before, &mut resumed, &mut behind];
        after.push(run_epochs(&mut pack).unwrap().remove(1));
    }

    let (reports, state) = alone(configs[1], &data, 4);
    for (p, a) in after.iter().zip(&reports[2..]) {
        assert_eq!(p.epoch, a.epoch);
        assert_eq!(bits(p), bits(a), "epoch {}", a.epoch);
    }
    assert!(checkpoint::save(&resumed).unwrap() == state);
}

#[test]
fn trials_that_change_tensor_shapes_are_not_packed() {
    let data = data();
    let configs = configs();
    let mut a = Trainer::new(configs[0], data.clone(), &Device::Cpu).unwrap();
    let mut b = Trainer::new(
        TrainConfig {
            batch_size: 8,
            ..configs[1]
        },
        data.clone(),
        &Device::Cpu,
    )
    .unwrap();
    assert!(!a.packs_with(&b));
    let err = run_epochs(&mut [&mut a, &mut b]).unwrap_err();
    assert!(err.to_string().contains("cannot share a pack"), "{err}");
    let other_data = self::data();
    let c = Trainer::new(configs[2], other_data, &Device::Cpu).unwrap();
    assert!(
        !a.packs_with(&c),
        "another dataset, even an equal one, is another pack"
    );
}
