//! Workers as real processes against a real coordinator (in this process,
//! on an ephemeral 127.0.0.1 port, on SQLite and on Postgres when given):
//! two workers drain a sweep; a worker killed mid-trial loses nothing, its
//! trial finishing on the other from its checkpoint with the metrics of an
//! uninterrupted run (and the same predictions on the sample items);
//! SIGTERM checkpoints and releases; in a packed worker, each trial of a
//! pack is cancelled, preempted and completed on its own.

use std::process::Command;
use std::time::{Duration, Instant};

use coordinator::store::Store;
use coordinator::testing::{self, Process, wait_until};
use proto::metrics::{Metric, Split};
use proto::v1 as pb;

/// The coordinator binary serves `worker run` as its hidden `worker`
/// command (what `coordinator run` starts); the code is the worker crate's.
const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

fn spawn_worker(url: &str, cache: &std::path::Path, name: &str) -> Process {
    testing::spawn_worker(COORDINATOR, url, cache, name, 1, None)
}

fn spawn_packed_worker(url: &str, cache: &std::path::Path, name: &str, pack: usize) -> Process {
    let pack = pack.to_string();
    testing::spawn_worker_with(COORDINATOR, url, cache, name, 1, None, &["--pack", &pack])
}

async fn all_completed(store: &Store, sweep: i64) -> bool {
    store
        .trials(sweep)
        .await
        .unwrap()
        .iter()
        .all(|t| t.status == "completed")
}

/// Every epoch of every trial stored exactly once: (trial, epoch) -> test
/// board accuracy, for the epochs 1..=epochs.
async fn stored_epochs(store: &Store, sweep: i64, epochs: u32) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for trial in store.trials(sweep).await.unwrap() {
        let metrics = store.metrics_after(trial.id, 0).await.unwrap();
        let per_epoch = metrics
            .iter()
            .filter(|m| m.value.split == Split::Test && m.value.metric == Metric::CellAccuracy);
        let epochs_seen: Vec<u32> = per_epoch.clone().map(|m| m.epoch).collect();
        assert_eq!(
            epochs_seen,
            (1..=epochs).collect::<Vec<_>>(),
            "trial {}",
            trial.id
        );
        out.push(per_epoch.map(|m| m.value.value).collect());
    }
    out
}

/// Per configuration, the epoch and the predictions on the sample items of
/// its trial furthest along, checked to be boards of the right kinds.
async fn predicted(store: &Store, sweep: i64) -> Vec<(String, u32, Vec<pb::BoardSample>)> {
    let answer =
        coordinator::results::predictions(store, &pb::PredictionsRequest { sweep_id: sweep })
            .await
            .unwrap();
    for c in &answer.configurations {
        assert!(!c.samples.is_empty(), "{}: no samples", c.label);
        for s in &c.samples {
            let row0_empty = |b: &[u8]| b[..10].iter().all(|&v| v == 0);
            let spawn = row0_empty(&s.input) && !row0_empty(&s.truth);
            assert_eq!(
                s.kind == "spawn",
                spawn,
                "item {} is not a {}",
                s.item,
                s.kind
            );
            assert_eq!(s.predicted.len(), 220);
        }
    }
    answer
        .configurations
        .into_iter()
        .map(|c| (c.config_key, c.epoch, c.samples))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_drain_a_sweep_and_a_killed_worker_loses_nothing() {
    for db in testing::databases().await {
        let cache = tempfile::tempdir().unwrap();
        let server = testing::start(&db.url, Duration::from_secs(2), 5).await;
        // Enough epochs that the victim is still mid-trial when it is killed.
        let yaml = testing::sweep_yaml(2, 2, 30);
        let plan = coordinator::spec::parse(&yaml).unwrap();
        let sweep = server.store.create_sweep(&yaml, &plan).await.unwrap();
        let workers = [
            spawn_worker(&server.url(), cache.path(), "a"),
            spawn_worker(&server.url(), cache.path(), "b"),
        ];
        wait_until("the sweep to complete", Duration::from_secs(120), || {
            all_completed(&server.store, sweep)
        })
        .await;
        let straight = stored_epochs(&server.store, sweep, 30).await;
        drop(workers);
        // Each configuration's predictions at its last epoch, on the same
        // items for every configuration.
        let straight_predictions = predicted(&server.store, sweep).await;
        assert_eq!(straight_predictions.len(), 2, "{}", db.name);
        let items = |p: &[pb::BoardSample]| -> Vec<(u32, String, Vec<u8>, Vec<u8>)> {
            p.iter()
                .map(|s| (s.item, s.kind.clone(), s.input.clone(), s.truth.clone()))
                .collect()
        };
        for (_, epoch, samples) in &straight_predictions {
            assert_eq!(*epoch, 30);
            assert_eq!(items(samples), items(&straight_predictions[0].2));
        }

        // The same sweep again; kill one worker once its trial has a checkpoint.
        let again = server.store.create_sweep(&yaml, &plan).await.unwrap();
        let mut victim = spawn_worker(&server.url(), cache.path(), "victim");
        let store = server.store.clone();
        wait_until(
            "a checkpointed trial on the victim",
            Duration::from_secs(60),
            || async {
                let trials = store.trials(again).await.unwrap();
                for t in trials
                    .iter()
                    .filter(|t| t.status == "running" && t.worker == "victim" && t.epochs_done < 20)
                {
                    if store.checkpoint(t.id).await.unwrap().is_some() {
                        return true;
                    }
                }
                false
            },
        )
        .await;
        victim.0.kill().unwrap();
        victim.0.wait().unwrap();
        let _survivor = spawn_worker(&server.url(), cache.path(), "survivor");
        wait_until(
            "the sweep to complete after the kill",
            Duration::from_secs(120),
            || all_completed(&server.store, again),
        )
        .await;
        let trials = server.store.trials(again).await.unwrap();
        assert!(
            trials.iter().any(|t| t.attempts == 2),
            "{}: one trial was re-leased",
            db.name
        );
        let resumed = stored_epochs(&server.store, again, 30).await;
        assert_eq!(
            resumed, straight,
            "{}: the same metrics as without the kill",
            db.name
        );
        assert_eq!(
            predicted(&server.store, again).await,
            straight_predictions,
            "{}: the same predictions as without the kill",
            db.name
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_signals_checkpoint_and_hand_back_the_trial_without_an_attempt() {
    let db = testing::databases().await.remove(0);
    let cache = tempfile::tempdir().unwrap();
    let server = testing::start(&db.url, Duration::from_secs(30), 3).await;
    let yaml = testing::sweep_yaml(1, 1, 100);
    let plan = coordinator::spec::parse(&yaml).unwrap();
    let sweep = server.store.create_sweep(&yaml, &plan).await.unwrap();
    let store = server.store.clone();
    // SIGTERM (Slurm's preemption, a deleted pod), then SIGUSR1 (Slurm's
    // warning before the time limit), each after a few more epochs.
    for (n, signal) in [(1, "-TERM"), (2, "-USR1")] {
        let name = format!("w{n}");
        let before = store.trials(sweep).await.unwrap()[0].epochs_done;
        let mut worker = spawn_worker(&server.url(), cache.path(), &name);
        wait_until("two more epochs by it", Duration::from_secs(60), || async {
            let t = &store.trials(sweep).await.unwrap()[0];
            t.worker == name && t.epochs_done >= before + 2
        })
        .await;
        let status = Command::new("kill")
            .args([signal, &worker.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::task::spawn_blocking(move || worker.0.wait().unwrap())
            .await
            .unwrap();
        assert!(exit.success(), "exit status {exit:?}");
        let trial = &server.store.trials(sweep).await.unwrap()[0];
        assert_eq!(trial.status, "queued", "the lease was released");
        assert_eq!(
            (trial.attempts, trial.preemptions),
            (0, n),
            "preempted, and no attempt used"
        );
        let (epoch, _) = server
            .store
            .checkpoint(trial.id)
            .await
            .unwrap()
            .expect("a checkpoint at preemption");
        assert_eq!(
            epoch, trial.epochs_done,
            "checkpoint of the last reported epoch"
        );
    }
    let _worker = spawn_worker(&server.url(), cache.path(), "w3");
    wait_until("completion", Duration::from_secs(60), || {
        all_completed(&server.store, sweep)
    })
    .await;
    stored_epochs(&server.store, sweep, 100).await;
    let trial = &server.store.trials(sweep).await.unwrap()[0];
    assert_eq!((trial.attempts, trial.preemptions), (1, 2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_trains_on_while_the_coordinator_is_away() {
    let db = testing::databases().await.remove(0);
    let cache = tempfile::tempdir().unwrap();
    let server = testing::start(&db.url, Duration::from_secs(30), 3).await;
    let (addr, url) = (server.addr, server.url());
    let yaml = testing::sweep_yaml(1, 1, 8);
    let plan = coordinator::spec::parse(&yaml).unwrap();
    let sweep = server.store.create_sweep(&yaml, &plan).await.unwrap();
    let _worker = spawn_worker(&url, cache.path(), "w");
    let store = server.store.clone();
    wait_until("the first epoch", Duration::from_secs(60), || async {
        store.trials(sweep).await.unwrap()[0].epochs_done >= 1
    })
    .await;
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = testing::start_at(&db.url, addr, Duration::from_secs(30), 3).await;
    wait_until(
        "completion after the outage",
        Duration::from_secs(60),
        || all_completed(&server.store, sweep),
    )
    .await;
    stored_epochs(&server.store, sweep, 8).await;
    assert_eq!(
        server.store.trials(sweep).await.unwrap()[0].attempts,
        1,
        "never re-leased"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_trial_stops_promptly_and_frees_its_slot() {
    let db = testing::databases().await.remove(0);
    let cache = tempfile::tempdir().unwrap();
    let server = testing::start(&db.url, Duration::from_secs(30), 3).await;
    let long = testing::sweep_yaml(1, 1, 1000);
    let sweep = server
        .store
        .create_sweep(&long, &coordinator::spec::parse(&long).unwrap())
        .await
        .unwrap();
    let _worker = spawn_worker(&server.url(), cache.path(), "w");
    let store = server.store.clone();
    wait_until("two epochs", Duration::from_secs(60), || async {
        store.trials(sweep).await.unwrap()[0].epochs_done >= 2
    })
    .await;
    assert!(server.store.cancel_sweep(sweep).await.unwrap());
    let short = testing::sweep_yaml(1, 1, 2);
    let next = server
        .store
        .create_sweep(&short, &coordinator::spec::parse(&short).unwrap())
        .await
        .unwrap();
    // One slot: the next trial can only start once the cancelled one ended.
    wait_until(
        "the next sweep on the freed slot",
        Duration::from_secs(30),
        || all_completed(&server.store, next),
    )
    .await;
    let cancelled = &server.store.trials(sweep).await.unwrap()[0];
    assert_eq!(cancelled.status, "cancelled");
    assert!(cancelled.epochs_done < 1000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_stop_with_its_coordinator_gone_exits_in_bounded_time() {
    let db = testing::databases().await.remove(0);
    let cache = tempfile::tempdir().unwrap();
    let server = testing::start(&db.url, Duration::from_secs(30), 3).await;
    let yaml = testing::sweep_yaml(1, 1, 1000);
    let plan = coordinator::spec::parse(&yaml).unwrap();
    let sweep = server.store.create_sweep(&yaml, &plan).await.unwrap();
    let mut worker = spawn_worker(&server.url(), cache.path(), "w");
    let store = server.store.clone();
    wait_until("an epoch", Duration::from_secs(60), || async {
        store.trials(sweep).await.unwrap()[0].epochs_done >= 1
    })
    .await;
    server.stop().await;
    let stopped_at = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // It finishes its epoch, retries the checkpoint for 20 s, then gives up.
    let exit = loop {
        if let Some(exit) = worker.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(45),
            "still running 45 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "the worker exited {:?} after SIGTERM, status {exit:?}",
        stopped_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_loses_a_cancelled_trial_takes_a_queued_one_and_hands_all_back_on_sigterm() {
    let db = testing::databases().await.remove(0);
    let cache = tempfile::tempdir().unwrap();
    let server = testing::start(&db.url, Duration::from_secs(30), 3).await;
    let create = |yaml: String| {
        let store = server.store.clone();
        async move {
            store
                .create_sweep(&yaml, &coordinator::spec::parse(&yaml).unwrap())
                .await
                .unwrap()
        }
    };
    let doomed = create(testing::sweep_yaml(1, 1, 1000)).await;
    let long = create(testing::sweep_yaml(2, 1, 1000)).await;
    let mut worker = spawn_packed_worker(&server.url(), cache.path(), "packed", 3);
    let store = server.store.clone();
    wait_until(
        "all three trials training",
        Duration::from_secs(60),
        || async {
            let mut trials = store.trials(doomed).await.unwrap();
            trials.extend(store.trials(long).await.unwrap());
            trials.iter().all(|t| t.epochs_done >= 2)
        },
    )
    .await;

    // Cancelled, the trial leaves the pack; its member takes the next
    // queued trial, which joins the pack and completes beside the others.
    assert!(server.store.cancel_sweep(doomed).await.unwrap());
    let next = create(testing::sweep_yaml(1, 1, 2)).await;
    wait_until(
        "the next trial on the freed member",
        Duration::from_secs(60),
        || all_completed(&server.store, next),
    )
    .await;
    let cancelled = &server.store.trials(doomed).await.unwrap()[0];
    assert_eq!(cancelled.status, "cancelled");
    let before: Vec<u32> = store
        .trials(long)
        .await
        .unwrap()
        .iter()
        .map(|t| t.epochs_done)
        .collect();
    wait_until("the pack training on", Duration::from_secs(60), || async {
        let now = store.trials(long).await.unwrap();
        now.iter()
            .zip(&before)
            .all(|(t, b)| t.epochs_done > *b && t.status == "running")
    })
    .await;

    // SIGTERM: every trial of the pack checkpoints and goes back to the
    // queue as preempted, without using an attempt.
    let status = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || worker.0.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    for trial in server.store.trials(long).await.unwrap() {
        assert_eq!(trial.status, "queued", "trial {} released", trial.id);
        assert_eq!((trial.attempts, trial.preemptions), (0, 1));
        let (epoch, _) = server
            .store
            .checkpoint(trial.id)
            .await
            .unwrap()
            .expect("a checkpoint at preemption");
        assert_eq!(epoch, trial.epochs_done, "trial {}", trial.id);
    }
    server.stop().await;
}
