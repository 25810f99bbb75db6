//! Workers launched by a real Slurm (the one-node cluster of
//! `deploy/slurm/local-cluster.sh`): a coordinator on Postgres, a sweep of
//! 8 trials, a job array of 4 CPU workers from `coordinator slurm
//! --submit`; one task is sent SIGUSR1 mid-trial and requeued. Every trial
//! completes, every epoch is stored once, the preemption uses no attempt
//! and shows in the trial's history, the requeued task serves again, and
//! the metrics equal the same sweep run without Slurm.

use std::process::Command;
use std::time::{Duration, Instant};

use coordinator::testing::{self, wait_for};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");
const EPOCHS: u32 = 20;

fn sweep_yaml() -> String {
    format!(
        "name: slurm\nrepeats: 2\ndataset: {{generated: {{seed: 4, train: 64, test: 16}}}}\n\
         parameters:\n  init: {{values: [default, smart, kaiming_fan_in_zero_bias, kaiming_fan_out]}}\n\
         \x20 epochs: {{value: {EPOCHS}}}\n"
    )
}

/// Whether a Slurm cluster answers here; SKIPPED (or, with
/// `EXP025_REQUIRE_SLURM` as in CI, a failure) when none does.
fn slurm_is_up() -> bool {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !up {
        assert!(
            std::env::var_os("EXP025_REQUIRE_SLURM").is_none(),
            "EXP025_REQUIRE_SLURM is set but no Slurm cluster answers (deploy/slurm/local-cluster.sh starts one)"
        );
        eprintln!(
            "SKIPPED: no Slurm cluster answers here (deploy/slurm/local-cluster.sh starts one)"
        );
    }
    up
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The task's state as squeue shows it; None when squeue fails (as it may
/// while the task changes state) or shows nothing.
fn task_state(task_id: &str) -> Option<String> {
    let out = Command::new("squeue")
        .args(["-h", "-j", task_id, "-o", "%T"])
        .output()
        .ok()?;
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !state.is_empty()).then_some(state)
}

/// Cancels the job array when the test ends, however it ends.
struct Job(String);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slurm_job_array_drains_a_sweep_through_a_preemption_and_a_requeue() {
    if !slurm_is_up() {
        return;
    }
    let dbs = testing::databases().await;
    let Some(pg) = dbs.iter().find(|d| d.name == "postgres") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");

    // The same sweep without Slurm: the metrics to equal.
    let reference = {
        let server = testing::start(&dbs[0].url, Duration::from_secs(30), 3).await;
        testing::submit(&server.url(), &sweep_yaml()).await;
        let _workers: Vec<_> = (0..2)
            .map(|i| {
                testing::spawn_worker(
                    COORDINATOR,
                    &server.url(),
                    &cache,
                    &format!("ref-{i}"),
                    2,
                    None,
                )
            })
            .collect();
        testing::wait_all_completed(&server.store, 1, Duration::from_secs(300)).await;
        let m = testing::deterministic_metrics(&server.store, 1, EPOCHS).await;
        server.stop().await;
        m
    };

    let server = testing::start(&pg.url, Duration::from_secs(10), 3).await;
    let sweep = testing::submit(&server.url(), &sweep_yaml()).await;
    let logs = scratch.path().join("logs");
    let worker_command = format!("{COORDINATOR} worker");
    let job_name = format!("exp025-test-{}", std::process::id());
    let out = Command::new(COORDINATOR)
        .args(["slurm", "--array", "4", "--submit", "--job-name", &job_name])
        .args([
            "--worker-command",
            &worker_command,
            "--coordinator",
            &server.url(),
        ])
        .args(["--checkpoint-every", "2"])
        .arg("--logs")
        .arg(&logs)
        .arg("--cache-dir")
        .arg(&cache)
        .env("RUST_LOG", "info")
        .env_remove("EXP025_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("#SBATCH --requeue"),
        "the script is printed"
    );
    let job = Job(stdout.lines().last().unwrap().trim().to_string());
    assert!(
        job.0.chars().all(|c| c.is_ascii_digit()),
        "a job id, not {:?}",
        job.0
    );

    // A task's worker mid-trial: send its batch shell SIGUSR1, as Slurm does
    // before the time limit, and requeue the task once it handed back.
    let store = server.store.clone();
    let (mid_trial, task) = wait_for(
        "a trial mid-way on a Slurm task",
        Duration::from_secs(120),
        || async {
            let trials = store.trials(sweep.id).await.ok()?;
            trials.iter().find_map(|t| {
                let task = t.worker.strip_prefix(&format!("slurm-{}_", job.0))?;
                (t.status == "running" && t.epochs_done >= 3 && t.epochs_done < EPOCHS - 4)
                    .then(|| (t.id, task.to_string()))
            })
        },
    )
    .await;
    let task_id = format!("{}_{}", job.0, task);
    run("scancel", &["--signal=USR1", "--batch", &task_id]);
    // Most likely the trial it was on; the next one if that one ended first.
    let handed_back = wait_for(
        "a trial handed back as preempted",
        Duration::from_secs(60),
        || async {
            let trials = store.trials(sweep.id).await.ok()?;
            trials.into_iter().find(|t| t.preemptions == 1)
        },
    )
    .await;
    let trial_id = handed_back.id;
    assert_eq!(handed_back.attempts, 0, "the preemption used no attempt");
    run("scontrol", &["requeue", &task_id]);
    // Slurm holds a requeued task back for two minutes, a begin time it
    // sets when the old run has finished completing (a StartTime given
    // before then is overwritten). The hold is there for a reason: a launch
    // credential made in the same second as the old run's revoked one is
    // refused, and the task then fails ("Job credential revoked"). So the
    // task is told to start now only once it has shown plainly pending for
    // two seconds, and again until it runs (or has run: COMPLETED comes only
    // after a run, a requeued task's old one ending as COMPLETING). A failed
    // squeue proves nothing and is asked again.
    let mut pending_since = None;
    testing::wait_until(
        "the requeued task starting",
        Duration::from_secs(60),
        || {
            let state = task_state(&task_id);
            match state.as_deref() {
                Some("PENDING") => {
                    let since = *pending_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_secs(2) {
                        let _ = Command::new("scontrol")
                            .args(["update", &format!("JobId={task_id}"), "StartTime=now"])
                            .output();
                    }
                }
                Some("FAILED" | "NODE_FAIL" | "BOOT_FAIL" | "CANCELLED") => panic!(
                    "the requeued task ended {state:?} without running: {}",
                    run("scontrol", &["show", "job", &task_id])
                ),
                _ => {}
            }
            let started = matches!(state.as_deref(), Some("RUNNING" | "COMPLETED"));
            async move { started }
        },
    )
    .await;

    testing::wait_all_completed(&server.store, sweep.id, Duration::from_secs(300)).await;
    let task_log = logs.join(format!("exp025-{}_{}.log", job.0, task));
    let served = wait_for(
        "the requeued task serving again",
        Duration::from_secs(120),
        || async {
            let text = std::fs::read_to_string(&task_log).ok()?;
            let starts = text.lines().filter(|l| l.contains("registered")).count();
            (starts >= 2).then_some(starts)
        },
    )
    .await;
    drop(job);

    let trials = server.store.trials(sweep.id).await.unwrap();
    let preempted = trials.iter().find(|t| t.id == trial_id).unwrap();
    assert_eq!(
        (preempted.attempts, preempted.preemptions),
        (1, 1),
        "{preempted:?}"
    );
    for t in &trials {
        assert_eq!(
            t.attempts, 1,
            "trial {}: one lease besides the preemption",
            t.id
        );
    }
    let faulted = testing::deterministic_metrics(&server.store, sweep.id, EPOCHS).await;
    assert_eq!(faulted, reference, "the metrics of the run without Slurm");
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "slurm: job {} of 4 workers drained 8 trials; task {task} got SIGUSR1 mid-trial (on trial {mid_trial}; \
         trial {trial_id} handed back at epoch {}, no attempt used) and was requeued, serving again ({served} \
         starts in its log)",
        job_name,
        handed_back.epochs_done
    );
    server.stop().await;
}
