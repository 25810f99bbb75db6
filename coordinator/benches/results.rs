//! How fast results come back from a big sweep in Postgres (not a test).
//!
//! Builds, in a fresh database on the server of `EXP025_PG_URL`, a sweep of
//! 10,000 trials (4 inits x 50 learning rates x 50 repeats) with 300 epochs
//! of all 23 metrics a worker reports (stopping epochs 100, 200 and 300
//! declared, as `sweeps/exp025-init.yaml` does), then times the `results`,
//! `compare` and `curves` commands of the real binary against a real
//! server, and the requests the dashboard's sweep page makes when it opens,
//! beside the raw SQL read of the rows each needs as the baseline (for
//! curves, the per-configuration summaries it reads).
//!
//! `EXP025_PG_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p coordinator --bench results`
//! (`EXP025_BENCH_REPEATS` changes the repeats per configuration, 500 for
//! 100,000 trials; `EXP025_BENCH_KEEP=1` keeps the database and a later
//! run with it reuses the data instead of storing it again;
//! `EXP025_BENCH_PRECISION=float32` makes the sweep store `float32`.)

use std::time::{Duration, Instant};

use coordinator::spec::Precision;
use coordinator::{blocks, packed, testing};
use proto::metrics::{Metric, MetricValue, Split};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::Connection;

const EPOCHS: u32 = 300;
/// The sweep's declared stopping epochs, those `--stop-epochs` reads.
const STOPS: &str = "100, 200, 300";

fn sweep_yaml(repeats: u32, precision: Precision) -> String {
    let lrs: Vec<String> = (0..50)
        .map(|i| format!("{:e}", 1e-4 * (1.0 + f64::from(i) / 10.0)))
        .collect();
    format!(
        "name: bench\nrepeats: {repeats}\ndataset: {{generated: {{seed: 1, train: 16, test: 8}}}}\n\
         parameters:\n  init: {{values: [default, smart, kaiming_fan_in_zero_bias, kaiming_fan_out_zero_bias]}}\n\
         \x20 lr: {{values: [{}]}}\n  epochs: {{value: {EPOCHS}}}\n\
         stop_epochs: [{STOPS}]\nmetric_precision: {}\n",
        lrs.join(", "),
        precision.name()
    )
}

/// Median wall time of `runs` runs of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

#[tokio::main]
async fn main() {
    let Ok(admin) = std::env::var("EXP025_PG_URL") else {
        eprintln!("SKIPPED: set EXP025_PG_URL to a Postgres server to run this benchmark");
        return;
    };
    let repeats: u32 = std::env::var("EXP025_BENCH_REPEATS").map_or(50, |r| r.parse().unwrap());
    let precision = std::env::var("EXP025_BENCH_PRECISION").map_or(Precision::Float64, |p| {
        Precision::parse(&p).expect("EXP025_BENCH_PRECISION is float64 or float32")
    });
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    let db = match precision {
        Precision::Float64 => format!("exp025_bench_results_{repeats}"),
        Precision::Float32 => format!("exp025_bench_results_{repeats}_float32"),
    };
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let keep = std::env::var_os("EXP025_BENCH_KEEP").is_some();
    let trials = i64::from(4 * 50 * repeats);
    let reusable = keep && complete(&url, trials).await;
    if !reusable {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let server = testing::start(&url, Duration::from_secs(60), 3).await;
    if reusable {
        eprintln!("reusing the {trials} trials x {EPOCHS} epochs kept in {db}");
    } else {
        populate(&server.url(), &url, repeats, precision).await;
    }
    populate_samples(&url).await;
    // The raw read of the rows a command needs, as the baseline: without
    // JIT compiling, as the coordinator's connections read (0.25 s of the
    // undeclared stopping epochs' read at 100,000 trials was compiling).
    let raw_sql = |sql: String| {
        let url = url.clone();
        move || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
                    sqlx::query("SET jit = off").execute(&mut c).await.unwrap();
                    sqlx::query(&sql).fetch_all(&mut c).await.unwrap();
                })
            })
        }
    };
    // Each trial's last epoch from last_epochs, earlier ones from the
    // copies at the declared stopping epochs (STOPS), else cut out of the
    // blocks that hold them (the sweep's trials ended, so their epochs are
    // folded), each cut out by the database as the coordinator has it.
    let raw = |epochs: &str| {
        let first = epochs.split(", ").next().unwrap();
        let mut sql = format!(
            "SELECT l.trial_id, l.epoch, l.metrics FROM trials t JOIN last_epochs l \
             ON l.trial_id = t.id WHERE t.sweep_id = 1 AND l.epoch IN ({epochs})"
        );
        if epochs == STOPS {
            sql += &format!(
                " UNION ALL SELECT e.trial_id, e.epoch, e.metrics FROM trials t \
                 JOIN last_epochs l ON l.trial_id = t.id JOIN stop_epoch_rows e ON e.trial_id = t.id \
                 WHERE t.sweep_id = 1 AND l.epoch > {first} AND e.epoch IN ({epochs}) \
                 AND e.epoch < l.epoch"
            );
        } else {
            for epoch in epochs.split(", ") {
                let block = blocks::first_of(epoch.parse().unwrap());
                sql += &format!(
                    " UNION ALL SELECT b.trial_id, {epoch}, {} FROM trials t \
                     JOIN last_epochs l ON l.trial_id = t.id JOIN epoch_blocks b ON b.trial_id = t.id \
                     WHERE t.sweep_id = 1 AND b.first_epoch = {block} AND {epoch} < l.epoch",
                    blocks::slice_sql(epoch)
                );
            }
        }
        raw_sql(sql)
    };
    let id = "1".to_string();
    let server_url = server.url();
    let run = |args: Vec<&'static str>| {
        let (url, id) = (server_url.clone(), id.clone());
        move || {
            let mut all = vec![args[0], id.as_str()];
            all.extend(&args[1..]);
            tokio::task::block_in_place(|| {
                testing::client_command(env!("CARGO_BIN_EXE_coordinator"), &url, &all)
            });
        }
    };
    let mut cases: Vec<(&str, Duration, Duration)> = vec![
        (
            "results (last epoch)",
            median(5, run(vec!["results"])),
            median(5, raw("300")),
        ),
        (
            "results --stop-epochs 100,200,300 (declared)",
            median(5, run(vec!["results", "--stop-epochs", "100,200,300"])),
            median(5, raw(STOPS)),
        ),
        // Candidates the sweep file did not declare, read from blocks.
        (
            "results --stop-epochs 150,250,300 (not declared)",
            median(5, run(vec!["results", "--stop-epochs", "150,250,300"])),
            median(5, raw("150, 250, 300")),
        ),
        (
            "compare --a init=default --b init=smart",
            median(
                5,
                run(vec![
                    "compare",
                    "--metric",
                    "board_accuracy",
                    "--a",
                    "init=default",
                    "--b",
                    "init=smart",
                ]),
            ),
            median(5, raw("300")),
        ),
    ];
    // Curves read the running summaries kept per configuration and epoch;
    // the baseline reads those rows whole.
    cases.push((
        "curves --metric board_accuracy",
        median(5, run(vec!["curves", "--metric", "board_accuracy"])),
        median(
            5,
            raw_sql("SELECT * FROM curve_points WHERE sweep_id = 1".to_string()),
        ),
    ));
    // The dashboard's sweep page: the requests it makes when it opens, at
    // once as a browser does; the baseline is the raw read of results.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dashboard = format!("http://{}", listener.local_addr().unwrap());
    let gate = coordinator::auth::Gate {
        store: server.store.clone(),
        auth: coordinator::auth::Auth::Disabled,
    };
    tokio::spawn(coordinator::dashboard::serve(
        gate,
        listener,
        std::future::pending(),
    ));
    const PAGE: [&str; 5] = [
        "/api/sweeps/1?trials=500",
        "/api/sweeps/1/curves",
        "/api/sweeps/1/results",
        "/api/sweeps/1/compare?top=40",
        "/api/sweeps/1/predictions",
    ];
    let get = |paths: Vec<&'static str>| {
        let base = dashboard.clone();
        move || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    // At once, as a browser sends a page's requests.
                    let mut requests = tokio::task::JoinSet::new();
                    for &path in &paths {
                        let base = base.clone();
                        requests.spawn(async move { testing::http_get(&base, path, None).await });
                    }
                    while let Some(answer) = requests.join_next().await {
                        let (status, body) = answer.unwrap();
                        assert_eq!(status, 200, "{body}");
                    }
                })
            })
        }
    };
    for path in PAGE {
        cases.push((path, median(5, get(vec![path])), median(5, raw("300"))));
    }
    cases.push((
        "dashboard: a sweep page's requests at once",
        median(5, get(PAGE.to_vec())),
        median(5, raw("300")),
    ));
    println!(
        "\n{:<48} {:>10} {:>14} {:>8} {:>12}",
        "command (median of 5)", "seconds", "raw SQL (s)", "ratio", "of 1 s"
    );
    for (name, took, sql) in cases {
        println!(
            "{name:<48} {:>10.3} {:>14.3} {:>8.2} {:>11.0}%",
            took.as_secs_f64(),
            sql.as_secs_f64(),
            took.as_secs_f64() / sql.as_secs_f64(),
            took.as_secs_f64() * 100.0
        );
    }
    server.stop().await;
    if !keep {
        sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// Whether the database holds a finished benchmark sweep of `trials`,
/// with the copies at its stopping epochs.
async fn complete(url: &str, trials: i64) -> bool {
    let Ok(mut pg) = sqlx::AnyConnection::connect(url).await else {
        return false;
    };
    let count = async |pg: &mut sqlx::AnyConnection, sql: &str| {
        let row = sqlx::query(sql).fetch_one(pg).await;
        row.map_or(-1, |row| sqlx::Row::get::<i64, _>(&row, "n"))
    };
    let done = count(
        &mut pg,
        &format!("SELECT COUNT(*) AS n FROM trials WHERE sweep_id = 1 AND epochs_done = {EPOCHS}"),
    )
    .await;
    let stops = STOPS.split(", ").count() as i64;
    let copies = count(&mut pg, "SELECT COUNT(*) AS n FROM stop_epoch_rows").await;
    let unfolded = count(
        &mut pg,
        "SELECT COUNT(*) AS n FROM trials WHERE epochs_folded = 0",
    )
    .await;
    done == trials && copies == trials * stops && unfolded == 0
}

/// Submits the sweep through the API and stores every epoch's metrics of
/// every trial, as if workers had reported them: random values (5% of
/// spawn precisions undefined), at the sweep's precision, packed as the
/// coordinator stores them. Random fractions are the worst case for size:
/// no 32-bit float holds one, so at float64 blocks keep all eight bytes of
/// each.
async fn populate(server: &str, url: &str, repeats: u32, precision: Precision) {
    let sweep = testing::submit(server, &sweep_yaml(repeats, precision)).await;
    assert_eq!(sweep.id, 1);
    let mut pg = sqlx::PgConnection::connect(url).await.unwrap();
    let ids = trial_ids(&mut pg).await;
    let slots: Vec<(Split, Metric)> = packed::slots().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let start = Instant::now();
    for (i, chunk) in ids.chunks(50).enumerate() {
        let (mut trials, mut epochs, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
        for id in chunk {
            for epoch in 1..=i64::from(EPOCHS) {
                let values: Vec<MetricValue> = slots
                    .iter()
                    .map(|&(split, metric)| MetricValue {
                        split,
                        metric,
                        value: if metric == Metric::SpawnPrecision && rng.random::<f64>() < 0.05 {
                            f64::NAN
                        } else {
                            precision.round(rng.random())
                        },
                    })
                    .collect();
                trials.push(*id);
                epochs.push(epoch);
                metrics.push(packed::pack(&values));
            }
        }
        insert_rows(
            &mut pg,
            "epochs (trial_id, epoch, metrics)",
            trials,
            epochs,
            metrics,
        )
        .await;
        if i % 20 == 19 {
            eprint!(
                "\rmetrics of {} / {} trials stored",
                ((i + 1) * 50).min(ids.len()),
                ids.len()
            );
        }
    }
    // Stored behind the coordinator's back, so it builds the curve points
    // and the last epochs from the stored epochs, as for a sweep from
    // before them, when it next connects.
    let stored_in = start.elapsed();
    let building = Instant::now();
    for marker in [
        "INSERT INTO curve_backfill (sweep_id) VALUES (1)",
        "INSERT INTO last_epochs_backfill (pending) VALUES (1)",
    ] {
        sqlx::query(marker).execute(&mut pg).await.unwrap();
    }
    coordinator::store::Store::connect(url).await.unwrap();
    eprintln!(
        "\ncurve points and last epochs built from the stored epochs in {:.0} s",
        building.elapsed().as_secs_f64()
    );
    sqlx::query("UPDATE trials SET status = 'completed', epochs_done = $1")
        .bind(i64::from(EPOCHS))
        .execute(&mut pg)
        .await
        .unwrap();
    // The running coordinator folds the ended trials' epochs into blocks,
    // as it does an existing database's after migration 0012.
    let folding = Instant::now();
    loop {
        let left = count(
            &mut pg,
            "SELECT COUNT(*) AS n FROM trials WHERE epochs_folded = 0",
        )
        .await;
        eprint!("\r{left} trials left to fold    ");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    eprintln!(
        "\nepochs folded into blocks in {:.0} s",
        folding.elapsed().as_secs_f64()
    );
    // The rows' space back to the system, as the README tells a user who
    // migrated a big database; then statistics for the planner.
    for sql in ["VACUUM FULL epochs", "VACUUM ANALYZE"] {
        sqlx::query(sql).execute(&mut pg).await.unwrap();
    }
    let row = sqlx::query(
        "SELECT CAST(SUM(epoch_count) AS BIGINT) AS n, COUNT(*) AS blocks, \
         pg_total_relation_size('epoch_blocks') AS bytes, \
         pg_database_size(current_database()) AS total FROM epoch_blocks",
    )
    .fetch_one(&mut pg)
    .await
    .unwrap();
    let (epochs, count, bytes, total): (i64, i64, i64, i64) = (
        sqlx::Row::get(&row, "n"),
        sqlx::Row::get(&row, "blocks"),
        sqlx::Row::get(&row, "bytes"),
        sqlx::Row::get(&row, "total"),
    );
    eprintln!(
        "{} trials x {EPOCHS} epochs: {epochs} epochs in {count} blocks ({:.2} GB with their index; \
         the database {:.2} GB), stored in {:.0} s",
        sweep.trials,
        bytes as f64 / 1e9,
        total as f64 / 1e9,
        stored_in.as_secs_f64()
    );
}

/// Every trial's latest predictions, as workers send them with their last
/// checkpoint: 4 spawns and 4 falls of random boards (once per database).
async fn populate_samples(url: &str) {
    let mut pg = sqlx::PgConnection::connect(url).await.unwrap();
    let stored = count(&mut pg, "SELECT COUNT(*) AS n FROM samples").await;
    if stored > 0 {
        return;
    }
    let ids = trial_ids(&mut pg).await;
    let mut rng = ChaCha8Rng::seed_from_u64(26);
    let mut board = || -> Vec<u8> {
        (0..220)
            .map(|_| u8::from(rng.random::<f64>() < 0.2))
            .collect()
    };
    for chunk in ids.chunks(500) {
        let (mut trials, mut epochs, mut data) = (Vec::new(), Vec::new(), Vec::new());
        for id in chunk {
            let samples = (0..8)
                .map(|item| proto::v1::BoardSample {
                    item,
                    kind: if item < 4 { "spawn" } else { "fall" }.into(),
                    input: board(),
                    predicted: board(),
                    truth: board(),
                })
                .collect();
            let stored = proto::v1::BoardSamples {
                epoch: EPOCHS,
                samples,
            };
            trials.push(*id);
            epochs.push(i64::from(EPOCHS));
            data.push(prost::Message::encode_to_vec(&stored));
        }
        insert_rows(
            &mut pg,
            "samples (trial_id, epoch, data)",
            trials,
            epochs,
            data,
        )
        .await;
    }
    eprintln!("predictions of {} trials stored", ids.len());
}

/// The `n` a statement counts.
async fn count(pg: &mut sqlx::PgConnection, sql: &str) -> i64 {
    sqlx::Row::get(&sqlx::query(sql).fetch_one(pg).await.unwrap(), "n")
}

/// The benchmark sweep's trial ids, in order.
async fn trial_ids(pg: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query("SELECT id FROM trials WHERE sweep_id = 1 ORDER BY id")
        .fetch_all(pg)
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get(r, "id"))
        .collect()
}

/// Rows of (trial, epoch, bytes) into `table (columns)` in one statement.
async fn insert_rows(
    pg: &mut sqlx::PgConnection,
    table: &str,
    trials: Vec<i64>,
    epochs: Vec<i64>,
    bytes: Vec<Vec<u8>>,
) {
    sqlx::query(&format!(
        "INSERT INTO {table} SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[])"
    ))
    .bind(trials)
    .bind(epochs)
    .bind(bytes)
    .execute(pg)
    .await
    .unwrap();
}
