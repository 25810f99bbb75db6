//! Two coordinators on one database (SQLite, and Postgres when given), each
//! on its own 127.0.0.1 port: workers split between them drain a sweep
//! with no trial given to two workers; on Postgres, a worker waiting on one
//! is woken at once by a sweep submitted to the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::testing;
use proto::v1 as pb;

/// Values that differ between repeats (by seed) and configurations (by lr),
/// with a NaN now and then, so that curves have something to average.
fn report(config: &pb::TrialConfig, epoch: u32) -> Vec<pb::Metric> {
    let spread = f64::from((config.seed % 7) as u32) * 0.013 + config.lr * 100.0;
    vec![
        pb::Metric {
            split: "test".into(),
            name: "board_accuracy".into(),
            value: f64::from(epoch) / 10.0 + spread,
        },
        pb::Metric {
            split: "test".into(),
            name: "spawn_precision".into(),
            value: if config.seed.is_multiple_of(3) {
                f64::NAN
            } else {
                spread
            },
        },
    ]
}

/// The curves of a sweep as the API gives them, beside the summaries of
/// the stored values themselves: equal to rounding.
async fn check_curves(url: &str, store: &coordinator::store::Store, sweep: i64, label: &str) {
    use coordinator::stats::summarize_present;
    use proto::metrics::{Metric, Split};
    let mut api = proto::v1::sweep_service_client::SweepServiceClient::connect(url.to_string())
        .await
        .unwrap();
    for metric in [Metric::BoardAccuracy, Metric::SpawnPrecision] {
        let curves = api
            .learning_curves(pb::LearningCurvesRequest {
                sweep_id: sweep,
                metric: metric.name().into(),
                split: "test".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let trials = store.trials(sweep).await.unwrap();
        let values = store
            .metric_values(sweep, Split::Test, metric, None)
            .await
            .unwrap();
        assert_eq!(curves.curves.len(), 4, "{label}");
        for curve in &curves.curves {
            let ids: Vec<i64> = trials
                .iter()
                .filter(|t| t.config_key == curve.config_key)
                .map(|t| t.id)
                .collect();
            assert_eq!(curve.points.len(), 3, "{label}");
            for p in &curve.points {
                let raw: Vec<f64> = values
                    .iter()
                    .filter(|v| v.epoch == p.epoch && ids.contains(&v.trial_id))
                    .map(|v| v.value.value)
                    .collect();
                let (want, nan) = summarize_present(&raw);
                let got = p.summary.unwrap();
                assert_eq!((got.n as usize, got.nan as usize), (want.n, nan), "{label}");
                assert!(
                    testing::close(got.mean, want.mean, 1e-12)
                        && testing::close(got.std, want.std, 1e-9),
                    "{label} {metric} epoch {}: {got:?} against {want:?}",
                    p.epoch
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_split_between_two_coordinators_never_share_a_trial() {
    for db in testing::databases().await {
        let lease = Duration::from_secs(60);
        let (a, b) = (
            testing::start(&db.url, lease, 1).await,
            testing::start(&db.url, lease, 1).await,
        );
        let (trials, epochs) = (60u64, 3u64);
        let yaml = testing::sweep_yaml(4, 15, epochs as u32);
        // Queued before any worker asks, so that the workers of both
        // coordinators find trials at their first lease (one coordinator
        // learns of trials queued on the other a moment later, by which
        // time the other's workers could have taken them all).
        let sweep = testing::submit(&a.url(), &yaml).await.id;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let reporter: Arc<testing::Reporter> = Arc::new(report);
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let url = if i % 2 == 0 { a.url() } else { b.url() };
                tokio::spawn(testing::simulated_worker(
                    url,
                    reporter.clone(),
                    stopping.clone(),
                ))
            })
            .collect();
        testing::wait_until("the sweep to end", Duration::from_secs(60), || async {
            a.store.sweep(sweep).await.unwrap().unwrap().is_done()
        })
        .await;
        stop.send(true).unwrap();
        let mut reported = Vec::new();
        for w in workers {
            reported.push(w.await.unwrap());
        }
        // A trial given to two workers would be reported twice (and one
        // completion refused, which fails its worker).
        assert_eq!(
            reported.iter().sum::<u64>(),
            trials * epochs,
            "{}: {reported:?}",
            db.name
        );
        let (on_a, on_b): (Vec<_>, Vec<_>) =
            reported.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        assert!(
            on_a.iter().any(|(_, n)| **n > 0) && on_b.iter().any(|(_, n)| **n > 0),
            "{}: the workers of both coordinators report: {reported:?}",
            db.name
        );
        let stored = b.store.trials(sweep).await.unwrap();
        assert_eq!(stored.len() as u64, trials);
        for t in &stored {
            assert_eq!((t.status.as_str(), t.attempts), ("completed", 1), "{t:?}");
            let mut epochs_stored: Vec<u32> = b
                .store
                .metrics_after(t.id, 0)
                .await
                .unwrap()
                .iter()
                .map(|m| m.epoch)
                .collect();
            epochs_stored.dedup();
            assert_eq!(epochs_stored, (1..=epochs as u32).collect::<Vec<_>>());
        }

        // Curve points kept by both coordinators as epochs arrived add up to
        // the summaries of the stored values.
        check_curves(&a.url(), &a.store, sweep, db.name).await;
        // The same once every delta is folded into the points.
        a.store.fold_curve_deltas().await.unwrap();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM curve_deltas")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(left, 0, "{}", db.name);
        check_curves(&a.url(), &a.store, sweep, &format!("{} folded", db.name)).await;
        a.stop().await;
        b.stop().await;

        // A database from before curve points: they are built from the
        // stored epochs when a coordinator connects.
        for sql in [
            "DELETE FROM curve_points",
            "INSERT INTO curve_backfill (sweep_id) SELECT id FROM sweeps",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        let c = testing::start(&db.url, lease, 1).await;
        check_curves(
            &c.url(),
            &c.store,
            sweep,
            &format!("{} backfilled", db.name),
        )
        .await;
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_worker_is_woken_by_a_trial_queued_on_another_coordinator() {
    // Coordinators share a database for real only on Postgres (LISTEN and
    // NOTIFY carry the wakeup); SQLite is one machine's, one coordinator's.
    let postgres: Vec<_> = testing::databases()
        .await
        .into_iter()
        .filter(|db| db.name == "postgres")
        .collect();
    if postgres.is_empty() {
        eprintln!("SKIPPED: set EXP025_PG_URL to wake a worker across coordinators");
    }
    for db in postgres {
        let (a, b) = (
            testing::start(&db.url, Duration::from_secs(60), 1).await,
            testing::start(&db.url, Duration::from_secs(60), 1).await,
        );
        let (mut client, worker) = testing::worker(&b.url()).await;
        let waiting = tokio::spawn(async move {
            let request = pb::LeaseRequest {
                worker_id: worker,
                wait_ms: 20_000,
                ..Default::default()
            };
            let leased = client.lease(request).await.unwrap().into_inner().lease;
            (leased, Instant::now())
        });
        // Long enough for the call to be waiting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let submitted = Instant::now();
        testing::submit(&a.url(), &testing::sweep_yaml(1, 1, 1)).await;
        let (leased, at) = waiting.await.unwrap();
        assert!(leased.is_some(), "{}", db.name);
        let latency = at - submitted;
        // The queue is looked at unwoken every 2 s; a wakeup is far sooner.
        assert!(
            latency < Duration::from_millis(1000),
            "{}: leased {latency:?} after the sweep was queued",
            db.name
        );
        a.stop().await;
        b.stop().await;
    }
}
