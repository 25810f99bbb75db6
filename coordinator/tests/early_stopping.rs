//! Early stopping through real parts: a coordinator on an ephemeral
//! 127.0.0.1 port (SQLite, and Postgres when given), two worker processes
//! training for real, and a sweep whose outcome is known in advance: a
//! learning rate of 1e-12 cannot learn, 1e-3 does. The hopeless
//! configurations are stopped at the first rung (their queued repeats never
//! start), the good ones run to the end, and a second run decides the same.

use std::time::Duration;

use coordinator::store::{Store, status};
use coordinator::testing::{self, wait_until};
use proto::v1 as pb;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

/// Two learning rates x two epoch counts, 3 repeats, judged at epoch 2 on
/// two repeats (with two workers the first repeat runs a few epochs ahead
/// of the second, and the third is queued). Up to the rung both
/// good configurations train identically (same lr, same seeds), so neither
/// can be behind the other there; the discriminator of a configuration that
/// cannot learn stays at accuracy 0.5, the others reach about 1.
fn sweep(rule: &str) -> String {
    format!(
        "name: hopeless\nrepeats: 3\nmetric: {{name: disc_accuracy, split: test}}\n\
         dataset: {{generated: {{seed: 1, train: 100, test: 40}}}}\n\
         parameters:\n  lr: {{values: [0.001, 1.0e-12]}}\n  epochs: {{values: [10, 12]}}\n\
         \x20 batch_size: {{value: 4}}\n\
         early_stopping: {rule}\n"
    )
}

/// What the rule decided, trial by trial: (configuration, repeat, status,
/// rung, reason).
type Decisions = Vec<(String, u32, String, u32, String)>;

async fn run(server: &testing::Running, yaml: &str) -> Decisions {
    let sweep = testing::submit(&server.url(), yaml).await.id;
    let store: &Store = &server.store;
    wait_until("the sweep to end", Duration::from_secs(240), || async {
        store
            .sweep(sweep)
            .await
            .unwrap()
            .is_some_and(|s| s.is_done())
    })
    .await;
    let trials = store.trials(sweep).await.unwrap();
    for t in &trials {
        let hopeless = t.config.lr < 1e-9;
        if hopeless {
            assert_eq!(t.status, status::STOPPED, "trial {t:?}");
            assert_eq!(t.stop_epoch, 2, "stopped at the first rung");
            assert!(
                t.epochs_done < t.config.epochs,
                "trial {t:?} ran to the end"
            );
            assert!(t.error.is_empty(), "a stopped trial is no failure");
        } else {
            assert_eq!(t.status, status::COMPLETED, "trial {t:?}");
            assert_eq!(t.epochs_done, t.config.epochs);
            assert!(t.stop_reason.is_empty());
        }
    }
    // min_repeats 2 of 3: each hopeless configuration was judged on two
    // running repeats while its third was still queued, and stopped it.
    let never_started = trials
        .iter()
        .filter(|t| t.status == status::STOPPED && t.epochs_done == 0 && t.attempts == 0)
        .count();
    assert_eq!(never_started, 2, "a queued repeat of each hopeless one");

    let sweep_row = store.sweep(sweep).await.unwrap().unwrap();
    assert_eq!(sweep_row.counts.stopped, 6);
    assert_eq!(sweep_row.counts.completed, 6);
    let results = coordinator::results::results(
        store,
        &pb::ResultsRequest {
            sweep_id: sweep,
            split: "test".into(),
            epoch: None,
        },
    )
    .await
    .unwrap();
    for c in &results.configurations {
        let hopeless = c.config_key.contains("lr=0.000000000001");
        assert_eq!(c.stopped, if hopeless { 3 } else { 0 }, "{}", c.label);
        let last = if hopeless {
            2
        } else if c.config_key.contains("epochs=10") {
            10
        } else {
            12
        };
        assert_eq!(c.epoch, last, "a stopped configuration is read at its rung");
        assert!(!c.trial_ids.is_empty());
    }
    trials
        .into_iter()
        .map(|t| {
            (
                t.config_key,
                t.repeat,
                t.status,
                t.stop_epoch,
                t.stop_reason,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopeless_configurations_stop_at_the_first_rung_and_the_same_way_each_run() {
    for db in testing::databases().await {
        let cache = tempfile::tempdir().unwrap();
        let server = testing::start(&db.url, Duration::from_secs(30), 3).await;
        let _workers: Vec<_> = (0..2)
            .map(|i| {
                testing::spawn_worker(
                    COORDINATOR,
                    &server.url(),
                    cache.path(),
                    &format!("w{i}"),
                    0,
                    None,
                )
            })
            .collect();
        for (rule, words) in [
            (
                "{method: asha, rungs: [2], reduction_factor: 2, min_repeats: 2}",
                "asha at epoch 2",
            ),
            (
                "{method: median, rungs: [2], min_configurations: 1, min_repeats: 2}",
                "median rule at epoch 2",
            ),
        ] {
            let first = run(&server, &sweep(rule)).await;
            let second = run(&server, &sweep(rule)).await;
            assert_eq!(first, second, "{}: the same decisions each run", db.name);
            let reasons: Vec<&str> = first
                .iter()
                .filter(|d| !d.4.is_empty())
                .map(|d| d.4.as_str())
                .collect();
            assert_eq!(reasons.len(), 6);
            assert!(reasons.iter().all(|r| r.starts_with(words)), "{reasons:?}");
        }
        server.stop().await;
    }
}
