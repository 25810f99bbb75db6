//! Results by configuration through the gRPC API, on a real server and a
//! real database (SQLite, and Postgres when given): metrics reported the
//! way workers report them, then read back as summaries, stopping epochs,
//! Welch t-tests and learning curves.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{close, fixture_number as number};
use proto::v1 as pb;
use proto::v1::sweep_service_client::SweepServiceClient;
use serde_json::Value;
use sqlx::Connection;
use tonic::Code;
use tonic::transport::Channel;

fn metric(name: &str, value: f64) -> pb::Metric {
    pb::Metric {
        split: "test".into(),
        name: name.into(),
        value,
    }
}

/// A results request for every trial's values of `split` at `epoch`.
fn request(sweep: i64, split: &str, epoch: Option<pb::EpochSelection>) -> pb::ResultsRequest {
    pb::ResultsRequest {
        sweep_id: sweep,
        split: split.into(),
        epoch,
        summaries_only: false,
    }
}

async fn users(url: &str) -> SweepServiceClient<Channel> {
    SweepServiceClient::connect(url.to_string()).await.unwrap()
}

fn at(epoch: u32) -> Option<pb::EpochSelection> {
    Some(pb::EpochSelection {
        choice: Some(pb::epoch_selection::Choice::Epoch(epoch)),
    })
}

fn same_values(got: &[f64], want: &[f64]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| g == w || (g.is_nan() && w.is_nan()))
}

/// The scipy cases of the fixtures with at most ten values a side.
fn small_scipy_cases() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/welch_ttest.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["a"].as_array().unwrap().len() <= 10 && c["b"].as_array().unwrap().len() <= 10
        })
        .cloned()
        .collect()
}

/// Each small scipy case is one epoch of a two-configuration sweep: group a
/// (init=default) reports the case's `a` values, one per repeat, and group
/// b (init=smart) its `b` values; repeats beyond a group's size do not
/// report the metric. Compare and Results must give scipy's numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_through_the_api_equals_scipy_and_results_count_nan() {
    let cases = small_scipy_cases();
    assert_eq!(cases.len(), 20);
    let epochs = cases.len() as u32;
    let values = |case: &Value, side: &str| -> Vec<f64> {
        case[side].as_array().unwrap().iter().map(number).collect()
    };
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let sweep = common::submit(&server.url(), &common::sweep_yaml(2, 10, epochs)).await;
        common::report_all(&server.url(), epochs, |key, repeat, epoch| {
            let case = &cases[epoch as usize - 1];
            let side = if key.contains("gen_init=default") {
                "a"
            } else {
                "b"
            };
            let mut out = vec![metric("cell_accuracy", 1.0)];
            if let Some(v) = values(case, side).get(repeat as usize) {
                out.push(metric("board_accuracy", *v));
            }
            out
        })
        .await;
        let mut api = users(&server.url()).await;
        for (i, case) in cases.iter().enumerate() {
            let name = case["name"].as_str().unwrap();
            let alternative = match case["alternative"].as_str().unwrap() {
                "less" => pb::Alternative::Less,
                "greater" => pb::Alternative::Greater,
                _ => pb::Alternative::TwoSided,
            };
            let r = api
                .compare(pb::CompareRequest {
                    sweep_id: sweep.id,
                    metric: "board_accuracy".into(),
                    split: "test".into(),
                    epoch: at(i as u32 + 1),
                    a: vec!["init=default".into()],
                    b: vec!["init=smart".into()],
                    alternative: alternative.into(),
                    all_pairs: false,
                })
                .await
                .unwrap()
                .into_inner();
            let c = &r.comparisons[0];
            let (a, b) = (c.a.as_ref().unwrap(), c.b.as_ref().unwrap());
            assert!(same_values(&a.values, &values(case, "a")), "{name}: a");
            assert!(same_values(&b.values, &values(case, "b")), "{name}: b");
            for (what, got, rtol) in [
                ("statistic", c.statistic, 1e-9),
                ("df", c.df, 1e-9),
                ("pvalue", c.pvalue, 1e-7),
            ] {
                let want = number(&case[what]);
                assert!(
                    close(got, want, rtol),
                    "{}/{name}.{what}: {got} vs scipy {want}",
                    db.name
                );
            }

            let results = api
                .results(request(sweep.id, "", at(i as u32 + 1)))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(results.configurations.len(), 2);
            for (config, side) in results.configurations.iter().zip(["a", "b"]) {
                let all = values(case, side);
                let present: Vec<f64> = all.iter().copied().filter(|v| !v.is_nan()).collect();
                let m = config
                    .metrics
                    .iter()
                    .find(|m| m.name == "board_accuracy")
                    .unwrap();
                let s = m.summary.unwrap();
                assert_eq!(config.trials, 10);
                assert_eq!(config.trial_ids.len(), 10, "every trial reached the epoch");
                assert_eq!(s.n as usize, present.len(), "{name}");
                assert_eq!(s.nan as usize, all.len() - present.len(), "{name}");
                if !present.is_empty() {
                    let mean = present.iter().sum::<f64>() / present.len() as f64;
                    assert!(close(s.mean, mean, 1e-12), "{name}: {} vs {mean}", s.mean);
                }
            }
        }
        server.stop().await;
    }
}

/// board_accuracy of trial (config, repeat) at an epoch: default peaks at
/// epoch 2, smart at epoch 3; disc_loss is lowest at epoch 1 for both.
fn shaped(key: &str, repeat: u32, epoch: u32) -> Vec<pb::Metric> {
    let means = if key.contains("gen_init=default") {
        [0.5, 0.7, 0.6]
    } else {
        [0.4, 0.6, 0.8]
    };
    let spread = 0.01 * f64::from(repeat);
    vec![
        metric("board_accuracy", means[epoch as usize - 1] + spread),
        metric("disc_loss", f64::from(epoch) + spread),
        metric("spawn_precision", if repeat == 0 { f64::NAN } else { 0.5 }),
        pb::Metric {
            split: "train".into(),
            ..metric("disc_loss", 10.0 * f64::from(epoch) + spread)
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_epochs_curves_pairs_and_refusals() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let sweep = common::submit(&server.url(), &common::sweep_yaml(2, 3, 3)).await;
        common::report_all(&server.url(), 3, shaped).await;
        let mut api = users(&server.url()).await;
        let stop = |by: &str| {
            Some(pb::EpochSelection {
                choice: Some(pb::epoch_selection::Choice::StopEpochs(pb::StopEpochs {
                    candidates: vec![3, 1, 2],
                    by: by.into(),
                })),
            })
        };
        let results = |epoch| request(sweep.id, "test", epoch);

        let r = api.results(results(stop(""))).await.unwrap().into_inner();
        assert_eq!(r.stop_by, "test board_accuracy");
        assert!(r.stop_maximize);
        let labels: Vec<&str> = r.configurations.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            ["init=default glob_relu=false", "init=smart glob_relu=true"],
            "smart init brings its glob ReLU"
        );
        let chosen: Vec<u32> = r.configurations.iter().map(|c| c.epoch).collect();
        assert_eq!(chosen, [2, 3], "{}", db.name);
        let default = &r.configurations[0];
        let scores: Vec<(u32, f64)> = default
            .candidates
            .iter()
            .map(|c| (c.epoch, c.by.unwrap().mean))
            .collect();
        assert_eq!(scores.len(), 3);
        for ((epoch, mean), want) in scores.iter().zip([0.51, 0.71, 0.61]) {
            assert!(close(*mean, want, 1e-12), "epoch {epoch}: {mean}");
        }
        let accuracy = &default
            .metrics
            .iter()
            .find(|m| m.name == "board_accuracy")
            .unwrap();
        assert_eq!(accuracy.values, [0.7, 0.71, 0.72]);
        let s = accuracy.summary.unwrap();
        assert_eq!((s.n, s.nan), (3, 0));
        assert!(
            close(s.mean, 0.71, 1e-12) && close(s.std, 0.01, 1e-9),
            "{s:?}"
        );
        let precision = default
            .metrics
            .iter()
            .find(|m| m.name == "spawn_precision")
            .unwrap()
            .summary
            .unwrap();
        assert_eq!((precision.n, precision.nan, precision.mean), (2, 1, 0.5));

        // For a table: the same summaries without each trial's values.
        let brief = api
            .results(pb::ResultsRequest {
                summaries_only: true,
                ..results(stop(""))
            })
            .await
            .unwrap()
            .into_inner();
        for (full, brief) in r.configurations.iter().zip(&brief.configurations) {
            assert_eq!(brief.reported, full.trial_ids.len() as u32);
            assert_eq!(full.reported, brief.reported);
            assert!(brief.trial_ids.is_empty());
            for (f, b) in full.metrics.iter().zip(&brief.metrics) {
                assert_eq!((&f.name, f.summary), (&b.name, b.summary));
                assert!(b.values.is_empty() && b.trial_ids.is_empty());
            }
        }

        let by_loss = api
            .results(results(stop("disc_loss")))
            .await
            .unwrap()
            .into_inner();
        assert!(!by_loss.stop_maximize);
        assert!(by_loss.configurations.iter().all(|c| c.epoch == 1));

        // Another split's values, at the epochs the sweep's objective (a
        // test metric) chose.
        let train = api
            .results(pb::ResultsRequest {
                split: "train".into(),
                ..results(stop(""))
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(train.stop_by, "test board_accuracy");
        let chosen: Vec<u32> = train.configurations.iter().map(|c| c.epoch).collect();
        assert_eq!(chosen, [2, 3], "{}", db.name);
        let loss = &train.configurations[0].metrics[0];
        assert_eq!(loss.name, "disc_loss");
        assert_eq!(loss.values, [20.0, 20.01, 20.02]);

        let last = api.results(results(None)).await.unwrap().into_inner();
        assert!(last.configurations.iter().all(|c| c.epoch == 3));

        let curves = api
            .learning_curves(pb::LearningCurvesRequest {
                sweep_id: sweep.id,
                metric: "board_accuracy".into(),
                split: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let smart = &curves.curves[1];
        assert_eq!(smart.label, "init=smart glob_relu=true");
        let means: Vec<f64> = smart
            .points
            .iter()
            .map(|p| p.summary.unwrap().mean)
            .collect();
        for (got, want) in means.iter().zip([0.41, 0.61, 0.81]) {
            assert!(close(*got, want, 1e-12), "{means:?}");
        }
        assert!(smart.points.iter().all(|p| p.summary.unwrap().n == 3));

        let compare = |a: &[&str], b: &[&str], all_pairs| pb::CompareRequest {
            sweep_id: sweep.id,
            metric: "board_accuracy".into(),
            split: "test".into(),
            epoch: None,
            a: a.iter().map(|s| s.to_string()).collect(),
            b: b.iter().map(|s| s.to_string()).collect(),
            alternative: pb::Alternative::TwoSided.into(),
            all_pairs,
        };
        let pairs = api
            .compare(compare(&[], &[], true))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(pairs.comparisons.len(), 2);
        let (ab, ba) = (&pairs.comparisons[0], &pairs.comparisons[1]);
        assert_eq!(ab.statistic, -ba.statistic);
        assert_eq!(ab.pvalue, ba.pvalue);
        assert_eq!(ab.a.as_ref().unwrap().label, "init=default glob_relu=false");

        for (request, code, text) in [
            (
                compare(&["init=nope"], &["init=smart"], false),
                Code::InvalidArgument,
                "no configuration matches group a",
            ),
            (
                compare(&["seed=1"], &["init=smart"], false),
                Code::InvalidArgument,
                "unknown parameter \"seed\"",
            ),
            (
                compare(&["lr=0.0001"], &["init=smart"], false),
                Code::InvalidArgument,
                "both hold configuration init=smart glob_relu=true",
            ),
            (
                compare(&["init"], &["init=smart"], false),
                Code::InvalidArgument,
                "is not KEY=VALUE",
            ),
            (
                pb::CompareRequest {
                    metric: "accuracy".into(),
                    ..compare(&["init=default"], &["init=smart"], false)
                },
                Code::InvalidArgument,
                "unknown test metric \"accuracy\"",
            ),
            (
                pb::CompareRequest {
                    sweep_id: 99,
                    ..compare(&["init=default"], &["init=smart"], false)
                },
                Code::NotFound,
                "sweep 99 not found",
            ),
        ] {
            let status = api.compare(request).await.unwrap_err();
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(status.message().contains(text), "{}", status.message());
        }
        let status = api
            .results(pb::ResultsRequest {
                split: "valid".into(),
                ..results(None)
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("expected train or test"));
        server.stop().await;
    }
}

/// A sweep that declares its stopping epochs (`stop_epochs`) gives the same
/// results as one that does not, read from the copies the database keeps
/// of every trial's metrics at those epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_stopping_epochs_are_read_from_their_copies() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let yaml = common::sweep_yaml(2, 3, 3);
        let plain = common::submit(&server.url(), &yaml).await;
        let declared = yaml.replace("name: test", "name: declared") + "stop_epochs: [1, 2]\n";
        let declared = common::submit(&server.url(), &declared).await;
        common::report_all(&server.url(), 3, shaped).await;

        let mut db_conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        let copies = async |db_conn: &mut sqlx::AnyConnection, sweep: i64| -> i64 {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n FROM stop_epoch_rows c JOIN trials t ON t.id = c.trial_id \
                 WHERE t.sweep_id = $1",
            )
            .bind(sweep)
            .fetch_one(db_conn)
            .await
            .unwrap();
            sqlx::Row::get(&row, "n")
        };
        assert_eq!(copies(&mut db_conn, declared.id).await, 12, "{}", db.name);
        assert_eq!(copies(&mut db_conn, plain.id).await, 0, "{}", db.name);

        let mut api = users(&server.url()).await;
        let stop = Some(pb::EpochSelection {
            choice: Some(pb::epoch_selection::Choice::StopEpochs(pb::StopEpochs {
                candidates: vec![3, 1, 2],
                by: String::new(),
            })),
        });
        let selections = [stop, at(1), at(2), at(3)];
        let mut read = async |sweep: i64| {
            let mut all = Vec::new();
            for epoch in selections.clone() {
                let r = api
                    .results(pb::ResultsRequest {
                        summaries_only: true,
                        ..request(sweep, "test", epoch)
                    })
                    .await
                    .unwrap()
                    .into_inner();
                all.push(r.configurations);
            }
            all
        };
        let want = read(plain.id).await;
        let chosen: Vec<u32> = want[0].iter().map(|c| c.epoch).collect();
        assert_eq!(chosen, [2, 3], "{}", db.name);
        assert_eq!(read(declared.id).await, want, "{}", db.name);
        // With the declared sweep's epoch 1 gone from the epochs table, its
        // results at epoch 1 are unchanged: they come from the copies.
        sqlx::query(
            "DELETE FROM epochs WHERE epoch = 1 AND trial_id IN \
             (SELECT id FROM trials WHERE sweep_id = $1)",
        )
        .bind(declared.id)
        .execute(&mut db_conn)
        .await
        .unwrap();
        assert_eq!(read(declared.id).await, want, "{}", db.name);
        // No candidates named: the declared ones.
        let named = |candidates: Vec<u32>| pb::ResultsRequest {
            summaries_only: true,
            ..request(
                declared.id,
                "test",
                Some(pb::EpochSelection {
                    choice: Some(pb::epoch_selection::Choice::StopEpochs(pb::StopEpochs {
                        candidates,
                        by: String::new(),
                    })),
                }),
            )
        };
        let by_default = api.results(named(vec![])).await.unwrap().into_inner();
        let listed = api.results(named(vec![2, 1])).await.unwrap().into_inner();
        assert_eq!(by_default, listed, "{}", db.name);
        assert!(by_default.configurations.iter().all(|c| c.epoch == 2));
        server.stop().await;
    }
}

/// A trial that has not reached the epoch is counted as a trial but not as
/// a value; a candidate stopping epoch no trial reached is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_trials_are_shown_not_averaged() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let sweep = common::submit(&server.url(), &common::sweep_yaml(1, 2, 4)).await;
        let (mut client, id) = common::worker(&server.url()).await;
        for (trial, reached) in [(1, 4), (2, 2)] {
            let lease = common::lease(&mut client, id).await.unwrap();
            let reports = (1..=reached)
                .map(|epoch| pb::ProgressReport {
                    trial_id: lease.trial.as_ref().unwrap().id,
                    lease_id: lease.lease_id.clone(),
                    epoch,
                    metrics: vec![metric("board_accuracy", f64::from(trial * 10 + epoch))],
                })
                .collect();
            common::send(&mut client, reports).await;
        }
        let mut api = users(&server.url()).await;
        let r = api
            .results(request(sweep.id, "test", None))
            .await
            .unwrap()
            .into_inner();
        let c = &r.configurations[0];
        assert_eq!((c.trials, c.trial_ids.len(), c.epoch), (2, 1, 4));
        assert_eq!(c.metrics[0].values, [14.0]);

        let stop = pb::EpochSelection {
            choice: Some(pb::epoch_selection::Choice::StopEpochs(pb::StopEpochs {
                candidates: vec![2, 6],
                by: String::new(),
            })),
        };
        let r = api
            .results(request(sweep.id, "test", Some(stop)))
            .await
            .unwrap()
            .into_inner();
        let c = &r.configurations[0];
        assert_eq!(c.candidates.len(), 1, "epoch 6 was never reached");
        assert_eq!(c.epoch, 2);
        assert_eq!(c.metrics[0].values, [12.0, 22.0]);
        server.stop().await;
    }
}

/// A trial counts as reported in a split's results only where it has some
/// value of that split: an epoch stored with train metrics alone is no
/// test result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_counts_the_trials_with_values_of_it() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let sweep = common::submit(&server.url(), &common::sweep_yaml(1, 2, 1)).await;
        let train = pb::Metric {
            split: "train".into(),
            ..metric("disc_loss", 0.5)
        };
        common::report_all(&server.url(), 1, |_, repeat, _| match repeat {
            0 => vec![metric("board_accuracy", 0.25), train.clone()],
            _ => vec![train.clone()],
        })
        .await;
        let mut api = users(&server.url()).await;
        for (split, reported, names) in
            [("test", 1, ["board_accuracy"]), ("train", 2, ["disc_loss"])]
        {
            let r = api
                .results(request(sweep.id, split, None))
                .await
                .unwrap()
                .into_inner();
            let c = &r.configurations[0];
            assert_eq!(c.trials, 2, "{}", db.name);
            assert_eq!(c.reported, reported, "{}: {split}", db.name);
            assert_eq!(c.trial_ids.len(), reported as usize, "{}: {split}", db.name);
            let got: Vec<&str> = c.metrics.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(got, names, "{}: {split}", db.name);
        }
        server.stop().await;
    }
}

/// A trial's last epoch is its newest stored one, read with its first
/// stored values: epochs reported again by a second attempt (resumed from
/// an earlier checkpoint) change nothing, at the last epoch as at any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_reported_again_keep_their_first_values_at_the_last_epoch() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_millis(300), 3).await;
        // Epoch 2 is read from its copy as a declared stopping epoch, epoch
        // 3 from the epochs.
        let yaml = common::sweep_yaml(1, 1, 5) + "stop_epochs: [2]\n";
        let sweep = common::submit(&server.url(), &yaml).await;
        let (mut client, id) = common::worker(&server.url()).await;
        let mut api = users(&server.url()).await;
        let mut report = async |epochs: std::ops::RangeInclusive<u32>, offset: f64| {
            let lease = loop {
                if let Some(lease) = common::lease(&mut client, id).await {
                    break lease;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let reports = epochs
                .map(|epoch| pb::ProgressReport {
                    trial_id: lease.trial.as_ref().unwrap().id,
                    lease_id: lease.lease_id.clone(),
                    epoch,
                    metrics: vec![metric("board_accuracy", offset + f64::from(epoch))],
                })
                .collect();
            common::send(&mut client, reports).await
        };
        let value_at = async |api: &mut SweepServiceClient<Channel>, epoch| {
            let r = api
                .results(request(sweep.id, "test", epoch))
                .await
                .unwrap()
                .into_inner();
            let c = &r.configurations[0];
            (c.epoch, c.metrics.first().map(|m| m.values.clone()))
        };
        // The first attempt stores epochs 1-3 (3, the last, read from the
        // trial's last epoch), its lease runs out, and the second resumes
        // from epoch 1 with other values and goes on to epoch 4.
        report(1..=3, 0.0).await;
        assert_eq!(value_at(&mut api, at(3)).await, (3, Some(vec![3.0])));
        tokio::time::sleep(Duration::from_millis(600)).await;
        report(2..=4, 100.0).await;
        for (epoch, want) in [(2, 2.0), (3, 3.0), (4, 104.0)] {
            assert_eq!(
                value_at(&mut api, at(epoch)).await,
                (epoch, Some(vec![want])),
                "{} epoch {epoch}",
                db.name
            );
        }
        server.stop().await;
    }
}

fn cli(url: &str, args: &[&str]) -> String {
    common::client_command(env!("CARGO_BIN_EXE_coordinator"), url, args)
}

/// The results, compare and curves commands of the binary print the API's
/// numbers as a table, CSV and JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_compare_and_curves_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let server = common::start(&db, Duration::from_secs(60), 3).await;
    let url = server.url();
    let yaml = common::sweep_yaml(2, 3, 3) + "stop_epochs: [1, 2, 3]\n";
    let sweep = common::submit(&url, &yaml).await;
    common::report_all(&url, 3, shaped).await;
    let id = sweep.id.to_string();

    let table = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), id.clone());
        move || {
            let run = |args: &[&str]| cli(&url, args);
            (
                run(&[
                    "results",
                    &id,
                    "--metrics",
                    "board_accuracy,spawn_precision",
                ]),
                run(&["results", &id, "--stop-epochs", "1,2,3", "--csv"]),
                run(&["results", &id, "--json"]),
                run(&[
                    "compare",
                    &id,
                    "--metric",
                    "board_accuracy",
                    "--a",
                    "init=default",
                    "--b",
                    "init=smart",
                    "--alternative",
                    "less",
                ]),
                run(&[
                    "compare",
                    &id,
                    "--metric",
                    "board_accuracy",
                    "--all-pairs",
                    "--csv",
                ]),
                run(&["curves", &id, "--metric", "board_accuracy", "--csv"]),
                run(&["results", &id, "--stop-epochs", "1,2,3"]),
                run(&[
                    "results",
                    &id,
                    "--stop-epochs",
                    "1,2,3",
                    "--by",
                    "disc_loss",
                    "--json",
                ]),
                run(&["results", &id, "--epoch", "2", "--split", "test", "--csv"]),
                // Alone, the sweep file's stop_epochs.
                run(&["results", &id, "--stop-epochs", "--csv"]),
            )
        }
    })
    .await
    .unwrap();
    let (
        results,
        stop_csv,
        json,
        compare,
        pairs_csv,
        curves_csv,
        stop_table,
        by_loss,
        at_two,
        declared_csv,
    ) = table;
    assert_eq!(declared_csv, stop_csv);

    let row = results
        .lines()
        .find(|l| l.starts_with("init=default"))
        .unwrap_or_else(|| panic!("{results}"));
    assert!(row.contains("3/3"), "{row}");
    assert!(row.contains("0.6100 ± 0.0100"), "{row}");
    assert!(row.contains("0.5000 ± 0.0000 (1 NaN)"), "{row}");

    let mut csv = csv::Reader::from_reader(stop_csv.as_bytes());
    let header = csv.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][column("epoch")], "2");
    assert_eq!(&rows[1][column("epoch")], "3");
    assert_eq!(
        rows[0][column("board_accuracy_mean")]
            .parse::<f64>()
            .unwrap(),
        0.71
    );
    assert_eq!(&rows[0][column("spawn_precision_nan")], "1");

    let json: Value = serde_json::from_str(&json).unwrap();
    let smart = &json["configurations"][1];
    assert_eq!(
        smart["metrics"]["spawn_precision"]["values"][0],
        Value::Null,
        "NaN is null"
    );
    assert_eq!(smart["metrics"]["board_accuracy"]["n"], 3);

    assert!(compare.contains("alternative: less"), "{compare}");
    assert!(compare.contains("0.6000 0.6100 0.6200"), "{compare}");
    assert!(compare.lines().any(|l| l.starts_with("t = ")), "{compare}");

    let mut pairs = csv::Reader::from_reader(pairs_csv.as_bytes());
    assert_eq!(pairs.records().count(), 2);

    let mut curves = csv::Reader::from_reader(curves_csv.as_bytes());
    let points: Vec<csv::StringRecord> = curves.records().map(Result::unwrap).collect();
    assert_eq!(points.len(), 6, "2 configurations x 3 epochs");
    assert_eq!(&points[0][2], "1");
    assert_eq!(points[0][5].parse::<f64>().unwrap(), 0.51);

    assert!(
        stop_table
            .contains("stopping epoch: the candidate with the highest mean test board_accuracy"),
        "{stop_table}"
    );
    let by_loss: Value = serde_json::from_str(&by_loss).unwrap();
    assert_eq!(by_loss["stop_by"], "test disc_loss");
    assert_eq!(by_loss["configurations"][0]["epoch"], 1, "the lowest loss");
    let mut at_two = csv::Reader::from_reader(at_two.as_bytes());
    let rows: Vec<csv::StringRecord> = at_two.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| &r[4] == "2"), "{rows:?}");
    let (matrix, status, status_json) = tokio::task::spawn_blocking(move || {
        (
            cli(
                &url,
                &["compare", &id, "--metric", "board_accuracy", "--all-pairs"],
            ),
            cli(&url, &["status", &id]),
            cli(&url, &["status", "--json"]),
        )
    })
    .await
    .unwrap();
    assert!(
        status.contains("stopping epochs: 1, 2, 3 (the candidates of `results --stop-epochs`)"),
        "{status}"
    );
    let status_json: Value = serde_json::from_str(&status_json).unwrap();
    assert_eq!(status_json[0]["stop_epochs"], serde_json::json!([1, 2, 3]));
    assert_eq!(status_json[0]["metric_precision"], "float64");
    let rows: Vec<&str> = matrix.lines().filter(|l| l.starts_with("init=")).collect();
    assert_eq!(rows.len(), 2, "{matrix}");
    assert!(
        matrix.contains("p-value: a (row) vs b (column)"),
        "{matrix}"
    );
    let cells: Vec<&str> = rows[0]
        .split("  ")
        .filter(|c| !c.trim().is_empty())
        .collect();
    // Two-sided: twice the one-sided p of the `--alternative less` run above.
    assert_eq!(cells.last().unwrap().trim(), "1.648e-5", "{matrix}");
    assert_eq!(cells[cells.len() - 2].trim(), "-", "the diagonal");
    let typo = std::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["results", &sweep.id.to_string(), "--metrics", "board_acc"])
        .args(["--coordinator", &server.url()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success());
    assert!(
        err.contains("no test metric \"board_acc\" at that epoch; there are: board_accuracy"),
        "{err}"
    );
    server.stop().await;
}
