//! Early stopping through real parts: a coordinator on an ephemeral
//! 127.0.0.1 port (SQLite, and Postgres when given), two worker processes
//! training for real, and a sweep whose outcome is known in advance: a
//! learning rate of 1e-12 cannot learn, 1e-3 does. The hopeless
//! configurations are stopped at the first rung, the good ones run to the
//! end, and a second run decides the same (a repeat that finished before its
//! sibling reached the rung, as when one worker falls behind the other,
//! keeps its epochs; its configuration is stopped all the same). Then, with clients that play
//! workers, what a stop does to a configuration's trials: the running ones
//! are told at once or at their next report, the queued one never starts.

use std::time::Duration;

use coordinator::store::{Store, status};
use coordinator::testing::{self, wait_until};
use proto::v1 as pb;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

/// Two learning rates x two epoch counts, 2 repeats (leased together by the
/// two workers), judged at epoch 2. Up to the rung both
/// good configurations train identically (same lr, same seeds), so neither
/// can be behind the other there; the discriminator of a configuration that
/// cannot learn stays at accuracy 0.5, the others reach about 1.
fn sweep(rule: &str) -> String {
    format!(
        "name: hopeless\nrepeats: 2\nmetric: {{name: disc_accuracy, split: test}}\n\
         dataset: {{generated: {{seed: 1, train: 100, test: 40}}}}\n\
         parameters:\n  lr: {{values: [0.001, 1.0e-12]}}\n  epochs: {{values: [10, 12]}}\n\
         \x20 batch_size: {{value: 4}}\n\
         early_stopping: {rule}\n"
    )
}

/// What the rule decided, configuration by configuration: (configuration,
/// rung, reason) of each one stopped.
type Decisions = Vec<(String, u32, String)>;

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
    let mut decisions: Decisions = Vec::new();
    for t in &trials {
        let hopeless = t.config.lr < 1e-9;
        if hopeless && t.status == status::STOPPED {
            assert_eq!(t.stop_epoch, 2, "stopped at the first rung");
            assert!(
                t.epochs_done < t.config.epochs,
                "trial {t:?} ran to the end"
            );
            assert!(t.error.is_empty(), "a stopped trial is no failure");
            let decision = (t.config_key.clone(), t.stop_epoch, t.stop_reason.clone());
            if !decisions.contains(&decision) {
                decisions.push(decision);
            }
        } else if hopeless {
            // A repeat that ran all its epochs before the configuration's
            // last repeat reached the rung (the rule waits for every repeat)
            // keeps them; the configuration is still stopped.
            assert_eq!(t.status, status::COMPLETED, "trial {t:?}");
            assert!(
                trials.iter().any(|o| o.config_key == t.config_key
                    && o.status == status::STOPPED
                    && o.stop_epoch == 2),
                "trial {t:?}: its configuration was not stopped"
            );
        } else {
            assert_eq!(t.status, status::COMPLETED, "trial {t:?}");
            assert_eq!(t.epochs_done, t.config.epochs);
            assert!(t.stop_reason.is_empty());
        }
    }
    decisions.sort();
    assert_eq!(
        decisions.len(),
        2,
        "both hopeless configurations stopped once: {decisions:?}"
    );
    let sweep_row = store.sweep(sweep).await.unwrap().unwrap();
    let stopped = sweep_row.counts.stopped;
    assert!((2..=4).contains(&stopped), "{:?}", sweep_row.counts);
    assert_eq!(sweep_row.counts.completed + stopped, 8);
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
    for c in &results.configurations {
        let hopeless = c.config_key.contains("lr=0.000000000001");
        if hopeless {
            assert!((1..=2).contains(&c.stopped), "{}", c.label);
        } else {
            assert_eq!(c.stopped, 0, "{}", c.label);
        }
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
    // compare counts the stopped trials of each group, read at the rung.
    let compared = coordinator::results::compare(
        store,
        &pb::CompareRequest {
            sweep_id: sweep,
            metric: "disc_accuracy".into(),
            a: vec!["lr=0.001".into()],
            b: vec!["lr=1e-12".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (a, b) = (
        compared.comparisons[0].a.clone().unwrap(),
        compared.comparisons[0].b.clone().unwrap(),
    );
    assert_eq!((a.stopped, a.values.len()), (0, 4));
    assert_eq!((b.stopped, b.values.len()), (stopped, 4));
    assert!(b.epochs.iter().all(|e| *e == 2));
    // status shows each stopped trial's reason.
    let detail = pb::SweepDetail {
        sweep: Some(coordinator::convert::sweep(&sweep_row)),
        trials: trials.iter().map(coordinator::convert::trial).collect(),
        yaml: String::new(),
    };
    let shown = coordinator::report::detail(&detail, coordinator::report::Format::Table);
    assert_eq!(
        shown.matches("stopped early: ").count(),
        stopped as usize,
        "{shown}"
    );
    assert!(shown.contains("early stopping: "), "{shown}");
    decisions
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
                "{method: asha, rungs: [2], reduction_factor: 2}",
                "asha at epoch 2",
            ),
            (
                "{method: median, rungs: [2], min_configurations: 1}",
                "median rule at epoch 2",
            ),
        ] {
            let first = run(&server, &sweep(rule)).await;
            let second = run(&server, &sweep(rule)).await;
            assert_eq!(first, second, "{}: the same decisions each run", db.name);
            let reasons: Vec<&str> = first.iter().map(|d| d.2.as_str()).collect();
            assert!(reasons.iter().all(|r| r.starts_with(words)), "{reasons:?}");
        }
        server.stop().await;
    }
}

fn epoch(lease: &pb::Lease, epoch: u32, accuracy: f64) -> pb::ProgressReport {
    pb::ProgressReport {
        trial_id: lease.trial.as_ref().unwrap().id,
        lease_id: lease.lease_id.clone(),
        epoch,
        metrics: vec![pb::Metric {
            split: "test".into(),
            name: "board_accuracy".into(),
            value: accuracy,
        }],
    }
}

#[tokio::test]
async fn a_stop_reaches_every_trial_of_the_configuration() {
    for db in testing::databases().await {
        let server = testing::start(&db.url, Duration::from_secs(30), 3).await;
        let yaml = "name: s\nrepeats: 3\ndataset: {generated: {seed: 1, train: 8, test: 4}}\n\
                    parameters: {lr: {values: [0.001, 0.0001]}, epochs: {value: 5}}\n\
                    early_stopping: {method: median, rungs: [2], min_configurations: 1, min_repeats: 2}\n";
        let sweep = testing::submit(&server.url(), yaml).await.id;
        let (mut client, worker) = testing::worker(&server.url()).await;
        let mut leases = Vec::new();
        for _ in 0..5 {
            leases.push(testing::lease(&mut client, worker).await.unwrap());
        }
        let trial = |i: usize| leases[i].trial.clone().unwrap();
        // The first configuration (repeats 0..3 are leases 0..3) is judged
        // on two repeats with nothing to compare: it goes on.
        for lease in &leases[..2] {
            let acks = testing::send(
                &mut client,
                vec![epoch(lease, 1, 0.8), epoch(lease, 2, 0.9)],
            )
            .await;
            assert_eq!(acks, [pb::Directive::Continue; 2]);
        }
        // The second (leases 3 and 4; its third repeat stays queued) is
        // behind on the same repeats: stopped when its second repeat
        // reaches the rung.
        let acks = testing::send(
            &mut client,
            vec![epoch(&leases[3], 1, 0.05), epoch(&leases[3], 2, 0.1)],
        )
        .await;
        assert_eq!(acks, [pb::Directive::Continue; 2]);
        let acks = testing::send(
            &mut client,
            vec![epoch(&leases[4], 1, 0.1), epoch(&leases[4], 2, 0.2)],
        )
        .await;
        assert_eq!(acks, [pb::Directive::Continue, pb::Directive::StoppedEarly]);
        // Its other running repeat hears it at its next report, which is
        // not stored; completing is refused.
        let acks = testing::send(&mut client, vec![epoch(&leases[3], 3, 0.3)]).await;
        assert_eq!(acks, [pb::Directive::StoppedEarly]);
        let refused = client
            .complete(pb::CompleteRequest {
                trial_id: trial(3).id,
                lease_id: leases[3].lease_id.clone(),
                samples: Vec::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );

        let trials = server.store.trials(sweep).await.unwrap();
        let stopped: Vec<(u32, u32, u32)> = trials
            .iter()
            .filter(|t| t.status == status::STOPPED)
            .map(|t| (t.repeat, t.epochs_done, t.attempts))
            .collect();
        assert_eq!(
            stopped,
            [(0, 2, 1), (1, 2, 1), (2, 0, 0)],
            "{}: the queued repeat never started",
            db.name
        );
        for t in trials.iter().filter(|t| t.status == status::STOPPED) {
            assert_eq!(t.stop_epoch, 2);
            assert_eq!(
                t.stop_reason,
                "median rule at epoch 2: mean test board_accuracy 0.1500 over 2 repeats is worse \
                 than the median 0.9000 of the other 1 configurations at this rung"
            );
        }
        // Nothing is left to lease.
        assert_eq!(testing::lease(&mut client, worker).await, None);
        server.stop().await;
    }
}
