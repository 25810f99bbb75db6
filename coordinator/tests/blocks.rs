//! The epochs of trials that ended are folded into blocks (eight epochs to
//! a row) by a running coordinator, and every read answers exactly as it
//! did from the rows: a trial's history, one metric of a sweep, the values
//! at a rung, results at any epoch, comparisons and curves. A sweep that
//! stores `float32` stores each value rounded, and its blocks take half
//! the bytes. On a real server and database (SQLite, and Postgres when
//! given).

mod common;

use std::time::Duration;

use coordinator::results;
use coordinator::spec::Precision;
use coordinator::store::{Finish, Store};
use proto::metrics::{Metric, Split};
use proto::v1 as pb;
use sqlx::{Connection, Row};

const EPOCHS: u32 = 20;

/// Values of every kind a trainer reports: fractions no 32-bit float
/// holds, halves and counts that one does, zeros and NaN.
fn values(repeat: u32, epoch: u32) -> Vec<pb::Metric> {
    let e = f64::from(epoch);
    let r = f64::from(repeat);
    let metric = |split: &str, name: &str, value: f64| pb::Metric {
        split: split.into(),
        name: name.into(),
        value,
    };
    vec![
        metric("test", "board_accuracy", (e + r) / 30.0),
        metric("test", "cell_accuracy", 0.5 + r / 4.0),
        metric(
            "test",
            "spawn_precision",
            if epoch.is_multiple_of(3) {
                f64::NAN
            } else {
                0.0
            },
        ),
        metric("test", "disc_loss", 1.0 / (e + r)),
        metric("train", "disc_loss", 10.0 * e + r / 7.0),
        metric("train", "gen_zero_grads", e * 3.0 + r),
    ]
}

/// Everything the store answers about the sweep's epochs, as text (NaN
/// equal to NaN).
async fn reads(store: &Store, sweep: i64, trials: &[i64]) -> String {
    let mut out = String::new();
    for &trial in trials {
        let history = store.metrics_after(trial, 0).await.unwrap();
        out += &format!("history {trial}: {history:?}\n");
        let tail = store.metrics_after(trial, 11).await.unwrap();
        out += &format!("after 11 {trial}: {tail:?}\n");
    }
    let mut values = store
        .metric_values(sweep, Split::Test, Metric::BoardAccuracy, None)
        .await
        .unwrap();
    values.sort_by_key(|r| (r.trial_id, r.epoch));
    out += &format!("metric values: {values:?}\n");
    for epoch in [1, 5, 8, 9, 13, 20] {
        let mut rung = store
            .rung_values(sweep, Split::Train, Metric::DiscLoss, epoch)
            .await
            .unwrap();
        rung.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out += &format!("rung {epoch}: {rung:?}\n");
    }
    let row = store.sweep(sweep).await.unwrap().unwrap();
    let mut at = store
        .epoch_metrics(&row, &[3, 8, 10, 13, 20], None)
        .await
        .unwrap();
    at.sort_by_key(|m| (m.trial_id, m.epoch));
    out += &format!("epoch metrics: {at:?}\n");
    let selections = [
        None,
        Some(pb::epoch_selection::Choice::Epoch(13)),
        Some(pb::epoch_selection::Choice::Epoch(10)),
        Some(pb::epoch_selection::Choice::StopEpochs(pb::StopEpochs {
            candidates: vec![4, 10, 17, 20],
            by: String::new(),
        })),
    ];
    for choice in selections {
        let epoch = choice.map(|choice| pb::EpochSelection {
            choice: Some(choice),
        });
        let request = pb::ResultsRequest {
            sweep_id: sweep,
            split: "test".into(),
            epoch: epoch.clone(),
            summaries_only: false,
        };
        let answer = results::results(store, &request).await.unwrap();
        out += &format!("results: {answer:?}\n");
        let compare = pb::CompareRequest {
            sweep_id: sweep,
            metric: "disc_loss".into(),
            epoch,
            all_pairs: true,
            ..Default::default()
        };
        let answer = results::compare(store, &compare).await.unwrap();
        out += &format!("compare: {answer:?}\n");
    }
    let curves = pb::LearningCurvesRequest {
        sweep_id: sweep,
        metric: "board_accuracy".into(),
        split: "test".into(),
    };
    let answer = results::learning_curves(store, &curves).await.unwrap();
    out += &format!("curves: {answer:?}\n");
    out
}

async fn count(conn: &mut sqlx::AnyConnection, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(conn).await.unwrap().get("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_trials_fold_into_blocks_and_read_the_same() {
    for precision in [Precision::Float64, Precision::Float32] {
        for db in common::databases().await {
            fold_and_read(&db, precision).await;
        }
    }
}

async fn fold_and_read(db: &common::TestDb, precision: Precision) {
    let name = format!("{} {}", db.name, precision.name());
    // Reports through a real server; the trials stay running.
    let server = common::start(&db.url, Duration::from_secs(120), 3).await;
    let mut yaml = common::sweep_yaml(2, 3, EPOCHS) + "stop_epochs: [10]\n";
    if precision == Precision::Float32 {
        yaml += "metric_precision: float32\n";
    }
    let submitted = common::submit(&server.url(), &yaml).await;
    assert_eq!(submitted.metric_precision, precision.name(), "{name}");
    let sweep = submitted.id;
    let status = coordinator::report::detail(
        &pb::SweepDetail {
            sweep: Some(submitted),
            ..Default::default()
        },
        coordinator::report::Format::Table,
    );
    assert_eq!(
        status.contains("metric precision: float32 (each value stored rounded"),
        precision == Precision::Float32,
        "{name}: {status}"
    );
    let leases = common::report_all(&server.url(), EPOCHS, |_, repeat, epoch| {
        values(repeat, epoch)
    })
    .await;
    assert_eq!(leases.len(), 6, "{name}");
    server.stop().await;

    // Four trials end (three completed, one failed); two keep running.
    // No coordinator runs, so nothing is folded yet.
    let store = Store::connect(&db.url).await.unwrap();
    let finishes: Vec<Finish> = leases[..4]
        .iter()
        .enumerate()
        .map(|(i, (trial_id, lease_id))| Finish {
            trial_id: *trial_id,
            lease_id: lease_id.clone(),
            failure: (i == 3).then(|| "broke".to_string()),
        })
        .collect();
    let ended = store.finish_many(&finishes).await.unwrap();
    assert!(ended.iter().all(Option::is_some), "{name}");
    let trials: Vec<i64> = leases.iter().map(|(id, _)| *id).collect();
    // The curves' summaries merged as the running server would have, so
    // that they sum in the same order before and after.
    store.fold_curve_deltas().await.unwrap();
    let before = reads(&store, sweep, &trials).await;
    // Every value as sent, or rounded to 32 bits where the sweep says.
    let mut stored: Vec<u64> = store
        .metric_values(sweep, Split::Test, Metric::BoardAccuracy, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.value.value.to_bits())
        .collect();
    let mut sent: Vec<u64> = (0..2)
        .flat_map(|_| 0..3)
        .flat_map(|r| (1..=EPOCHS).map(move |e| f64::from(e + r) / 30.0))
        .map(|v| precision.round(v).to_bits())
        .collect();
    stored.sort_unstable();
    sent.sort_unstable();
    assert_eq!(stored, sent, "{name}");
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) AS n FROM epochs").await,
        6 * i64::from(EPOCHS),
        "{name}"
    );

    // A coordinator folds the ended trials' epochs as it runs.
    let server = common::start(&db.url, Duration::from_secs(120), 3).await;
    common::wait_until("the ended trials folded", Duration::from_secs(30), || {
        let url = db.url.clone();
        async move {
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            count(
                &mut conn,
                "SELECT COUNT(*) AS n FROM epochs e JOIN trials t ON t.id = e.trial_id \
                 WHERE t.status <> 'running'",
            )
            .await
                == 0
        }
    })
    .await;
    server.stop().await;
    let blocks: Vec<(i64, i64, i64)> = sqlx::query(
        "SELECT trial_id, first_epoch, epoch_count FROM epoch_blocks ORDER BY trial_id, first_epoch",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("trial_id"), r.get("first_epoch"), r.get("epoch_count")))
    .collect();
    let want: Vec<(i64, i64, i64)> = trials[..4]
        .iter()
        .flat_map(|&t| [(t, 1, 8), (t, 9, 8), (t, 17, 4)])
        .collect();
    assert_eq!(blocks, want, "{name}");
    // Rounded values fit 32 bits, so their blocks take half the bytes;
    // the fractions of a float64 sweep need all 8.
    let value_bytes = match precision {
        Precision::Float64 => 8,
        Precision::Float32 => 4,
    };
    let sizes: Vec<(i64, i64)> =
        sqlx::query("SELECT CAST(length(metrics) AS BIGINT) AS n, epoch_count FROM epoch_blocks")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("n"), r.get("epoch_count")))
            .collect();
    for (bytes, epochs) in sizes {
        assert_eq!(bytes, epochs * (4 + 23 * value_bytes), "{name}");
    }
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) AS n FROM epochs").await,
        2 * i64::from(EPOCHS),
        "{name}: the running trials' epochs stay rows"
    );
    let after = reads(&store, sweep, &trials).await;
    for (got, want) in after.lines().zip(before.lines()) {
        assert_eq!(got, want, "{name}: the same answers from blocks");
    }
    assert_eq!(after.lines().count(), before.lines().count());

    // An epoch that does not read as metrics is never folded: the
    // epochs before it are, it and those after stay rows, and reads
    // answer as they did (the error included).
    let (trial, lease) = &leases[4];
    let tail = format!("{:?}", store.metrics_after(*trial, 12).await.unwrap());
    sqlx::query("UPDATE epochs SET metrics = $1 WHERE trial_id = $2 AND epoch = 12")
        .bind(vec![7u8; 3])
        .bind(*trial)
        .execute(&mut conn)
        .await
        .unwrap();
    let finish = Finish {
        trial_id: *trial,
        lease_id: lease.clone(),
        failure: Some("broke".into()),
    };
    assert!(store.finish_many(&[finish]).await.unwrap()[0].is_some());
    // Two coordinators folding at once fold it once.
    let other = Store::connect(&db.url).await.unwrap();
    let (a, b) = tokio::join!(store.fold_epochs(), other.fold_epochs());
    assert_eq!(a.unwrap() + b.unwrap(), 1, "{name}");
    assert_eq!(store.fold_epochs().await.unwrap(), 0, "{name}");
    let rows = format!("SELECT COUNT(*) AS n FROM epochs WHERE trial_id = {trial}");
    assert_eq!(count(&mut conn, &rows).await, 9, "{name}");
    let folded = format!(
        "SELECT CAST(SUM(epoch_count) AS BIGINT) AS n FROM epoch_blocks WHERE trial_id = {trial}"
    );
    assert_eq!(count(&mut conn, &folded).await, 11, "{name}");
    let read = store.metrics_after(*trial, 12).await.unwrap();
    assert_eq!(format!("{read:?}"), tail, "{name}");
    let err = store.metrics_after(*trial, 0).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("trial {trial} epoch 12")),
        "{name}: {err}"
    );
}
