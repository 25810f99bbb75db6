//! A whole sweep on one machine from one command: the coordinator on
//! 127.0.0.1 over a SQLite file (or any database URL), local worker
//! processes, progress bars, and the results table and t-tests at the end.
//! Interrupted, it stops its workers cleanly (each checkpoints and gives
//! its trial back); run again, it resumes the same sweep.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proto::v1 as pb;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::auth::{self, Auth, Role};
use crate::lease::Policy;
use crate::report::{self, Format};
use crate::store::{Store, TrialRow, now_ms, status};
use crate::{results, search, server, spec};

/// What `coordinator run` was told.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// The sweep file.
    pub file: PathBuf,
    /// Where the sweep is kept (`sqlite://exp025.db` by default).
    pub database_url: String,
    /// Worker processes to start.
    pub workers: usize,
    /// `cpu` or `cuda:N`, for every worker.
    pub device: String,
    /// Where the workers' logs go.
    pub log: PathBuf,
    /// The program that is started with `worker ...` for each worker.
    pub worker_program: PathBuf,
    /// Whether to serve the dashboard, and where (None: the default
    /// address, or a free port when it is taken).
    pub dashboard: Option<Option<std::net::SocketAddr>>,
}

/// How a local run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every trial finished; the results were printed.
    Finished,
    /// Stopped by Ctrl-C or SIGTERM; running it again resumes.
    Interrupted,
}

/// Tells a worker process the pid of the `coordinator run` that started it.
const PARENT_ENV: &str = "EXP025_RUN_PID";

/// Makes this worker process die with the `coordinator run` that started
/// it, so that a run killed hard leaves no workers behind (their trials go
/// back to the queue when it runs again). Only Linux has the means:
/// elsewhere the workers of a run killed hard must be stopped by hand.
pub fn die_with_parent() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        let parent = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse().ok());
        if parent.is_some_and(|p| Pid::from_raw(p) != nix::unistd::getppid()) {
            anyhow::bail!("the coordinator run that started this worker has exited");
        }
    }
    Ok(())
}

const POLL: Duration = Duration::from_millis(250);
/// How long workers get to finish their epoch and give their trial back.
const STOP_GRACE: Duration = Duration::from_secs(120);

/// The sweep of this file already in the store (resumed), or a new one.
async fn sweep_for(store: &Store, file: &str, yaml: &str) -> Result<i64> {
    let plan = spec::parse(yaml).map_err(|e| anyhow::anyhow!("invalid sweep file {file}: {e}"))?;
    let previous = store
        .sweeps()
        .await?
        .into_iter()
        .find(|s| s.yaml == yaml && !s.cancelled);
    if let Some(s) = previous {
        let requeued = store.requeue_running(s.id).await?;
        eprintln!(
            "resuming sweep {} ({}): {} of {} trials finished{}",
            s.id,
            s.name,
            s.counts.completed + s.counts.failed,
            s.counts.total(),
            if requeued > 0 {
                format!(", {requeued} interrupted trials back in the queue")
            } else {
                String::new()
            }
        );
        return Ok(s.id);
    }
    let id = search::submit(store, yaml, &plan).await?;
    if let Some(search) = &plan.search {
        eprintln!(
            "sweep {id} ({}): a bayes search of {} configurations, {} at a time",
            plan.name, plan.budget, search.parallel
        );
    } else {
        eprintln!(
            "sweep {id} ({}): {} trials of {} configurations",
            plan.name,
            plan.trials.len(),
            plan.budget
        );
    }
    Ok(id)
}

/// The largest pack a local worker trains on a CPU: measured with `worker
/// bench --packs` on 2 cores, a pack of 2 trains 1.07x the trial-epochs
/// per second of one trial, 4 no more and larger packs fewer, so a larger
/// pack only makes each trial's epochs come slower.
const MAX_CPU_PACK: usize = 2;
/// The largest pack a local worker trains on a GPU.
const MAX_GPU_PACK: usize = 256;

/// Trials per pack for `workers` workers sharing `trials` on `device`: each
/// worker packs its share of the sweep, so that every trial trains from
/// the start, up to what the device gains from.
pub fn pack_size(trials: usize, workers: usize, device: &str) -> usize {
    let most = if device.starts_with("cuda") {
        MAX_GPU_PACK
    } else {
        MAX_CPU_PACK
    };
    trials.div_ceil(workers.max(1)).clamp(1, most)
}

/// Starts `workers` worker processes against `url`, each training packs of
/// `pack` trials.
fn spawn_workers(
    options: &LocalRun,
    workers: usize,
    pack: usize,
    url: &str,
    token: &str,
) -> Result<Vec<Child>> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(&options.log)
        .with_context(|| format!("opening the worker log {}", options.log.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / workers).max(1).to_string();
    (0..workers)
        .map(|i| {
            let mut command = Command::new(&options.worker_program);
            command
                .args(["worker", "--coordinator", url, "--device", &options.device])
                .args(["--name", &format!("local-{i}")])
                .args(["--pack", &pack.to_string()])
                .env(PARENT_ENV, std::process::id().to_string())
                .env("EXP025_TOKEN", token)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.try_clone()?)
                .kill_on_drop(true);
            if std::env::var_os("RAYON_NUM_THREADS").is_none() {
                command.env("RAYON_NUM_THREADS", &threads);
            }
            command.spawn().context("starting a worker process")
        })
        .collect()
}

/// Asks every worker to stop (each finishes its epoch, checkpoints and
/// releases its trial) and waits; a second Ctrl-C, or the grace period
/// running out, kills them.
async fn stop_workers(workers: &mut [Child]) {
    for w in workers.iter() {
        if let Some(pid) = w.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    let all = async {
        for w in workers.iter_mut() {
            let _ = w.wait().await;
        }
    };
    let give_up = tokio::time::sleep(STOP_GRACE);
    tokio::select! {
        _ = all => return,
        _ = tokio::signal::ctrl_c() => eprintln!("killing the workers"),
        _ = give_up => eprintln!("workers did not stop in time; killing them"),
    }
    for w in workers.iter_mut() {
        let _ = w.kill().await;
    }
}

/// Progress bars: the sweep's epochs overall, and one per running trial.
struct Progress {
    bars: MultiProgress,
    overall: ProgressBar,
    trials: HashMap<i64, ProgressBar>,
    finished: HashMap<i64, String>,
    labels: HashMap<String, String>,
}

impl Progress {
    fn new(trials: &[TrialRow]) -> Self {
        let bars = MultiProgress::new();
        let overall = bars.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "sweep  [{bar:30}] {pos}/{len} epochs  {msg}  elapsed {elapsed}, ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        let mut progress = Self {
            bars,
            overall,
            trials: HashMap::new(),
            finished: trials
                .iter()
                .filter(|t| is_finished(t))
                .map(|t| (t.id, t.status.clone()))
                .collect(),
            labels: HashMap::new(),
        };
        progress.update(trials);
        progress.overall.reset_eta();
        progress
    }

    fn update(&mut self, trials: &[TrialRow]) {
        // A bayes search adds configurations as it goes.
        if trials
            .iter()
            .any(|t| !self.labels.contains_key(&t.config_key))
        {
            let mut distinct: Vec<&str> = trials.iter().map(|t| t.config_key.as_str()).collect();
            distinct.sort_unstable();
            distinct.dedup();
            self.labels = distinct
                .iter()
                .map(|k| k.to_string())
                .zip(results::labels(&distinct))
                .collect();
        }
        let done: u64 = trials.iter().map(|t| u64::from(t.epochs_done)).sum();
        // A trial stopped early trains no further.
        let total: u64 = trials
            .iter()
            .map(|t| match t.status.as_str() {
                status::STOPPED => u64::from(t.epochs_done),
                _ => u64::from(t.config.epochs),
            })
            .sum();
        let finished = trials.iter().filter(|t| is_finished(t)).count();
        self.overall.set_length(total);
        self.overall.set_position(done);
        self.overall
            .set_message(format!("{finished}/{} trials", trials.len()));
        for t in trials {
            let label = self.labels.get(&t.config_key).cloned().unwrap_or_default();
            if is_finished(t) {
                if let Some(bar) = self.trials.remove(&t.id) {
                    bar.finish_and_clear();
                }
                if self.finished.insert(t.id, t.status.clone()).is_none() {
                    let error = match (t.error.as_str(), t.stop_reason.as_str()) {
                        ("", "") => String::new(),
                        ("", reason) => format!(": {reason}"),
                        (error, _) => format!(": {error}"),
                    };
                    self.bars.suspend(|| {
                        eprintln!(
                            "trial {} ({label}, repeat {}) {}{error}",
                            t.id, t.repeat, t.status
                        )
                    });
                }
            } else if t.status == status::RUNNING {
                let bar = self.trials.entry(t.id).or_insert_with(|| {
                    let bar = self.bars.add(ProgressBar::new(u64::from(t.config.epochs)));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  trial {prefix} [{bar:20}] epoch {pos}/{len}  ETA {eta}  {msg}",
                        )
                        .expect("a valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(t.id.to_string());
                    bar.set_message(format!("{label} repeat {}", t.repeat));
                    bar.set_position(u64::from(t.epochs_done));
                    bar.reset_eta();
                    bar
                });
                bar.set_position(u64::from(t.epochs_done));
            } else if let Some(bar) = self.trials.remove(&t.id) {
                bar.finish_and_clear();
            }
        }
    }

    fn clear(self) {
        for bar in self.trials.values() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}

fn is_finished(t: &TrialRow) -> bool {
    status::is_final(&t.status)
}

/// Whether nothing of the sweep is left to run.
async fn is_done(store: &Store, sweep_id: i64) -> Result<bool> {
    Ok(store.sweep(sweep_id).await?.context("the sweep")?.is_done())
}

/// Runs the sweep of `options.file` to the end, or until interrupted.
pub async fn run(options: &LocalRun) -> Result<Outcome> {
    let file = options.file.display().to_string();
    let yaml = std::fs::read_to_string(&options.file).with_context(|| format!("reading {file}"))?;
    let store = Store::connect(&options.database_url)
        .await
        .with_context(|| format!("opening {}", options.database_url))?;
    let sweep_id = sweep_for(&store, &file, &yaml).await?;
    let trials = store.trials(sweep_id).await?;
    if is_done(&store, sweep_id).await? {
        print_results(&store, sweep_id).await?;
        return Ok(Outcome::Finished);
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_server, server_stopping) = watch::channel(false);
    let mut server_stopping = server_stopping;
    let server = tokio::spawn(server::serve(
        store.clone(),
        server::Options {
            policy: Policy::default(),
            auth: Auth::Required,
            tls: None,
        },
        listener,
        async move {
            let _ = server_stopping.wait_for(|s| *s).await;
        },
    ));
    // The workers' own token, revoked when the run ends.
    let token = auth::new_token();
    let token_name = format!("coordinator-run-{}-{}", std::process::id(), now_ms());
    store
        .create_token(&token_name, Role::Worker, &auth::hash(&token))
        .await?;
    let workers = options.workers.clamp(1, trials.len());
    let unfinished = trials.iter().filter(|t| !is_finished(t)).count();
    let pack = pack_size(unfinished, workers, &options.device);
    let mut children = spawn_workers(options, workers, pack, &url, &token)?;
    eprintln!(
        "coordinator on {url}, {workers} worker processes training packs of up to {pack} trials \
         (logs: {}); Ctrl-C stops, running again resumes",
        options.log.display()
    );
    let dashboard = match options.dashboard {
        Some(addr) => Some(start_dashboard(&store, addr, sweep_id, stop_server.subscribe()).await?),
        None => None,
    };

    let mut progress = Progress::new(&trials);
    let stop = worker::runner::wait_for_signal();
    tokio::pin!(stop);
    let outcome = loop {
        tokio::select! {
            _ = &mut stop => break Ok(Outcome::Interrupted),
            _ = tokio::time::sleep(POLL) => {}
        }
        let trials = store.trials(sweep_id).await?;
        progress.update(&trials);
        if is_done(&store, sweep_id).await? {
            break Ok(Outcome::Finished);
        }
        let mut alive = 0;
        for child in &mut children {
            if child.try_wait()?.is_none() {
                alive += 1;
            }
        }
        if alive == 0 {
            break Err(anyhow::anyhow!(
                "every worker process exited with trials left; see {}",
                options.log.display()
            ));
        }
    };
    progress.clear();
    if outcome.as_ref().is_ok_and(|o| *o == Outcome::Interrupted) {
        eprintln!("stopping: each worker finishes its epoch, checkpoints and gives its trial back");
    }
    stop_workers(&mut children).await;
    let _ = stop_server.send(true);
    let served = server.await;
    store.revoke_token(&token_name).await?;
    if let Some((task, reader_token)) = dashboard {
        store.revoke_token(&reader_token).await?;
        task.await??;
    }
    served??;
    match outcome? {
        Outcome::Finished => {
            print_results(&store, sweep_id).await?;
            Ok(Outcome::Finished)
        }
        Outcome::Interrupted => {
            let trials = store.trials(sweep_id).await?;
            let finished = trials.iter().filter(|t| is_finished(t)).count();
            eprintln!(
                "stopped with {finished} of {} trials finished; run the same command again to resume",
                trials.len()
            );
            Ok(Outcome::Interrupted)
        }
    }
}

/// A dashboard task and the name of the reader token its printed address
/// carries (revoked when the run ends).
type RunDashboard = (tokio::task::JoinHandle<std::io::Result<()>>, String);

/// Serves the dashboard on `addr` (see [`crate::dashboard::bind`]) with a
/// reader token of its own, and prints the sweep page's address.
async fn start_dashboard(
    store: &Store,
    addr: Option<std::net::SocketAddr>,
    sweep_id: i64,
    mut stopping: watch::Receiver<bool>,
) -> Result<RunDashboard> {
    let listener = crate::dashboard::bind(addr).await?;
    let token = auth::new_token();
    let name = format!(
        "coordinator-run-dashboard-{}-{}",
        std::process::id(),
        now_ms()
    );
    store
        .create_token(&name, Role::Reader, &auth::hash(&token))
        .await?;
    eprintln!(
        "dashboard: http://{}/?token={token}#/sweep/{sweep_id}",
        listener.local_addr()?
    );
    let gate = auth::Gate {
        store: store.clone(),
        auth: Auth::Required,
    };
    let task = tokio::spawn(crate::dashboard::serve(gate, listener, async move {
        let _ = stopping.wait_for(|s| *s).await;
    }));
    Ok((task, name))
}

/// The results table of the sweep's split at the last epoch, and Welch's
/// t-tests of the sweep's metric between its configurations.
async fn print_results(store: &Store, sweep_id: i64) -> Result<()> {
    let sweep = store.sweep(sweep_id).await?.context("the sweep")?;
    let request = pb::ResultsRequest {
        sweep_id,
        split: sweep.objective.split.name().to_string(),
        epoch: None,
        summaries_only: true,
    };
    let table = results::results(store, &request).await?;
    println!(
        "{}",
        report::results(&table, None, &[], Format::Table).trim_end()
    );
    let failed: Vec<String> = store
        .trials(sweep_id)
        .await?
        .into_iter()
        .filter(|t| t.status == status::FAILED)
        .map(|t| format!("trial {}: {}", t.id, t.error))
        .collect();
    if !failed.is_empty() {
        println!(
            "\n{} trials failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    if table.configurations.len() < 2 {
        return Ok(());
    }
    let all_pairs = table.configurations.len() > 2;
    let compare = pb::CompareRequest {
        sweep_id,
        metric: sweep.objective.metric.name().to_string(),
        split: sweep.objective.split.name().to_string(),
        all_pairs: true,
        ..Default::default()
    };
    let mut tests = results::compare(store, &compare).await?;
    if !all_pairs {
        tests.comparisons.truncate(1);
    }
    println!(
        "\n{}",
        report::compare(&tests, None, all_pairs, Format::Table).trim_end()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pack_size;

    #[test]
    fn each_worker_packs_its_share_up_to_what_the_device_gains_from() {
        assert_eq!(pack_size(4, 2, "cpu"), 2);
        assert_eq!(pack_size(2, 2, "cpu"), 1);
        assert_eq!(pack_size(0, 2, "cpu"), 1);
        assert_eq!(pack_size(400, 2, "cpu"), 2);
        assert_eq!(pack_size(5, 2, "cuda:0"), 3);
        assert_eq!(pack_size(400, 1, "cuda:0"), 256);
    }
}
