//! How many workers one coordinator on Postgres serves (a benchmark, not a
//! test).
//!
//! Starts the real `coordinator serve` process on a fresh Postgres database
//! (tokens on, as deployed) and, in this process, N simulated workers: each
//! a real gRPC client on its own connection doing what a worker does
//! without training: register, lease (a long poll), stream one report per
//! epoch with all 23 metrics, put a 4 KB checkpoint every 10 epochs (the worker's default period), and
//! complete. For each N it prints the epoch reports per second sustained,
//! lease and report-acknowledgement latencies (p50/p99), the coordinator's
//! CPU, and checks that the database holds exactly the epochs sent (and
//! one copy of each at the sweep's declared stopping epochs). Beside
//! them, the ceiling: the time Postgres alone takes to store the same rows
//! in the best way the schema allows (a multi-row insert of every epoch
//! row, 1,000 a statement, in one transaction).
//!
//! `EXP025_PG_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p coordinator --bench load`
//! (`EXP025_LOAD_WORKERS=8,64,512,2048` the worker counts,
//! `EXP025_LOAD_EPOCHS=20` the epochs per trial.)

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coordinator::packed;
use proto::client::Coordinator;
use proto::metrics::{Metric, MetricValue, Split};
use proto::v1::worker_service_client::WorkerServiceClient;
use proto::v1::{self as pb, Directive};
use sqlx::{Connection, Row};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

/// Every metric a worker reports, with values that vary by epoch.
fn metrics(epoch: u32) -> Vec<pb::Metric> {
    Split::ALL
        .into_iter()
        .flat_map(|split| Metric::of_split(split).map(move |metric| (split, metric)))
        .enumerate()
        .map(|(i, (split, metric))| {
            MetricValue {
                split,
                metric,
                value: (f64::from(epoch) + i as f64) / 100.0,
            }
            .into()
        })
        .collect()
}

/// Latencies and counts of one simulated worker.
#[derive(Default)]
struct Tally {
    /// The first lease (every worker asks at once when the sweep is
    /// queued) and the others.
    first_lease: Option<Duration>,
    leases: Vec<Duration>,
    acks: Vec<Duration>,
    reports: u64,
}

/// How a simulated worker paces its epochs.
#[derive(Clone, Copy)]
enum Pace {
    /// Each epoch as soon as the last was acknowledged: the most the
    /// coordinator sustains.
    Flat,
    /// An epoch every `every`, the first after `offset`: a fixed offered
    /// load, at which latencies mean something.
    Every { every: Duration, offset: Duration },
}

/// One simulated worker: registers, waits for `go` (the sweep is queued),
/// then works until `done`.
async fn worker(
    coordinator: Coordinator,
    name: String,
    pace: Pace,
    mut go: tokio::sync::watch::Receiver<bool>,
    done: Arc<AtomicBool>,
) -> Tally {
    // Connecting and registering are retried, as a worker does: a burst of
    // thousands of connections can be reset.
    let (mut client, worker_id) = loop {
        let attempt = async {
            let mut client = WorkerServiceClient::new(coordinator.connect().await.ok()?);
            let registered = client
                .register(pb::RegisterRequest {
                    protocol_version: proto::PROTOCOL_VERSION,
                    name: name.clone(),
                    device: "simulated".into(),
                    slots: 1,
                })
                .await
                .ok()?;
            Some((client, registered.into_inner().worker_id))
        };
        match attempt.await {
            Some(registered) => break registered,
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut tally = Tally::default();
    go.wait_for(|go| *go).await.unwrap();
    let mut next = tokio::time::Instant::now();
    if let Pace::Every { offset, .. } = pace {
        next += offset;
    }
    while !done.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let lease = client
            .lease(pb::LeaseRequest {
                worker_id,
                wait_ms: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .lease;
        let Some(lease) = lease else { continue };
        match tally.first_lease {
            None => tally.first_lease = Some(asked.elapsed()),
            Some(_) => tally.leases.push(asked.elapsed()),
        }
        let trial = lease.trial.unwrap();
        let epochs = trial.config.unwrap().epochs;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut acks = client
            .report_progress(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for epoch in lease.resume_from_epoch + 1..=epochs {
            if let Pace::Every { every, .. } = pace {
                tokio::time::sleep_until(next).await;
                next += every;
            }
            let sent = Instant::now();
            tx.send(pb::ProgressReport {
                trial_id: trial.id,
                lease_id: lease.lease_id.clone(),
                epoch,
                metrics: metrics(epoch),
            })
            .await
            .unwrap();
            let ack = acks.message().await.unwrap().unwrap();
            tally.acks.push(sent.elapsed());
            tally.reports += 1;
            assert_eq!(Directive::try_from(ack.directive), Ok(Directive::Continue));
            if epoch % 10 == 0 && epoch < epochs {
                client
                    .put_checkpoint(pb::PutCheckpointRequest {
                        trial_id: trial.id,
                        lease_id: lease.lease_id.clone(),
                        epoch,
                        data: vec![7; 4096],
                        samples: Vec::new(),
                    })
                    .await
                    .unwrap();
            }
        }
        drop(tx);
        client
            .complete(pb::CompleteRequest {
                trial_id: trial.id,
                lease_id: lease.lease_id,
                samples: Vec::new(),
            })
            .await
            .unwrap();
    }
    tally
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// CPU seconds (user + system) every process named `postgres` has used:
/// the server's share of the machine.
fn postgres_cpu_seconds() -> f64 {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| std::panic::catch_unwind(|| cpu_seconds(pid)).unwrap_or(0.0))
        .sum()
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime, fields 14 and 15 of stat (11 and 12 after the name).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn admin(url: &str, sql: &str) {
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

/// Seconds Postgres takes to store `rows` packed epoch rows for the
/// trials of `sweep`, 1,000 a statement in one transaction, into a copy of
/// the epochs table.
async fn ceiling(url: &str, sweep: i64, epochs: u32) -> (f64, u64) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("CREATE TEMP TABLE ceiling (LIKE epochs INCLUDING ALL)")
        .execute(&mut conn)
        .await
        .unwrap();
    let ids: Vec<i64> = sqlx::query("SELECT id FROM trials WHERE sweep_id = $1")
        .bind(sweep)
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("id"))
        .collect();
    let rows: Vec<(i64, i64, Vec<u8>)> = ids
        .iter()
        .flat_map(|id| {
            (1..=epochs).map(move |e| {
                let values: Vec<MetricValue> = metrics(e)
                    .iter()
                    .map(|m| MetricValue::try_from(m).unwrap())
                    .collect();
                (*id, i64::from(e), packed::pack(&values))
            })
        })
        .collect();
    let started = Instant::now();
    let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
    for chunk in rows.chunks(1000) {
        let (t, e, m): (Vec<i64>, Vec<i64>, Vec<Vec<u8>>) =
            chunk
                .iter()
                .cloned()
                .fold((vec![], vec![], vec![]), |mut acc, (t, e, m)| {
                    acc.0.push(t);
                    acc.1.push(e);
                    acc.2.push(m);
                    acc
                });
        sqlx::query(
            "INSERT INTO ceiling (trial_id, epoch, metrics) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[])",
        )
        .bind(t)
        .bind(e)
        .bind(m)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    (started.elapsed().as_secs_f64(), rows.len() as u64)
}

/// What every round shares.
struct Setup {
    workers: Coordinator,
    sweeps: pb::sweep_service_client::SweepServiceClient<proto::client::AuthChannel>,
    url: String,
    server: u32,
    metrics_port: u16,
    epochs: u32,
}

/// The coordinator's own mean time (ms) answering Lease calls and epoch
/// reports, from its /metrics: (sum, count) of each.
fn served(port: u16) -> [(f64, f64); 2] {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    if std::env::var_os("EXP025_LOAD_BATCHES").is_some() {
        for what in ["leases", "epoch reports"] {
            let mean = |series: &str| {
                value(&format!("{series}_sum{{what=\"{what}\"}}"))
                    / value(&format!("{series}_count{{what=\"{what}\"}}"))
            };
            eprintln!(
                "{what}: batch {:.1} ms, waited {:.1} ms, {:.1} a batch",
                1e3 * mean("exp025_batch_seconds"),
                1e3 * mean("exp025_batch_wait_seconds"),
                mean("exp025_batch_size")
            );
        }
    }
    [
        (
            value("exp025_rpc_duration_seconds_sum{method=\"Lease\"}"),
            value("exp025_rpc_duration_seconds_count{method=\"Lease\"}"),
        ),
        (
            value("exp025_report_duration_seconds_sum"),
            value("exp025_report_duration_seconds_count"),
        ),
    ]
}

/// One sweep drained by `n` simulated workers, flat out or offering `rate`
/// reports a second in all: its line of the table.
async fn round(setup: &Setup, n: usize, rate: Option<f64>) -> String {
    let epochs = setup.epochs;
    let mut pg = sqlx::AnyConnection::connect(&setup.url).await.unwrap();
    let mut sweeps = setup.sweeps.clone();
    let trials = (4 * n).max(64);
    // Stopping epochs declared, as a real sweep's are: the database copies
    // those epochs as they are stored.
    let mut stops = vec![epochs.div_ceil(2), epochs];
    stops.dedup();
    let yaml = format!(
        "name: load-{n}\nrepeats: {trials}\ndataset: {{generated: {{seed: 1, train: 8, test: 4}}}}\n\
         parameters: {{epochs: {{value: {epochs}}}}}\nstop_epochs: {stops:?}\n"
    );
    let done = Arc::new(AtomicBool::new(false));
    let (go, going) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            // Spread over one period, as workers that started apart are.
            let pace = rate.map_or(Pace::Flat, |rate| {
                let every = Duration::from_secs_f64(n as f64 / rate);
                Pace::Every {
                    every,
                    offset: every.mul_f64(i as f64 / n as f64),
                }
            });
            tokio::spawn(worker(
                setup.workers.clone(),
                format!("sim-{n}-{i}"),
                pace,
                going.clone(),
                done.clone(),
            ))
        })
        .collect();
    // Let every worker connect and register.
    tokio::time::sleep(Duration::from_millis(500 + 2 * n as u64)).await;
    let cpu_before = cpu_seconds(setup.server);
    let postgres_before = postgres_cpu_seconds();
    let own_before = cpu_seconds(std::process::id());
    let served_before = served(setup.metrics_port);
    let started = Instant::now();
    let sweep = sweeps
        .submit(pb::SubmitRequest {
            yaml,
            file_name: "load.yaml".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
        .id;
    go.send(true).unwrap();
    loop {
        let left: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM trials WHERE sweep_id = $1 AND status <> 'completed'",
        )
        .bind(sweep)
        .fetch_one(&mut pg)
        .await
        .unwrap()
        .get("n");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(setup.server) - cpu_before;
    let postgres_cpu = postgres_cpu_seconds() - postgres_before;
    let own_cpu = cpu_seconds(std::process::id()) - own_before;
    let served_after = served(setup.metrics_port);
    let mean_ms = |i: usize| {
        let (sum, count): (f64, f64) = (
            served_after[i].0 - served_before[i].0,
            served_after[i].1 - served_before[i].1,
        );
        sum / count.max(1.0) * 1000.0
    };
    done.store(true, Ordering::Relaxed);
    let mut firsts = Vec::new();
    let mut leases = Vec::new();
    let mut acks = Vec::new();
    let mut reports = 0;
    for t in tasks {
        let tally = t.await.unwrap();
        leases.extend(tally.leases);
        firsts.extend(tally.first_lease);
        acks.extend(tally.acks);
        reports += tally.reports;
    }
    leases.sort();
    firsts.sort();
    acks.sort();
    // As rows, or folded into blocks once their trials ended.
    let stored: i64 = sqlx::query(
        "SELECT CAST((SELECT COUNT(*) FROM epochs e JOIN trials t ON t.id = e.trial_id \
         WHERE t.sweep_id = $1) + (SELECT COALESCE(SUM(b.epoch_count), 0) FROM epoch_blocks b \
         JOIN trials t ON t.id = b.trial_id WHERE t.sweep_id = $1) AS BIGINT) AS n",
    )
    .bind(sweep)
    .fetch_one(&mut pg)
    .await
    .unwrap()
    .get("n");
    let copies: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM stop_epoch_rows c JOIN trials t ON t.id = c.trial_id \
         WHERE t.sweep_id = $1",
    )
    .bind(sweep)
    .fetch_one(&mut pg)
    .await
    .unwrap()
    .get("n");
    let expected = trials as u64 * u64::from(epochs);
    assert_eq!(reports, expected, "every epoch reported once");
    assert_eq!(stored as u64, expected, "every epoch stored once");
    assert_eq!(
        copies as u64,
        trials as u64 * stops.len() as u64,
        "every stopping epoch copied once"
    );
    let (alone, rows) = ceiling(&setup.url, sweep, epochs).await;
    format!(
        "{n:>7} {:>8} {trials:>7} {reports:>9} {:>12.0} {:>8.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>8.0}% {:>8.0}% {:>8.0}% {:>10.0} {:>9} {:>8.1}ms {:>8.1}ms",
        rate.map_or("flat out".to_string(), |r| format!("{r:.0}/s")),
        reports as f64 / wall,
        percentile(&firsts, 0.99),
        percentile(&leases, 0.5),
        percentile(&leases, 0.99),
        percentile(&acks, 0.5),
        percentile(&acks, 0.99),
        cpu / wall * 100.0,
        postgres_cpu / wall * 100.0,
        own_cpu / wall * 100.0,
        rows as f64 / alone,
        if stored as u64 == expected {
            "exact"
        } else {
            "WRONG"
        },
        mean_ms(0),
        mean_ms(1)
    )
}

#[tokio::main]
async fn main() {
    let Ok(admin_url) = std::env::var("EXP025_PG_URL") else {
        eprintln!("SKIPPED: set EXP025_PG_URL to a Postgres server to run this benchmark");
        return;
    };
    let counts: Vec<usize> = std::env::var("EXP025_LOAD_WORKERS")
        .unwrap_or_else(|_| "8,64,512,2048".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let epochs: u32 = std::env::var("EXP025_LOAD_EPOCHS").map_or(20, |e| e.parse().unwrap());
    sqlx::any::install_default_drivers();
    let db = "exp025_bench_load";
    admin(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )
    .await;
    admin(&admin_url, &format!("CREATE DATABASE {db}")).await;
    let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);

    let token = |role: &str, name: &str| {
        let out = Command::new(COORDINATOR)
            .args(["token", "create", "--role", role, "--name", name])
            .args(["--database-url", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (worker_token, user_token) = (token("worker", "load"), token("user", "bench"));

    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, metrics_port) = (free_port(), free_port());
    let server = Server(
        Command::new(COORDINATOR)
            .args(["serve", "--database-url", &url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("RUST_LOG", "warn")
            .stderr(
                std::fs::File::create(std::env::temp_dir().join("exp025-load-coordinator.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let users = Coordinator {
        url: endpoint.clone(),
        token: Some(user_token),
        tls_ca: None,
    };
    let workers = Coordinator {
        token: Some(worker_token),
        ..users.clone()
    };
    let started = Instant::now();
    let channel = loop {
        match users.connect().await {
            Ok(c) => break c,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the coordinator did not start: {e}"),
        }
    };
    let sweeps = pb::sweep_service_client::SweepServiceClient::new(channel);
    println!(
        "one coordinator process on Postgres, simulated workers in one process, {epochs} epochs a trial, \
         23 metrics a report, a 4 KB checkpoint every 10 epochs (the worker's default period)\n"
    );
    println!(
        "{:>7} {:>8} {:>7} {:>9} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>10} {:>10}",
        "workers",
        "offered",
        "trials",
        "reports",
        "reports/s",
        "1st lease p99",
        "lease p50",
        "lease p99",
        "ack p50",
        "ack p99",
        "coord CPU",
        "PG CPU",
        "load CPU",
        "PG alone/s",
        "stored",
        "lease srv",
        "ack srv"
    );
    let rate: f64 = std::env::var("EXP025_LOAD_RATE").map_or(5000.0, |r| r.parse().unwrap());
    let setup = Setup {
        workers,
        sweeps,
        url: url.clone(),
        server: server.0.id(),
        metrics_port,
        epochs,
    };
    for &n in &counts {
        println!("{}", round(&setup, n, None).await);
        println!("{}", round(&setup, n, Some(rate)).await);
    }
    drop(server);
    admin(&admin_url, &format!("DROP DATABASE {db} WITH (FORCE)")).await;
}
