//! Real databases and a real coordinator for integration tests (the
//! `test-support` feature): used by this crate's tests and the worker's.

use std::net::SocketAddr;
use std::time::Duration;

use proto::v1::sweep_service_client::SweepServiceClient;
use proto::v1::worker_service_client::WorkerServiceClient;
use proto::v1::{self as pb, Directive};
use tonic::transport::Channel;

use crate::auth::Auth;
use crate::lease::Policy;
use crate::store::Store;
use rand::RngExt;
use sqlx::Connection;
use tokio::sync::oneshot;

/// A fresh database: a SQLite file, or a new Postgres database; either is
/// removed when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// The database's URL.
    pub url: String,
    /// `sqlite` or `postgres`, for assertion messages.
    pub name: &'static str,
    _dir: Option<tempfile::TempDir>,
    /// The server's admin URL and the database to drop there.
    postgres: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, db)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime: drop the database from a
        // thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let mut conn = sqlx::AnyConnection::connect(&admin).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await?;
                    anyhow::Ok(())
                })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e:#}");
        }
    }
}

/// A fresh SQLite database, and a fresh Postgres database when
/// `EXP025_PG_URL` names a server (postgres://USER@HOST:PORT/DB). Without it
/// the Postgres half is skipped with a notice, unless `EXP025_REQUIRE_DB` is
/// set (as in CI), where its absence fails the test.
pub async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    let mut dbs = vec![TestDb {
        url: format!("sqlite://{}", dir.path().join("test.db").display()),
        name: "sqlite",
        _dir: Some(dir),
        postgres: None,
    }];
    match std::env::var("EXP025_PG_URL") {
        Ok(admin) => {
            sqlx::any::install_default_drivers();
            let db = format!("exp025_test_{:016x}", rand::rng().random::<u64>());
            let mut conn = sqlx::AnyConnection::connect(&admin)
                .await
                .expect("connecting to EXP025_PG_URL");
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').expect("a database in the URL").0;
            dbs.push(TestDb {
                url: format!("{base}/{db}"),
                name: "postgres",
                _dir: None,
                postgres: Some((admin.clone(), db)),
            });
        }
        Err(_) => {
            assert!(
                std::env::var_os("EXP025_REQUIRE_DB").is_none(),
                "EXP025_REQUIRE_DB is set but EXP025_PG_URL is not"
            );
            eprintln!("SKIPPED: the Postgres half of this test (set EXP025_PG_URL to run it)");
        }
    }
    dbs
}

/// A Postgres server of the test's own, in a temporary directory on a free
/// 127.0.0.1 port, that the test may restart; stopped when dropped. Made
/// with the `initdb` and `pg_ctl` of the newest `/usr/lib/postgresql/*/bin`
/// (as user `postgres` when run as root).
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Starts one, or says SKIPPED and returns `None` where Postgres is not
    /// installed (a failure when `EXP025_REQUIRE_DB` is set).
    pub fn start() -> Option<Self> {
        let mut bins: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        bins.sort();
        let Some(bin) = bins.pop() else {
            assert!(
                std::env::var_os("EXP025_REQUIRE_DB").is_none(),
                "EXP025_REQUIRE_DB is set but no /usr/lib/postgresql/*/bin/initdb exists"
            );
            eprintln!("SKIPPED: no Postgres server binaries (/usr/lib/postgresql/*/bin)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Self { dir, bin, port };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.ctl(&["start"]);
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A Postgres program, to run as user postgres when we are root.
    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        let data = self.data();
        let mut all = vec!["-D", &data, "-o", &options, "-l", &log, "-w"];
        all.extend(args);
        self.run("pg_ctl", &all);
    }

    /// Restarts the server the way a crash does: no clean shutdown, then
    /// recovery from its log.
    pub fn crash_and_restart(&self) {
        self.ctl(&["restart", "-m", "immediate"]);
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "stop", "-m", "immediate"])
            .output();
    }
}

/// Whether this process runs as root (who may not run Postgres itself).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A coordinator serving on an ephemeral 127.0.0.1 port.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its store, to check what was written.
    pub store: Store,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A coordinator on an ephemeral 127.0.0.1 port, without tokens (the tests
/// of tokens start their own).
pub async fn start(url: &str, lease: Duration, max_attempts: u32) -> Running {
    start_at(url, "127.0.0.1:0".parse().unwrap(), lease, max_attempts).await
}

/// A coordinator on `addr`, e.g. the address of one stopped before.
pub async fn start_at(url: &str, addr: SocketAddr, lease: Duration, max_attempts: u32) -> Running {
    let options = crate::server::Options {
        policy: Policy {
            lease,
            max_attempts,
        },
        auth: Auth::Disabled,
        tls: None,
    };
    start_with(url, addr, options).await
}

/// A coordinator on `addr` served as `options` say (tokens, TLS).
pub async fn start_with(url: &str, addr: SocketAddr, options: crate::server::Options) -> Running {
    let store = Store::connect(url).await.unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(crate::server::serve(
        store.clone(),
        options,
        listener,
        async {
            let _ = rx.await;
        },
    ));
    Running {
        addr,
        store,
        stop: Some(tx),
        task,
    }
}

/// A small sweep of `configs` x `repeats` trials of `epochs` epochs.
pub fn sweep_yaml(configs: usize, repeats: u32, epochs: u32) -> String {
    let inits = [
        "default",
        "smart",
        "kaiming_fan_in_zero_bias",
        "kaiming_fan_out_zero_bias",
    ];
    format!(
        "name: test\nrepeats: {repeats}\ndataset: {{generated: {{seed: 1, train: 16, test: 8}}}}\n\
         parameters:\n  init: {{values: [{}]}}\n  epochs: {{value: {epochs}}}\n",
        inits[..configs].join(", ")
    )
}

/// A grid sweep of 100 x 100 x 100 configurations x 5 repeats: 5,000,000
/// trials, which the coordinator must refuse from the counts alone.
pub fn five_million_trials_yaml() -> String {
    let values: Vec<String> = (1..=100)
        .map(|i| format!("{}", f64::from(i) / 1000.0))
        .collect();
    let list = values.join(", ");
    format!(
        "name: huge\nrepeats: 5\ndataset: {{generated: {{seed: 1, train: 8, test: 4}}}}\n\
         parameters:\n  lr: {{values: [{list}]}}\n  beta1: {{values: [{list}]}}\n  beta2: {{values: [{list}]}}\n"
    )
}

/// A registered worker client.
pub async fn worker(url: &str) -> (WorkerServiceClient<Channel>, i64) {
    let mut client = WorkerServiceClient::connect(url.to_string()).await.unwrap();
    let id = client
        .register(pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            name: "test".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    (client, id)
}

/// Submits a sweep through the API.
pub async fn submit(url: &str, yaml: &str) -> pb::Sweep {
    let mut users = SweepServiceClient::connect(url.to_string()).await.unwrap();
    let request = pb::SubmitRequest {
        yaml: yaml.into(),
        file_name: "test.yaml".into(),
    };
    users
        .submit(request)
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
}

/// Leases one trial without waiting.
pub async fn lease(client: &mut WorkerServiceClient<Channel>, worker_id: i64) -> Option<pb::Lease> {
    let request = pb::LeaseRequest {
        worker_id,
        wait_ms: 0,
        ..Default::default()
    };
    client.lease(request).await.unwrap().into_inner().lease
}

/// Leases every queued trial, one at a time without waiting.
pub async fn lease_all(
    client: &mut WorkerServiceClient<Channel>,
    worker_id: i64,
) -> Vec<pb::Lease> {
    let mut leases = Vec::new();
    while let Some(l) = lease(client, worker_id).await {
        leases.push(l);
    }
    leases
}

/// Sends reports on one progress stream and returns the directives.
pub async fn send(
    client: &mut WorkerServiceClient<Channel>,
    reports: Vec<pb::ProgressReport>,
) -> Vec<Directive> {
    let n = reports.len();
    let mut acks = client
        .report_progress(tokio_stream::iter(reports))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    for _ in 0..n {
        let ack = acks.message().await.unwrap().unwrap();
        out.push(Directive::try_from(ack.directive).unwrap());
    }
    out
}

/// Leases every queued trial of the server at `url` as one worker and
/// reports, for each of `epochs` epochs, the metrics `values(config_key,
/// repeat, epoch)` gives; the trials stay running. Returns each trial's id
/// and lease, in the order leased.
pub async fn report_all(
    url: &str,
    epochs: u32,
    values: impl Fn(&str, u32, u32) -> Vec<pb::Metric>,
) -> Vec<(i64, String)> {
    let (mut client, id) = worker(url).await;
    let mut leases = Vec::new();
    while let Some(lease) = lease(&mut client, id).await {
        let trial = lease.trial.clone().unwrap();
        let reports = (1..=epochs)
            .map(|epoch| pb::ProgressReport {
                trial_id: trial.id,
                lease_id: lease.lease_id.clone(),
                epoch,
                metrics: values(&trial.config_key, trial.repeat, epoch),
            })
            .collect();
        let acks = send(&mut client, reports).await;
        assert!(acks.iter().all(|d| *d == Directive::Continue));
        leases.push((trial.id, lease.lease_id));
    }
    leases
}

/// One plain HTTP/1.0 GET of `path` from the server at `base`
/// (`http://HOST:PORT`), with a bearer token when given: the status code
/// and the body.
pub async fn http_get(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// A number of the fixtures, where non-finite floats are the strings
/// `NaN`, `inf` and `-inf`.
pub fn fixture_number(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap(),
        other => other.as_f64().unwrap(),
    }
}

/// Equal within a relative tolerance, NaN equal to NaN.
pub fn close(got: f64, want: f64, rtol: f64) -> bool {
    (got.is_nan() && want.is_nan()) || got == want || (got - want).abs() <= rtol * want.abs()
}

/// Runs a client command of the coordinator binary `program` against the
/// coordinator at `url` and returns its standard output; fails on an error.
pub fn client_command(program: &str, url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .args(["--coordinator", url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "coordinator {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Every deterministic metric of every trial of a sweep, by (configuration,
/// repeat): (epoch, split, metric) -> the value's bits (so that NaN equals
/// NaN and nothing is rounded). Wall times are left out. Fails unless every
/// trial completed with each of its `epochs` epochs stored whole.
pub type TrialMetrics = std::collections::BTreeMap<
    (String, u32),
    std::collections::BTreeMap<(u32, String, String), u64>,
>;

/// The [`TrialMetrics`] of a finished sweep.
pub async fn deterministic_metrics(store: &Store, sweep: i64, epochs: u32) -> TrialMetrics {
    use proto::metrics::Metric;
    let timing = [
        Metric::EpochSeconds,
        Metric::TrainSeconds,
        Metric::ItemsPerSecond,
    ];
    let mut out = TrialMetrics::new();
    for trial in store.trials(sweep).await.unwrap() {
        assert_eq!(
            trial.status, "completed",
            "trial {}: {}",
            trial.id, trial.error
        );
        let rows = store.metrics_after(trial.id, 0).await.unwrap();
        let per_epoch = rows.len() / epochs as usize;
        for epoch in 1..=epochs {
            let n = rows.iter().filter(|r| r.epoch == epoch).count();
            assert_eq!(
                n, per_epoch,
                "trial {} epoch {epoch} stored whole",
                trial.id
            );
        }
        let values = rows
            .iter()
            .filter(|r| !timing.contains(&r.value.metric))
            .map(|r| {
                let key = (
                    r.epoch,
                    r.value.split.to_string(),
                    r.value.metric.to_string(),
                );
                (key, r.value.value.to_bits())
            })
            .collect();
        out.insert((trial.config_key.clone(), trial.repeat), values);
    }
    out
}

/// Polls `f` every 100 ms until it gives a value; fails after `limit`,
/// naming `what` it waited for.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `done` until it is true; fails after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(what, limit, || {
        let done = done();
        async move { done.await.then_some(()) }
    })
    .await
}

/// Waits until every trial of the sweep completed; fails after `limit`.
/// Reads that fail (a database restarting) are tried again.
pub async fn wait_all_completed(store: &Store, sweep: i64, limit: Duration) {
    wait_until("the sweep to complete", limit, || async {
        store
            .trials(sweep)
            .await
            .is_ok_and(|t| t.iter().all(|t| t.status == "completed"))
    })
    .await
}

/// A child process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Process(pub std::process::Child);

impl Process {
    /// Kills it (SIGKILL) and reaps it now.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker process: `program worker` (the coordinator binary's command
/// that serves `worker run`) against `url`, on one thread, checkpointing
/// every `checkpoint_every` epochs, logging at info to `log` (or nowhere),
/// without a token.
pub fn spawn_worker(
    program: &str,
    url: &str,
    cache: &std::path::Path,
    name: &str,
    checkpoint_every: u32,
    log: Option<&std::fs::File>,
) -> Process {
    spawn_worker_with(program, url, cache, name, checkpoint_every, log, &[])
}

/// [`spawn_worker`] with more flags of `worker run` (`--pack 3`, say).
pub fn spawn_worker_with(
    program: &str,
    url: &str,
    cache: &std::path::Path,
    name: &str,
    checkpoint_every: u32,
    log: Option<&std::fs::File>,
    flags: &[&str],
) -> Process {
    use std::process::{Command, Stdio};
    let stderr = log.map_or_else(Stdio::null, |f| Stdio::from(f.try_clone().unwrap()));
    Process(
        Command::new(program)
            .args(["worker", "--coordinator", url, "--name", name])
            .args(["--checkpoint-every", &checkpoint_every.to_string()])
            .args(flags)
            .arg("--cache-dir")
            .arg(cache)
            .env("RAYON_NUM_THREADS", "1")
            .env("RUST_LOG", "info")
            .env_remove("EXP025_TOKEN")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

/// The predictions a simulated worker sends when it completes a trial: a
/// spawn (the piece at the top right) and a fall (a cell dropping one
/// row), the spawn predicted with one cell missing and one too many for
/// even seeds and right for odd ones.
pub fn board_samples(config: &pb::TrialConfig) -> Vec<pb::BoardSample> {
    let board = |filled: &[usize]| -> Vec<u8> {
        let mut b = vec![0u8; 220];
        for &i in filled {
            b[i] = 1;
        }
        b
    };
    let spawn_truth = board(&[4, 5, 14, 15, 219]);
    let spawn_predicted = if config.seed.is_multiple_of(2) {
        board(&[4, 14, 15, 16, 219])
    } else {
        spawn_truth.clone()
    };
    vec![
        pb::BoardSample {
            item: 0,
            kind: "spawn".into(),
            input: board(&[219]),
            predicted: spawn_predicted,
            truth: spawn_truth,
        },
        pb::BoardSample {
            item: 1,
            kind: "fall".into(),
            input: board(&[24, 219]),
            predicted: board(&[34, 219]),
            truth: board(&[34, 219]),
        },
    ]
}

/// What a simulated worker reports for a trial's epoch.
pub type Reporter = dyn Fn(&pb::TrialConfig, u32) -> Vec<pb::Metric> + Send + Sync;

/// A worker that trains nothing: it registers, leases (waiting up to a
/// second), reports each epoch with `report`'s metrics on one progress
/// stream per trial, and completes, until `stop` turns true. A directive to
/// stop ends the trial without completing it, as a real worker does.
/// Returns the epochs it reported.
pub async fn simulated_worker(
    url: String,
    report: std::sync::Arc<Reporter>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let (mut client, worker_id) = worker(&url).await;
    let mut reported = 0;
    while !*stop.borrow() {
        let request = pb::LeaseRequest {
            worker_id,
            wait_ms: 1000,
            ..Default::default()
        };
        let leased = tokio::select! {
            leased = client.lease(request) => leased.unwrap().into_inner().lease,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(lease) = leased else { continue };
        let trial = lease.trial.unwrap();
        let config = trial.config.unwrap();
        let reports: Vec<pb::ProgressReport> = (lease.resume_from_epoch + 1..=config.epochs)
            .map(|epoch| pb::ProgressReport {
                trial_id: trial.id,
                lease_id: lease.lease_id.clone(),
                epoch,
                metrics: report(&config, epoch),
            })
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut acks = client
            .report_progress(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut held = true;
        for r in reports {
            tx.send(r).await.unwrap();
            let ack = acks.message().await.unwrap().unwrap();
            reported += 1;
            if Directive::try_from(ack.directive) != Ok(Directive::Continue) {
                held = false;
                break;
            }
        }
        drop(tx);
        if held {
            let request = pb::CompleteRequest {
                trial_id: trial.id,
                lease_id: lease.lease_id,
                samples: board_samples(&config),
            };
            client.complete(request).await.unwrap();
        }
    }
    reported
}
