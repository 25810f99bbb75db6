//! Does method bayes find better configurations than random search within
//! the same budget? (A benchmark, not a test.)
//!
//! The objective is a stand-in with a known optimum, so nothing trains:
//! simulated workers report, through a real coordinator (gRPC on an
//! ephemeral 127.0.0.1 port, a SQLite file), a test board accuracy that
//! rises over the epochs towards a smooth function of lr (log scale), beta1
//! and init, plus per-seed noise. Each search seed runs both methods on the
//! same budget; the figure is the true (noise-free) objective of the best
//! configuration each found, by its measured mean over repeats.
//!
//! `cargo bench -p coordinator --bench search` (`EXP025_BENCH_SEEDS`,
//! default 8, sets the number of search seeds).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::spec;
use coordinator::testing;
use proto::v1::{self as pb, TrialConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BUDGET: u32 = 40;
const REPEATS: u32 = 2;
const EPOCHS: u32 = 4;
const WORKERS: usize = 4;

/// The noise-free objective: best at lr = 10^-3.3, beta1 = 0.62, smart
/// init, where it is 0.95.
fn truth(c: &TrialConfig) -> f64 {
    let key = spec::config_key(c);
    let init = if key.contains("gen_init=smart") {
        0.05
    } else if key.contains("gen_init=kaiming_fan_in") {
        0.02
    } else {
        0.0
    };
    let lr = (-(c.lr.log10() + 3.3).powi(2) / (2.0 * 0.35f64.powi(2))).exp();
    let beta1 = 1.0 - 1.5 * (c.beta1 - 0.62).powi(2);
    (0.9 * lr * beta1 + init).max(0.0)
}

/// What a worker reports at an epoch: the objective approached over the
/// epochs, with noise drawn from the trial's seed and the epoch.
fn report(c: &TrialConfig, epoch: u32) -> Vec<pb::Metric> {
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed * 1000 + u64::from(epoch) + c.lr.to_bits());
    let noise = 0.03 * (rng.random::<f64>() - 0.5);
    let value = truth(c) * (1.0 - 0.5f64.powi(epoch as i32)) + noise;
    vec![pb::Metric {
        split: "test".into(),
        name: "board_accuracy".into(),
        value,
    }]
}

fn sweep(method: &str, seed: u64) -> String {
    let extra = if method == "bayes" {
        "startup: 10\nparallel: 4\n"
    } else {
        ""
    };
    format!(
        "name: {method}-{seed}\nmethod: {method}\nbudget: {BUDGET}\nsearch_seed: {seed}\n{extra}\
         repeats: {REPEATS}\nmetric: {{name: board_accuracy, split: test}}\n\
         dataset: {{generated: {{seed: 1, train: 8, test: 4}}}}\n\
         parameters:\n  lr: {{distribution: log_uniform, min: 0.00001, max: 0.1}}\n\
         \x20 beta1: {{distribution: uniform, min: 0.0, max: 0.99}}\n\
         \x20 init: {{values: [default, kaiming_fan_in_zero_bias, kaiming_fan_out_zero_bias, smart]}}\n\
         \x20 epochs: {{value: {EPOCHS}}}\n"
    )
}

/// Runs one sweep to its end; returns the true objective of the
/// configuration with the best measured mean at the last epoch, and of the
/// best configuration proposed.
async fn search(server: &testing::Running, yaml: &str) -> (f64, f64) {
    let sweep = testing::submit(&server.url(), yaml).await.id;
    let store = &server.store;
    testing::wait_until("the sweep to end", Duration::from_secs(600), || async {
        store.sweep(sweep).await.unwrap().unwrap().is_done()
    })
    .await;
    let results = coordinator::results::results(
        store,
        &pb::ResultsRequest {
            sweep_id: sweep,
            split: "test".into(),
            epoch: None,
            summaries_only: false,
        },
    )
    .await
    .unwrap();
    let configs: HashMap<String, TrialConfig> = store
        .trials(sweep)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.config_key, t.config))
        .collect();
    assert_eq!(configs.len() as u32, BUDGET);
    let measured = |c: &pb::ConfigurationResult| {
        c.metrics
            .iter()
            .find(|m| m.name == "board_accuracy")
            .and_then(|m| m.summary)
            .map_or(f64::NEG_INFINITY, |s| s.mean)
    };
    let chosen = results
        .configurations
        .iter()
        .max_by(|a, b| measured(a).total_cmp(&measured(b)))
        .unwrap();
    let best = configs
        .values()
        .map(truth)
        .fold(f64::NEG_INFINITY, f64::max);
    (truth(&configs[&chosen.config_key]), best)
}

#[tokio::main]
async fn main() {
    let seeds: u64 = std::env::var("EXP025_BENCH_SEEDS").map_or(8, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("search.db").display());
    let server = testing::start(&url, Duration::from_secs(30), 3).await;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let reporter: Arc<testing::Reporter> = Arc::new(report);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            tokio::spawn(testing::simulated_worker(
                server.url(),
                reporter.clone(),
                stopping.clone(),
            ))
        })
        .collect();
    println!(
        "budget {BUDGET} configurations x {REPEATS} repeats, {EPOCHS} epochs, {WORKERS} simulated \
         workers; the optimum's objective is 0.95\n"
    );
    println!(
        "{:>4}  {:>14} {:>14}  {:>14} {:>14}",
        "seed", "random chosen", "bayes chosen", "random best", "bayes best"
    );
    let started = Instant::now();
    let mut totals = [0.0; 4];
    let mut wins = 0;
    for seed in 0..seeds {
        let (random_chosen, random_best) = search(&server, &sweep("random", seed)).await;
        let (bayes_chosen, bayes_best) = search(&server, &sweep("bayes", seed)).await;
        println!(
            "{seed:>4}  {random_chosen:>14.4} {bayes_chosen:>14.4}  {random_best:>14.4} {bayes_best:>14.4}"
        );
        for (t, v) in totals
            .iter_mut()
            .zip([random_chosen, bayes_chosen, random_best, bayes_best])
        {
            *t += v;
        }
        wins += u32::from(bayes_chosen > random_chosen);
    }
    let n = seeds as f64;
    println!(
        "{:>4}  {:>14.4} {:>14.4}  {:>14.4} {:>14.4}",
        "mean",
        totals[0] / n,
        totals[1] / n,
        totals[2] / n,
        totals[3] / n
    );
    println!(
        "\nbayes chose a better configuration than random search on {wins} of {seeds} seeds; \
         mean regret {:.4} (bayes) against {:.4} (random); {:.1} s",
        0.95 - totals[1] / n,
        0.95 - totals[0] / n,
        started.elapsed().as_secs_f64()
    );
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    server.stop().await;
}
