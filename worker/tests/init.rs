//! Sampled initial weights of every scheme against the distributions in the
//! fixtures' init_stats.json (computed from PyTorch's init functions).

use std::path::PathBuf;

use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use worker::init::{Distribution, FanMode, InitScheme};
use worker::model::{Discriminator, Generator};
use worker::tensors::NamedTensors;

fn stats() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/init_stats.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_against(params: &NamedTensors, expected: &serde_json::Map<String, Value>, what: &str) {
    let mut checked = 0;
    let trial = params.snapshot(0, "").unwrap();
    for (name, _, _) in params.iter() {
        let var = &trial[name];
        let e = &expected[name];
        let key = format!("{what}.{name}");
        let dims: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(var.dims(), &dims[..], "{key}: shape");
        let v: Vec<f64> = var
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        match e["dist"].as_str().unwrap() {
            "constant" => {
                let value = e["value"].as_f64().unwrap() as f32 as f64;
                assert!(v.iter().all(|&x| x == value), "{key}: not all {value}");
            }
            "uniform" => {
                let bound = e["bound"].as_f64().unwrap();
                let max = v.iter().fold(0f64, |m, x| m.max(x.abs()));
                assert!(max <= bound, "{key}: |w| {max} above bound {bound}");
                if v.len() >= 64 {
                    let n = v.len() as f64;
                    let mean = v.iter().sum::<f64>() / n;
                    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
                    let rel = var / e["variance"].as_f64().unwrap() - 1.0;
                    let allowed = 5.0 * e["variance_rel_std"].as_f64().unwrap();
                    assert!(
                        rel.abs() < allowed,
                        "{key}: variance off by {rel} (allowed {allowed})"
                    );
                    assert!(
                        max > 0.9 * bound,
                        "{key}: max |w| {max} far below bound {bound}"
                    );
                }
            }
            other => panic!("{key}: unexpected dist {other}"),
        }
        checked += 1;
    }
    let in_fixture = expected
        .keys()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .count();
    assert_eq!(checked, in_fixture, "{what}: every fixture tensor checked");
}

#[test]
fn every_scheme_samples_the_fixture_distributions() {
    let stats = stats();
    let schemes = stats["init"].as_object().unwrap();
    assert_eq!(schemes.len(), 6);
    for (name, nets) in schemes {
        let scheme: InitScheme = name.parse().unwrap();
        for seed in 0..3 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let generator =
                Generator::new(scheme, scheme == InitScheme::Smart, &mut rng, &Device::Cpu)
                    .unwrap();
            let discriminator = Discriminator::new(scheme, &mut rng, &Device::Cpu).unwrap();
            check_against(
                &generator.tensors,
                nets["gen"].as_object().unwrap(),
                &format!("{name}.gen"),
            );
            check_against(
                &discriminator.tensors,
                nets["disc"].as_object().unwrap(),
                &format!("{name}.disc"),
            );
        }
    }
}

#[test]
fn kaiming_normal_has_the_kaiming_variance() {
    for (fan, pick) in [(FanMode::FanIn, 0), (FanMode::FanOut, 1)] {
        let scheme = InitScheme::Kaiming {
            fan,
            dist: Distribution::Normal,
            zero_bias: true,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let generator = Generator::new(scheme, false, &mut rng, &Device::Cpu).unwrap();
        // head.0: Conv2d(26, 16, 3): fan_in 234, fan_out 144.
        let fans = [26.0 * 9.0, 16.0 * 9.0];
        let w: Vec<f32> = generator
            .tensors
            .get("head.0.weight")
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let n = w.len() as f64;
        let var = w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n;
        let expected = 2.0 / fans[pick];
        assert!(
            (var / expected - 1.0).abs() < 5.0 * (2.0 / n).sqrt(),
            "{fan:?}: {var} vs {expected}"
        );
        assert!(
            w.iter()
                .any(|&x| f64::from(x).abs() > 2.0 * expected.sqrt()),
            "normal tails present"
        );
    }
}
