//! The fault suite: a 20-trial sweep on a Postgres server of the test's own,
//! served by a real coordinator process to real worker processes, while
//! workers are SIGKILLed at random moments (and replaced), the coordinator
//! is SIGKILLed and restarted five times, and Postgres itself crashes and
//! restarts. The faulted run's workers train packs of up to three trials
//! (so trials resume into other packs), the run without faults trains each
//! trial alone. Every trial completes, every epoch is stored exactly once,
//! and every trial's metrics equal those of the same sweep run without
//! faults.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coordinator::store::Store;
use coordinator::testing::{self, PrivatePostgres, Process};
use proto::metrics::{Metric, Split};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");
const EPOCHS: u32 = 6;
const TRIALS: usize = 20;

/// 4 inits x 5 repeats of 6 epochs on a small generated dataset.
fn sweep_yaml() -> String {
    format!(
        "name: faults\nrepeats: 5\ndataset: {{generated: {{seed: 3, train: 64, test: 16}}}}\n\
         parameters:\n  init: {{values: [default, smart, kaiming_fan_in_zero_bias, kaiming_fan_out]}}\n\
         \x20 epochs: {{value: {EPOCHS}}}\n"
    )
}

fn worker(url: &str, cache: &Path, name: &str, log: &File) -> Process {
    testing::spawn_worker(COORDINATOR, url, cache, name, 2, Some(log))
}

/// A worker training packs of up to three trials.
fn packed_worker(url: &str, cache: &Path, name: &str, log: &File) -> Process {
    testing::spawn_worker_with(
        COORDINATOR,
        url,
        cache,
        name,
        2,
        Some(log),
        &["--pack", "3"],
    )
}

/// `coordinator serve` on `port`, with short leases so that a killed
/// worker's trial is leased again quickly, and attempts enough that no
/// trial fails of the faults.
fn serve(db: &str, port: u16, log: &File) -> Process {
    let child = Command::new(COORDINATOR)
        .args(["serve", "--database-url", db, "--insecure-no-auth"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--lease-seconds", "2", "--max-attempts", "100"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the coordinator did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Process(child)
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorker,
    KillCoordinator,
    CrashPostgres,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_to_killed_workers_coordinators_and_databases() {
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let log = File::create(scratch.path().join("processes.log")).unwrap();

    // The same sweep without faults: the metrics to equal.
    let reference = {
        let db = testing::databases().await.remove(0);
        let server = testing::start(&db.url, Duration::from_secs(30), 3).await;
        testing::submit(&server.url(), &sweep_yaml()).await;
        let _workers: Vec<Process> = (0..2)
            .map(|i| worker(&server.url(), &cache, &format!("ref-{i}"), &log))
            .collect();
        testing::wait_all_completed(&server.store, 1, Duration::from_secs(300)).await;
        let m = testing::deterministic_metrics(&server.store, 1, EPOCHS).await;
        server.stop().await;
        m
    };
    assert_eq!(reference.len(), TRIALS);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut coordinator = serve(&pg.url(), port, &log);
    let sweep = testing::submit(&url, &sweep_yaml()).await;
    let worker_log = File::create(scratch.path().join("workers.log")).unwrap();
    let mut spawned = 0;
    let mut spawn = |workers: &mut Vec<Process>| {
        workers.push(packed_worker(
            &url,
            &cache,
            &format!("w{spawned}"),
            &worker_log,
        ));
        spawned += 1;
    };
    let mut workers = Vec::new();
    for _ in 0..3 {
        spawn(&mut workers);
    }

    // Faults at random points of the sweep's progress (seeded, so the same
    // schedule every run): 4 worker kills, 5 coordinator kills, 1 crash of
    // Postgres, spread over the first 80% of its epochs.
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let total = TRIALS as u64 * u64::from(EPOCHS);
    let mut schedule: Vec<(u64, Fault)> = [Fault::KillWorker; 4]
        .into_iter()
        .chain([Fault::KillCoordinator; 5])
        .chain([Fault::CrashPostgres])
        .map(|f| (rng.random_range(total / 10..total * 8 / 10), f))
        .collect();
    schedule.sort_by_key(|(at, _)| *at);
    let monitor = Store::connect(&pg.url()).await.unwrap();
    let (mut worker_kills, mut coordinator_kills, mut postgres_crashes) = (0, 0, 0);
    let start = Instant::now();
    let mut next = schedule.into_iter().peekable();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the sweep did not finish under faults"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The monitor's reads fail while Postgres is down: try again.
        let Ok(trials) = monitor.trials(sweep.id).await else {
            continue;
        };
        if trials.iter().all(|t| t.status == "completed") {
            break;
        }
        let stored: u64 = trials.iter().map(|t| u64::from(t.epochs_done)).sum();
        while let Some(&(at, fault)) = next.peek() {
            if stored < at {
                break;
            }
            next.next();
            match fault {
                Fault::KillWorker => {
                    let victim = workers.remove(rng.random_range(0..workers.len()));
                    victim.kill();
                    spawn(&mut workers);
                    worker_kills += 1;
                }
                Fault::KillCoordinator => {
                    coordinator.kill();
                    tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
                    coordinator = serve(&pg.url(), port, &log);
                    coordinator_kills += 1;
                }
                Fault::CrashPostgres => {
                    pg.crash_and_restart();
                    postgres_crashes += 1;
                }
            }
            eprintln!("{fault:?} at {stored} of {total} epochs stored");
        }
    }
    assert_eq!(
        (worker_kills, coordinator_kills, postgres_crashes),
        (4, 5, 1),
        "every fault happened"
    );
    drop(workers);
    drop(coordinator);

    // Read by a store connected after the faults: the monitor's idle
    // connections may still be ones Postgres dropped when it crashed (each
    // fails its next statement once).
    let monitor = Store::connect(&pg.url()).await.unwrap();
    let faulted = testing::deterministic_metrics(&monitor, sweep.id, EPOCHS).await;
    let rows: usize = faulted.values().map(|m| m.len()).sum();
    // Every metric of every epoch of every trial, once: nothing lost, nothing doubled.
    let mut stored = 0;
    for t in monitor.trials(sweep.id).await.unwrap() {
        stored += monitor.metrics_after(t.id, 0).await.unwrap().len();
    }
    let reported: usize = Split::ALL
        .iter()
        .map(|&s| Metric::of_split(s).count())
        .sum();
    assert_eq!(
        stored,
        TRIALS * EPOCHS as usize * reported,
        "metric rows stored"
    );
    assert_eq!(
        faulted, reference,
        "every trial's metrics equal the run without faults"
    );
    let worker_lines = std::fs::read_to_string(scratch.path().join("workers.log")).unwrap();
    let trained = worker_lines
        .lines()
        .filter(|l| l.contains("epoch trained"))
        .count() as u64;
    let packed = worker_lines
        .lines()
        .filter(|l| l.contains("training a pack"))
        .count();
    assert!(packed > 0, "the faulted run trained packs");
    let attempts: u32 = monitor
        .trials(sweep.id)
        .await
        .unwrap()
        .iter()
        .map(|t| t.attempts)
        .sum();
    // Straight to stderr, past the test harness's capture: CI's log shows it.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "fault suite: {worker_kills} workers SIGKILLed, {coordinator_kills} coordinator SIGKILLs and restarts, \
         {postgres_crashes} Postgres crash and restart; {total} epochs ({stored} metric rows) stored exactly once, \
         {} epochs trained again, {attempts} leases for {TRIALS} trials, {packed} pack epochs, {rows} deterministic \
         metric values equal to the run without faults, whose trials trained alone ({:.0} s)",
        trained.saturating_sub(total),
        start.elapsed().as_secs_f64()
    );
}
