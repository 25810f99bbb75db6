//! A database made by an earlier coordinator (schema up to migration 0004,
//! a row per metric) migrates forward when a coordinator connects: every
//! value, NaN included, comes back from the one-row-per-epoch table, and
//! the old table is gone; then the ended trials' epochs fold into blocks
//! and read the same. On SQLite, and Postgres when given.

use std::path::{Path, PathBuf};

use coordinator::store::Store;
use proto::metrics::{Metric, Split};
use sqlx::{Connection, Row};

/// The migrations of `backend` up to `last`, copied to a directory of their
/// own (sqlx reads a directory).
fn migrations_up_to(backend: &str, last: u32, into: &Path) -> PathBuf {
    let from = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(backend);
    let dir = into.join(backend);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let version: u32 = name[..4].parse().unwrap();
        if version <= last {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    dir
}

#[tokio::test]
async fn a_database_with_a_row_per_metric_moves_to_a_row_per_epoch() {
    for db in coordinator::testing::databases().await {
        let tmp = tempfile::tempdir().unwrap();
        let dir = migrations_up_to(db.name, 4, tmp.path());
        sqlx::any::install_default_drivers();
        let url = if db.name == "sqlite" {
            format!("{}?mode=rwc", db.url)
        } else {
            db.url.clone()
        };
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(dir.as_path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        // What a coordinator of that schema stored: a sweep, two trials,
        // three epochs of three metrics (one undefined, as NULL).
        let yaml = coordinator::testing::sweep_yaml(1, 2, 3);
        let plan = coordinator::spec::parse(&yaml).unwrap();
        sqlx::query(
            "INSERT INTO sweeps (name, description, yaml, metric, metric_split, maximize, created_ms, \
             method, budget, proposed) VALUES ('old', '', $1, 'board_accuracy', 'test', 1, 0, 'grid', 1, 1)",
        )
        .bind(&yaml)
        .execute(&mut conn)
        .await
        .unwrap();
        for (i, t) in plan.trials.iter().enumerate() {
            sqlx::query(
                "INSERT INTO trials (sweep_id, config, config_key, repeat_index, seed, status, \
                 epochs_done, created_ms, updated_ms) VALUES (1, $1, $2, $3, $4, 'completed', 3, 0, 0)",
            )
            .bind(prost::Message::encode_to_vec(&t.config))
            .bind(&t.config_key)
            .bind(i as i64)
            .bind(i as i64)
            .execute(&mut conn)
            .await
            .unwrap();
            for epoch in 1..=3i64 {
                let base = (i as f64) + epoch as f64 / 10.0;
                for (split, metric, value) in [
                    ("test", "board_accuracy", Some(base)),
                    ("test", "spawn_precision", None),
                    ("train", "gen_loss", Some(-base)),
                ] {
                    // NaN was stored as NULL.
                    let value = value.map_or("NULL".to_string(), |v| format!("{v:?}"));
                    sqlx::query(&format!(
                        "INSERT INTO metrics (trial_id, epoch, split, metric, value) \
                         VALUES ($1, $2, $3, $4, {value})"
                    ))
                    .bind(i as i64 + 1)
                    .bind(epoch)
                    .bind(split)
                    .bind(metric)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                }
            }
        }
        // And one trial still queued, which gets its pack key (migration
        // 0010) when the coordinator connects.
        let queued = &plan.trials[0].config;
        sqlx::query(
            "INSERT INTO trials (sweep_id, config, config_key, repeat_index, seed, status, \
             epochs_done, created_ms, updated_ms) VALUES (1, $1, 'queued-one', 9, 9, 'queued', 0, 0, 0)",
        )
        .bind(prost::Message::encode_to_vec(queued))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let store = Store::connect(&db.url).await.unwrap();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let keys: Vec<(i64, String)> = sqlx::query("SELECT id, pack_key FROM trials ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("id"), r.get("pack_key")))
            .collect();
        let key = proto::config::pack_key(queued);
        assert_eq!(
            keys,
            [(1, String::new()), (2, String::new()), (3, key)],
            "{}: the queued trial's pack key",
            db.name
        );
        for trial in 1..=2i64 {
            let rows = store.metrics_after(trial, 0).await.unwrap();
            assert_eq!(rows.len(), 9, "{}", db.name);
            for r in &rows {
                let base = (trial - 1) as f64 + f64::from(r.epoch) / 10.0;
                match (r.value.split, r.value.metric) {
                    (Split::Test, Metric::BoardAccuracy) => assert_eq!(r.value.value, base),
                    (Split::Test, Metric::SpawnPrecision) => assert!(r.value.value.is_nan()),
                    (Split::Train, Metric::GenLoss) => assert_eq!(r.value.value, -base),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        // Each trial's last epoch is filled from the moved rows.
        let last: Vec<(i64, i64, bool)> = sqlx::query(
            "SELECT l.trial_id, l.epoch, l.metrics AS last, e.metrics AS stored FROM last_epochs l \
             JOIN epochs e ON e.trial_id = l.trial_id AND e.epoch = l.epoch ORDER BY l.trial_id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let bytes = |column| sqlx::Row::get::<Vec<u8>, _>(r, column);
            let same = bytes("last") == bytes("stored");
            (
                sqlx::Row::get(r, "trial_id"),
                sqlx::Row::get(r, "epoch"),
                same,
            )
        })
        .collect();
        assert_eq!(last, [(1, 3, true), (2, 3, true)], "{}", db.name);
        // The old table is gone; a second connect has nothing to move.
        assert!(
            sqlx::query("SELECT COUNT(*) AS n FROM metrics")
                .fetch_one(&mut conn)
                .await
                .is_err()
        );
        drop(Store::connect(&db.url).await.unwrap());
        assert_eq!(store.metrics_after(1, 2).await.unwrap().len(), 3);
        // Their epochs then move to blocks (migration 0012), as a running
        // coordinator folds them, and read the same.
        let before = [
            format!("{:?}", store.metrics_after(1, 0).await.unwrap()),
            format!("{:?}", store.metrics_after(2, 0).await.unwrap()),
        ];
        assert_eq!(store.fold_epochs().await.unwrap(), 2, "{}", db.name);
        let after = [
            format!("{:?}", store.metrics_after(1, 0).await.unwrap()),
            format!("{:?}", store.metrics_after(2, 0).await.unwrap()),
        ];
        assert_eq!(after, before, "{}", db.name);
        let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM epochs")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get("n");
        assert_eq!(left, 0, "{}", db.name);
    }
}
