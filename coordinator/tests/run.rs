//! `coordinator run`, the one-command local sweep, as a user runs it: real
//! worker processes against the coordinator it starts on 127.0.0.1, a real
//! SQLite file; interrupted with SIGINT and run again, it resumes and every
//! epoch of every trial is stored exactly once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use coordinator::store::Store;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proto::metrics::{Metric, Split};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

fn sweep(dir: &Path, epochs: u32, train: u32) -> String {
    let path = dir.join("sweep.yaml");
    std::fs::write(
        &path,
        format!(
            "name: local\nrepeats: 2\nmetric: {{name: board_accuracy}}\n\
             dataset: {{generated: {{seed: 3, train: {train}, test: 8}}}}\n\
             parameters:\n  init: {{values: [default, smart]}}\n  epochs: {{value: {epochs}}}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn run(dir: &Path, file: &str) -> Command {
    let mut command = Command::new(COORDINATOR);
    command
        .current_dir(dir)
        .args(["run", file, "--workers", "2"])
        .env("EXP025_CACHE_DIR", dir.join("cache"));
    command
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn store(dir: &Path) -> Store {
    Store::connect(&format!("sqlite://{}", dir.join("exp025.db").display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_to_its_results_and_a_second_run_only_reports() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep(dir.path(), 2, 16);
    let out = run(dir.path(), &file).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sweep 1 (local): 4 trials of 2 configurations"),
        "{stderr}"
    );
    for label in [
        "init=default glob_relu=false  2/2",
        "init=smart glob_relu=true     2/2",
    ] {
        assert!(stdout.contains(label), "{stdout}");
    }
    assert!(stdout.contains("Welch's t-test"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("t = ")), "{stdout}");

    let store = store(dir.path()).await;
    let trials = store.trials(1).await.unwrap();
    assert!(
        trials
            .iter()
            .all(|t| t.status == "completed" && t.epochs_done == 2)
    );
    // Its workers had a token of their own, and the dashboard whose address
    // it printed a reader token, both revoked when the run ended.
    let tokens = store.tokens().await.unwrap();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(tokens[0].name.starts_with("coordinator-run-"));
    assert_eq!(tokens[0].role, coordinator::auth::Role::Worker);
    assert!(tokens[1].name.starts_with("coordinator-run-dashboard-"));
    assert_eq!(tokens[1].role, coordinator::auth::Role::Reader);
    assert!(
        tokens.iter().all(|t| t.revoked_ms.is_some()),
        "revoked at the end"
    );
    assert!(
        stderr.contains("dashboard: http://127.0.0.1:") && stderr.contains("/?token=exp025_"),
        "{stderr}"
    );
    assert!(dir.path().join("exp025-workers.log").exists());

    let again = run(dir.path(), &file).output().unwrap();
    let (stdout_again, stderr_again) = text(&again);
    assert!(again.status.success());
    assert!(
        stderr_again.contains("resuming sweep 1 (local): 4 of 4 trials finished"),
        "{stderr_again}"
    );
    assert_eq!(
        stdout_again, stdout,
        "the same results, nothing trained again"
    );
}

/// Waits until some trial of the run in `dir` has stored two epochs.
async fn until_training(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no epoch was stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !dir.join("exp025.db").exists() {
            continue;
        }
        let trials = store(dir).await.trials(1).await.unwrap();
        if trials.iter().any(|t| t.epochs_done >= 2) {
            return;
        }
    }
}

/// Runs the sweep again to the end and checks that every trial stored each
/// of its epochs exactly once, on its first counted attempt.
async fn resume_to_the_end(dir: &Path, file: &str, epochs: u32) {
    let out = run(dir, file).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming sweep 1 (local)"), "{stderr}");
    assert!(stdout.contains("2/2"), "{stdout}");
    let store = store(dir).await;
    for t in store.trials(1).await.unwrap() {
        assert_eq!((t.status.as_str(), t.attempts), ("completed", 1), "{t:?}");
        let accuracy: Vec<u32> = store
            .metrics_after(t.id, 0)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.value.split == Split::Test && m.value.metric == Metric::BoardAccuracy)
            .map(|m| m.epoch)
            .collect();
        assert_eq!(accuracy, (1..=epochs).collect::<Vec<_>>(), "trial {}", t.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = 30;
    let file = sweep(dir.path(), epochs, 48);
    let child = run(dir.path(), &file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until_training(dir.path()).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    let trials = store(dir.path()).await.trials(1).await.unwrap();
    assert!(
        trials.iter().all(|t| t.status != "running"),
        "every trial was given back: {trials:?}"
    );
    assert!(
        trials.iter().any(|t| t.status == "queued"),
        "stopped mid-sweep"
    );
    resume_to_the_end(dir.path(), &file, epochs).await;
}

/// The live processes started by the `coordinator run` of `pid` (they carry
/// its pid in their environment).
fn workers_of(pid: u32) -> Vec<u32> {
    let mark = format!("EXP025_RUN_PID={pid}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == mark.as_bytes()))
        })
        .filter(|p| {
            // A zombie awaiting its reaper is gone already.
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        })
        .collect()
}

/// A run killed with SIGKILL takes its workers with it; the next run puts
/// their trials back in the queue, without counting the killed attempt, and
/// resumes them from their checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_hard_leaves_no_workers_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = 30;
    let file = sweep(dir.path(), epochs, 48);
    let mut child = run(dir.path(), &file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until_training(dir.path()).await;
    let run_pid = child.id();
    assert_eq!(workers_of(run_pid).len(), 2, "the run started its workers");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !workers_of(run_pid).is_empty() {
        assert!(Instant::now() < deadline, "workers outlived their run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trials = store(dir.path()).await.trials(1).await.unwrap();
    assert!(trials.iter().any(|t| t.status == "running"), "{trials:?}");
    resume_to_the_end(dir.path(), &file, epochs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bayes_search_with_early_stopping_runs_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search.yaml");
    std::fs::write(
        &path,
        "name: search\nmethod: bayes\nbudget: 6\nstartup: 3\nparallel: 2\nrepeats: 2\n\
         metric: {name: disc_accuracy, split: test}\n\
         dataset: {generated: {seed: 3, train: 16, test: 8}}\n\
         parameters:\n  lr: {distribution: log_uniform, min: 1.0e-12, max: 0.01}\n  epochs: {value: 4}\n\
         early_stopping: {method: median, rungs: [2], min_configurations: 2}\n\
         stop_epochs: [2, 4]\n",
    )
    .unwrap();
    let file = path.display().to_string();
    let out = run(dir.path(), &file).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sweep 1 (search): a bayes search of 6 configurations, 2 at a time"),
        "{stderr}"
    );
    let store = store(dir.path()).await;
    let sweep = store.sweep(1).await.unwrap().unwrap();
    assert!(sweep.is_done());
    assert_eq!((sweep.proposed, sweep.budget), (6, 6));
    let trials = store.trials(1).await.unwrap();
    assert_eq!(trials.len(), 12);
    let mut order: Vec<(u32, &str)> = trials
        .iter()
        .map(|t| (t.proposal, t.proposed_by.as_str()))
        .collect();
    order.dedup();
    assert_eq!(
        order,
        [
            (1, "random"),
            (2, "random"),
            (3, "random"),
            (4, "tpe"),
            (5, "tpe"),
            (6, "tpe")
        ]
    );
    assert!(
        trials
            .iter()
            .all(|t| t.status == "completed" || t.status == "stopped"),
        "{trials:?}"
    );
    assert!(stdout.contains("#1 random"), "{stdout}");
    assert!(stdout.contains("#6 tpe"), "{stdout}");

    // The declared stopping epochs of trials proposed as the search went:
    // each stored row at epoch 2 or 4 has its copy, the same bytes, once.
    assert_eq!(sweep.stop_epochs, [2, 4]);
    let url = format!("sqlite://{}", dir.path().join("exp025.db").display());
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let rows = async |db: &mut sqlx::AnyConnection, table: &str| -> Vec<(i64, i64, Vec<u8>)> {
        sqlx::query_as(&format!(
            "SELECT trial_id, epoch, metrics FROM {table} WHERE epoch IN (2, 4) \
             ORDER BY trial_id, epoch"
        ))
        .fetch_all(db)
        .await
        .unwrap()
    };
    // Stored as rows, or folded into blocks once their trials ended.
    let mut stored = rows(&mut db, "epochs").await;
    let blocks: Vec<(i64, i64, i64, Vec<u8>)> =
        sqlx::query_as("SELECT trial_id, first_epoch, epoch_count, metrics FROM epoch_blocks")
            .fetch_all(&mut db)
            .await
            .unwrap();
    for (trial, first, count, bytes) in blocks {
        let epochs = coordinator::blocks::unpack(&bytes, count as usize).unwrap();
        for (epoch, packing) in (first..).zip(epochs) {
            if epoch == 2 || epoch == 4 {
                stored.push((trial, epoch, packing));
            }
        }
    }
    stored.sort();
    let reached = |epoch: u32| trials.iter().filter(|t| t.epochs_done >= epoch).count();
    assert!(
        reached(4) > 0,
        "some configuration ran to its end: {trials:?}"
    );
    assert_eq!(stored.len(), reached(2) + reached(4), "{trials:?}");
    let copies = rows(&mut db, "stop_epoch_rows").await;
    let keys = |rows: &[(i64, i64, Vec<u8>)]| -> Vec<(i64, i64)> {
        rows.iter()
            .map(|(trial, epoch, _)| (*trial, *epoch))
            .collect()
    };
    assert_eq!(keys(&copies), keys(&stored), "(trial, epoch) of each copy");
    assert!(copies == stored, "each copy holds its row's bytes");
}
