//! Malformed and hostile gRPC requests sent to a running coordinator, on
//! SQLite and Postgres: wrong lease ids, other workers' trials, epochs out
//! of range or out of order, unknown names and enum values, non-finite and
//! out-of-range values, empty and huge fields. Each gets its status code
//! and a message that says what is wrong (a report from a worker without
//! the lease gets the STOP directive), and none changes what is stored.

mod common;

use std::time::Duration;

use proto::v1::sweep_service_client::SweepServiceClient;
use proto::v1::worker_service_client::WorkerServiceClient;
use proto::v1::{self as pb, Directive};
use sqlx::Connection;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Everything the requests could have changed, as text.
async fn snapshot(url: &str) -> String {
    let mut db = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut out = String::new();
    for sql in [
        "SELECT COUNT(*) AS n FROM sweeps",
        "SELECT COUNT(*) AS n FROM workers",
        // Stored epochs, as rows or folded into blocks.
        "SELECT CAST((SELECT COUNT(*) FROM epochs) + \
         (SELECT COALESCE(SUM(epoch_count), 0) FROM epoch_blocks) AS BIGINT) AS n",
        "SELECT COUNT(*) AS n FROM checkpoints",
        "SELECT CAST(COALESCE(SUM(epoch), 0) AS BIGINT) AS n FROM checkpoints",
        "SELECT COUNT(*) AS n FROM samples",
    ] {
        let n: i64 = sqlx::Row::get(&sqlx::query(sql).fetch_one(&mut db).await.unwrap(), "n");
        out.push_str(&format!("{sql}: {n}\n"));
    }
    let trials = sqlx::query(
        "SELECT id, status, attempts, preemptions, epochs_done, error, \
         COALESCE(lease_id, '') AS lease_id FROM trials ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for t in trials {
        use sqlx::Row;
        out.push_str(&format!(
            "trial {} {} {} {} {} {:?} {}\n",
            t.get::<i64, _>("id"),
            t.get::<String, _>("status"),
            t.get::<i64, _>("attempts"),
            t.get::<i64, _>("preemptions"),
            t.get::<i64, _>("epochs_done"),
            t.get::<String, _>("error"),
            t.get::<String, _>("lease_id"),
        ));
    }
    out
}

fn metric(split: &str, name: &str, value: f64) -> pb::Metric {
    pb::Metric {
        split: split.into(),
        name: name.into(),
        value,
    }
}

fn report(lease: &pb::Lease, epoch: u32, metrics: Vec<pb::Metric>) -> pb::ProgressReport {
    pb::ProgressReport {
        trial_id: lease.trial.as_ref().unwrap().id,
        lease_id: lease.lease_id.clone(),
        epoch,
        metrics,
    }
}

/// Sends one report on its own stream: its directive, or the refusal.
async fn send_one(
    client: &mut WorkerServiceClient<Channel>,
    report: pb::ProgressReport,
) -> Result<Directive, Status> {
    let mut acks = client
        .report_progress(tokio_stream::iter([report]))
        .await?
        .into_inner();
    let ack = acks
        .message()
        .await?
        .ok_or_else(|| Status::unknown("no ack"))?;
    Ok(Directive::try_from(ack.directive).unwrap())
}

/// The outcomes that did not match, one line each.
#[derive(Default)]
struct Verdicts {
    cases: usize,
    wrong: Vec<String>,
}

impl Verdicts {
    fn refused<T: std::fmt::Debug>(
        &mut self,
        case: &str,
        got: Result<T, Status>,
        code: Code,
        text: &str,
    ) {
        self.cases += 1;
        match got {
            Err(s) if s.code() == code && s.message().contains(text) => {
                assert!(
                    s.message().len() < 2_000,
                    "{case}: a long message echoed back"
                );
            }
            Err(s) => self.wrong.push(format!(
                "{case}: got {:?} {:?}, want {code:?} containing {text:?}",
                s.code(),
                s.message()
            )),
            Ok(v) => self.wrong.push(format!("{case}: accepted ({v:?})")),
        }
    }

    fn stopped(&mut self, case: &str, got: Result<Directive, Status>) {
        self.cases += 1;
        if !matches!(got, Ok(Directive::Stop)) {
            self.wrong
                .push(format!("{case}: got {got:?}, want the STOP directive"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_clearly_and_change_nothing() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let url = server.url();
        let sweep = common::submit(&url, &common::sweep_yaml(2, 1, 3)).await;
        let (mut a, a_id) = common::worker(&url).await;
        let (mut b, _) = common::worker(&url).await;
        let mine = common::lease(&mut a, a_id).await.unwrap();
        let theirs = {
            let (mut c, c_id) = common::worker(&url).await;
            common::lease(&mut c, c_id).await.unwrap()
        };
        let epoch1 = vec![metric("test", "board_accuracy", 0.5)];
        assert_eq!(
            common::send(&mut a, vec![report(&mine, 1, epoch1.clone())]).await,
            [Directive::Continue]
        );
        a.put_checkpoint(pb::PutCheckpointRequest {
            trial_id: mine.trial.as_ref().unwrap().id,
            lease_id: mine.lease_id.clone(),
            epoch: 1,
            data: vec![1, 2, 3],
            samples: Vec::new(),
        })
        .await
        .unwrap();
        let before = snapshot(&db.url).await;
        let mine_id = mine.trial.as_ref().unwrap().id;
        let theirs_id = theirs.trial.as_ref().unwrap().id;
        let megabyte = "m".repeat(1_000_000);
        let mut v = Verdicts::default();
        let register = |name: &str, device: &str, slots: u32, version: u32| pb::RegisterRequest {
            protocol_version: version,
            name: name.into(),
            device: device.into(),
            slots,
        };
        let current = proto::PROTOCOL_VERSION;

        // Registration and leasing.
        v.refused(
            "another protocol",
            b.register(register("w", "cpu", 1, 999)).await,
            Code::FailedPrecondition,
            "worker speaks protocol 999",
        );
        v.refused(
            "empty worker name",
            b.register(register("", "cpu", 1, current)).await,
            Code::InvalidArgument,
            "worker name must not be empty",
        );
        v.refused(
            "a 1 MB worker name",
            b.register(register(&megabyte, "cpu", 1, current)).await,
            Code::InvalidArgument,
            "worker name is 1000000 characters long",
        );
        v.refused(
            "a 1 MB device",
            b.register(register("w", &megabyte, 1, current)).await,
            Code::InvalidArgument,
            "device is 1000000 characters long",
        );
        v.refused(
            "no slots",
            b.register(register("w", "cpu", 0, current)).await,
            Code::InvalidArgument,
            "slots must lie in 1..=4096, got 0",
        );
        v.refused(
            "a million slots",
            b.register(register("w", "cpu", 1_000_000, current)).await,
            Code::InvalidArgument,
            "got 1000000",
        );
        v.refused(
            "an unknown worker leases",
            b.lease(pb::LeaseRequest {
                worker_id: 999_999,
                wait_ms: 0,
                ..Default::default()
            })
            .await,
            Code::NotFound,
            "unknown worker 999999",
        );
        v.refused(
            "a negative worker id",
            b.lease(pb::LeaseRequest {
                worker_id: -1,
                wait_ms: 0,
                ..Default::default()
            })
            .await,
            Code::NotFound,
            "unknown worker -1",
        );
        v.refused(
            "a lease wait of 4e9 ms",
            b.lease(pb::LeaseRequest {
                worker_id: a_id,
                wait_ms: 4_000_000_000,
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "wait_ms is 4000000000",
        );
        v.refused(
            "a pack key of a megabyte",
            b.lease(pb::LeaseRequest {
                worker_id: a_id,
                wait_ms: 0,
                pack_with: "k".repeat(1 << 20),
            })
            .await,
            Code::InvalidArgument,
            "pack_with",
        );

        // Progress reports.
        let forged = pb::Lease {
            lease_id: "0".repeat(32),
            ..mine.clone()
        };
        v.stopped(
            "a forged lease id",
            send_one(&mut b, report(&forged, 2, epoch1.clone())).await,
        );
        let stolen = pb::Lease {
            lease_id: mine.lease_id.clone(),
            ..theirs.clone()
        };
        v.stopped(
            "another worker's trial",
            send_one(&mut a, report(&stolen, 1, epoch1.clone())).await,
        );
        v.stopped(
            "a heartbeat with a forged lease",
            send_one(&mut b, report(&forged, 0, vec![])).await,
        );
        let unknown = pb::Lease {
            trial: Some(pb::Trial {
                id: 999_999,
                ..Default::default()
            }),
            ..mine.clone()
        };
        v.refused(
            "an unknown trial",
            send_one(&mut a, report(&unknown, 2, epoch1.clone())).await,
            Code::NotFound,
            "trial 999999 not found",
        );
        v.refused(
            "split evil",
            send_one(
                &mut a,
                report(&mine, 2, vec![metric("evil", "board_accuracy", 0.5)]),
            )
            .await,
            Code::InvalidArgument,
            "unknown split \"evil\"",
        );
        v.refused(
            "an empty split",
            send_one(
                &mut a,
                report(&mine, 2, vec![metric("", "board_accuracy", 0.5)]),
            )
            .await,
            Code::InvalidArgument,
            "unknown split \"\"",
        );
        v.refused(
            "a 1 MB metric name",
            send_one(
                &mut a,
                report(&mine, 2, vec![metric("test", &megabyte, 0.5)]),
            )
            .await,
            Code::InvalidArgument,
            "unknown test metric \"mmmm",
        );
        v.refused(
            "an empty metric name",
            send_one(&mut a, report(&mine, 2, vec![metric("test", "", 0.5)])).await,
            Code::InvalidArgument,
            "unknown test metric \"\"",
        );
        v.refused(
            "a train-only metric on test",
            send_one(
                &mut a,
                report(&mine, 2, vec![metric("test", "step_gen_loss", 0.5)]),
            )
            .await,
            Code::InvalidArgument,
            "unknown test metric \"step_gen_loss\"",
        );
        v.refused(
            "+inf",
            send_one(
                &mut a,
                report(&mine, 2, vec![metric("test", "gen_loss", f64::INFINITY)]),
            )
            .await,
            Code::InvalidArgument,
            "test gen_loss cannot be inf",
        );
        v.refused(
            "-inf",
            send_one(
                &mut a,
                report(
                    &mine,
                    2,
                    vec![metric("train", "epoch_seconds", f64::NEG_INFINITY)],
                ),
            )
            .await,
            Code::InvalidArgument,
            "train epoch_seconds cannot be -inf",
        );
        v.refused(
            "an infinite accuracy",
            send_one(
                &mut a,
                report(
                    &mine,
                    2,
                    vec![metric("test", "board_accuracy", f64::INFINITY)],
                ),
            )
            .await,
            Code::InvalidArgument,
            "test board_accuracy cannot be inf",
        );
        v.refused(
            "an infinite loss among good values",
            send_one(
                &mut a,
                report(
                    &mine,
                    2,
                    vec![
                        metric("test", "gen_loss", 0.5),
                        metric("train", "disc_loss", f64::NEG_INFINITY),
                    ],
                ),
            )
            .await,
            Code::InvalidArgument,
            "train disc_loss cannot be -inf",
        );
        v.refused(
            "a metric twice",
            send_one(
                &mut a,
                report(
                    &mine,
                    2,
                    vec![
                        metric("test", "gen_loss", 0.5),
                        metric("test", "gen_loss", 0.6),
                    ],
                ),
            )
            .await,
            Code::InvalidArgument,
            "test gen_loss is given twice",
        );
        v.refused(
            "epoch 4,000,000,000 of 3",
            send_one(&mut a, report(&mine, 4_000_000_000, epoch1.clone())).await,
            Code::InvalidArgument,
            "has epochs 1..=3, not 4000000000",
        );
        v.refused(
            "epoch 3 before epoch 2",
            send_one(&mut a, report(&mine, 3, epoch1.clone())).await,
            Code::InvalidArgument,
            "stored epochs up to 1; epoch 3 is out of order",
        );
        v.refused(
            "a heartbeat with metrics",
            send_one(&mut a, report(&mine, 0, epoch1.clone())).await,
            Code::InvalidArgument,
            "a heartbeat (epoch 0) carries no metrics",
        );

        // Finishing, releasing and checkpoints.
        let complete = |lease: &pb::Lease, trial_id| pb::CompleteRequest {
            trial_id,
            lease_id: lease.lease_id.clone(),
            samples: Vec::new(),
        };
        v.refused(
            "complete with a forged lease",
            a.complete(complete(&forged, mine_id)).await,
            Code::FailedPrecondition,
            "no longer leased to this worker",
        );
        v.refused(
            "complete another worker's trial",
            a.complete(complete(&mine, theirs_id)).await,
            Code::FailedPrecondition,
            "no longer leased to this worker",
        );
        v.refused(
            "complete an unknown trial",
            a.complete(complete(&mine, 999_999)).await,
            Code::FailedPrecondition,
            "trial 999999",
        );
        let fail = |reason: &str, lease: &pb::Lease, trial_id| pb::FailRequest {
            trial_id,
            lease_id: lease.lease_id.clone(),
            reason: reason.into(),
        };
        v.refused(
            "fail with a 1 MB reason",
            a.fail(fail(&megabyte, &mine, mine_id)).await,
            Code::InvalidArgument,
            "reason is 1000000 characters long",
        );
        v.refused(
            "fail another worker's trial",
            a.fail(fail("no", &mine, theirs_id)).await,
            Code::FailedPrecondition,
            "no longer leased",
        );
        v.refused(
            "release with a forged lease",
            a.release(pb::ReleaseRequest {
                trial_id: mine_id,
                lease_id: forged.lease_id.clone(),
                preempted: true,
            })
            .await,
            Code::FailedPrecondition,
            "no longer leased",
        );
        v.refused(
            "release with an empty lease id",
            a.release(pb::ReleaseRequest {
                trial_id: mine_id,
                lease_id: String::new(),
                preempted: false,
            })
            .await,
            Code::FailedPrecondition,
            "no longer leased",
        );
        let put = |epoch, data: Vec<u8>, lease: &pb::Lease, trial_id| pb::PutCheckpointRequest {
            trial_id,
            lease_id: lease.lease_id.clone(),
            epoch,
            data,
            samples: Vec::new(),
        };
        let board = |cells: usize| vec![1u8; cells];
        let sample = |kind: &str, predicted: Vec<u8>| pb::BoardSample {
            item: 0,
            kind: kind.into(),
            input: board(220),
            predicted,
            truth: board(220),
        };
        v.refused(
            "a checkpoint whose predicted board has 219 cells",
            a.put_checkpoint(pb::PutCheckpointRequest {
                samples: vec![sample("spawn", board(219))],
                ..put(1, vec![1], &mine, mine_id)
            })
            .await,
            Code::InvalidArgument,
            "the predicted board must be 220 cells of 0 or 1",
        );
        v.refused(
            "a checkpoint whose sample board has a cell of 2",
            a.put_checkpoint(pb::PutCheckpointRequest {
                samples: vec![sample("fall", vec![2; 220])],
                ..put(1, vec![1], &mine, mine_id)
            })
            .await,
            Code::InvalidArgument,
            "the predicted board must be 220 cells of 0 or 1",
        );
        v.refused(
            "a checkpoint with a sample of an unknown kind",
            a.put_checkpoint(pb::PutCheckpointRequest {
                samples: vec![sample("rotation", board(220))],
                ..put(1, vec![1], &mine, mine_id)
            })
            .await,
            Code::InvalidArgument,
            "is neither spawn nor fall",
        );
        v.refused(
            "a completion with 33 samples",
            a.complete(pb::CompleteRequest {
                trial_id: mine_id,
                lease_id: mine.lease_id.clone(),
                samples: vec![sample("spawn", board(220)); 33],
            })
            .await,
            Code::InvalidArgument,
            "33 samples; at most 32",
        );
        v.refused(
            "a checkpoint over 3 MiB",
            a.put_checkpoint(put(1, vec![0; (3 << 20) + 1], &mine, mine_id))
                .await,
            Code::InvalidArgument,
            "checkpoint is 3145729 bytes",
        );
        v.refused(
            "a message over 4 MiB",
            a.put_checkpoint(put(1, vec![0; 5 << 20], &mine, mine_id))
                .await,
            Code::OutOfRange,
            "message length too large",
        );
        v.refused(
            "a checkpoint of epoch 99",
            a.put_checkpoint(put(99, vec![1], &mine, mine_id)).await,
            Code::InvalidArgument,
            "has epochs 1..=3, not 99",
        );
        v.refused(
            "a checkpoint of epoch 0",
            a.put_checkpoint(put(0, vec![1], &mine, mine_id)).await,
            Code::InvalidArgument,
            "not 0",
        );
        v.refused(
            "a checkpoint with a forged lease",
            a.put_checkpoint(put(1, vec![9], &forged, mine_id)).await,
            Code::FailedPrecondition,
            "no longer leased",
        );
        v.refused(
            "a checkpoint of another worker's trial",
            a.put_checkpoint(put(1, vec![9], &mine, theirs_id)).await,
            Code::FailedPrecondition,
            "no longer leased",
        );
        v.refused(
            "read a checkpoint with a forged lease",
            a.get_checkpoint(pb::GetCheckpointRequest {
                trial_id: mine_id,
                lease_id: forged.lease_id.clone(),
            })
            .await,
            Code::FailedPrecondition,
            "no longer leased",
        );
        v.refused(
            "read another worker's checkpoint",
            a.get_checkpoint(pb::GetCheckpointRequest {
                trial_id: theirs_id,
                lease_id: mine.lease_id.clone(),
            })
            .await,
            Code::FailedPrecondition,
            "no longer leased",
        );

        // The user side.
        let mut users = SweepServiceClient::connect(url.clone()).await.unwrap();
        let submit = |yaml: String, file_name: &str| pb::SubmitRequest {
            yaml,
            file_name: file_name.into(),
        };
        let d = "dataset: {generated: {seed: 1, train: 8, test: 4}}\nparameters: {}\n";
        v.refused(
            "a 1 MiB name, so a file over 1 MiB",
            users
                .submit(submit(
                    format!("name: {}\n{d}", "n".repeat(1 << 20)),
                    "x.yaml",
                ))
                .await,
            Code::InvalidArgument,
            "the file is",
        );
        v.refused(
            "a 300-character sweep name",
            users
                .submit(submit(format!("name: {}\n{d}", "n".repeat(300)), "x.yaml"))
                .await,
            Code::InvalidArgument,
            "name: is 300 characters long",
        );
        v.refused(
            "a 1 MB file name",
            users
                .submit(submit(format!("name: a\n{d}"), &megabyte))
                .await,
            Code::InvalidArgument,
            "file_name is 1000000 characters long",
        );
        v.refused(
            "not YAML",
            users
                .submit(submit("name: [unclosed\n".into(), "x.yaml"))
                .await,
            Code::InvalidArgument,
            "invalid YAML",
        );
        v.refused(
            "an empty file",
            users.submit(submit(String::new(), "x.yaml")).await,
            Code::InvalidArgument,
            "missing field",
        );
        v.refused(
            "a grid of 5,000,000 trials",
            users
                .submit(submit(common::five_million_trials_yaml(), "g.yaml"))
                .await,
            Code::InvalidArgument,
            "expands to 5000000 trials",
        );
        let bomb = "name: b\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
        v.refused(
            "a YAML bomb",
            users.submit(submit(bomb.into(), "b.yaml")).await,
            Code::InvalidArgument,
            "invalid sweep file b.yaml",
        );
        v.refused(
            "a 5 MB message",
            users.submit(submit("#".repeat(5 << 20), "x.yaml")).await,
            Code::OutOfRange,
            "message length too large",
        );
        v.refused(
            "an unknown sweep",
            users.get_sweep(pb::GetSweepRequest { sweep_id: 999 }).await,
            Code::NotFound,
            "sweep 999 not found",
        );
        v.refused(
            "cancel an unknown sweep",
            users
                .cancel_sweep(pb::CancelSweepRequest { sweep_id: -5 })
                .await,
            Code::NotFound,
            "sweep -5 not found",
        );
        v.refused(
            "watch an unknown sweep",
            users.watch(pb::WatchRequest { sweep_id: 999 }).await,
            Code::NotFound,
            "sweep 999 not found",
        );
        let results =
            |split: &str, epoch: Option<pb::epoch_selection::Choice>| pb::ResultsRequest {
                sweep_id: sweep.id,
                split: split.into(),
                epoch: epoch.map(|c| pb::EpochSelection { choice: Some(c) }),
                summaries_only: false,
            };
        v.refused(
            "results of split evil",
            users.results(results("evil", None)).await,
            Code::InvalidArgument,
            "unknown split \"evil\"",
        );
        v.refused(
            "results at epoch 0",
            users
                .results(results("test", Some(pb::epoch_selection::Choice::Epoch(0))))
                .await,
            Code::InvalidArgument,
            "epochs count from 1",
        );
        let stop = |candidates: Vec<u32>, by: &str| {
            pb::epoch_selection::Choice::StopEpochs(pb::StopEpochs {
                candidates,
                by: by.into(),
            })
        };
        v.refused(
            "stopping epoch 0",
            users
                .results(results("test", Some(stop(vec![0, 2], ""))))
                .await,
            Code::InvalidArgument,
            "counted from 1",
        );
        v.refused(
            "no stopping epochs, and none declared",
            users.results(results("test", Some(stop(vec![], "")))).await,
            Code::InvalidArgument,
            "declares no stop_epochs: name the candidate epochs",
        );
        v.refused(
            "stopping by an unknown metric",
            users
                .results(results("test", Some(stop(vec![1], "luck"))))
                .await,
            Code::InvalidArgument,
            "unknown test metric \"luck\"",
        );
        let compare = |metric: &str, alternative: i32, a: &[&str], b: &[&str]| pb::CompareRequest {
            sweep_id: sweep.id,
            metric: metric.into(),
            alternative,
            a: a.iter().map(|s| s.to_string()).collect(),
            b: b.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        v.refused(
            "compare no metric",
            users
                .compare(compare("", 0, &["init=default"], &["init=smart"]))
                .await,
            Code::InvalidArgument,
            "a metric to compare is required",
        );
        v.refused(
            "compare an unknown metric",
            users
                .compare(compare("luck", 0, &["init=default"], &["init=smart"]))
                .await,
            Code::InvalidArgument,
            "unknown test metric \"luck\"",
        );
        v.refused(
            "an unknown alternative",
            users
                .compare(compare("gen_loss", 99, &["init=default"], &["init=smart"]))
                .await,
            Code::InvalidArgument,
            "unknown alternative 99",
        );
        v.refused(
            "an unknown filter key",
            users
                .compare(compare("gen_loss", 0, &["momentum=1"], &["init=smart"]))
                .await,
            Code::InvalidArgument,
            "unknown parameter \"momentum\"",
        );
        v.refused(
            "a filter without =",
            users
                .compare(compare("gen_loss", 0, &["smart"], &["init=default"]))
                .await,
            Code::InvalidArgument,
            "is not KEY=VALUE",
        );
        v.refused(
            "overlapping groups",
            users
                .compare(compare("gen_loss", 0, &["lr=0.0001"], &["init=smart"]))
                .await,
            Code::InvalidArgument,
            "groups a and b both hold",
        );
        v.refused(
            "an empty group",
            users
                .compare(compare("gen_loss", 0, &[], &["init=smart"]))
                .await,
            Code::InvalidArgument,
            "group a needs at least one",
        );
        v.refused(
            "curves of no metric",
            users
                .learning_curves(pb::LearningCurvesRequest {
                    sweep_id: sweep.id,
                    metric: String::new(),
                    split: "test".into(),
                })
                .await,
            Code::InvalidArgument,
            "a metric is required",
        );
        v.refused(
            "curves of an unknown sweep",
            users
                .learning_curves(pb::LearningCurvesRequest {
                    sweep_id: 404,
                    metric: "gen_loss".into(),
                    split: "test".into(),
                })
                .await,
            Code::NotFound,
            "sweep 404 not found",
        );
        v.refused(
            "the histories of an unknown sweep",
            users
                .trial_histories(pb::TrialHistoriesRequest { sweep_id: 404 })
                .await
                .map(|_| ()),
            Code::NotFound,
            "sweep 404 not found",
        );
        v.refused(
            "the predictions of an unknown sweep",
            users
                .predictions(pb::PredictionsRequest { sweep_id: 404 })
                .await
                .map(|_| ()),
            Code::NotFound,
            "sweep 404 not found",
        );

        assert!(v.wrong.is_empty(), "{}:\n{}", db.name, v.wrong.join("\n"));
        assert!(v.cases >= 60, "{} cases", v.cases);
        assert_eq!(
            snapshot(&db.url).await,
            before,
            "{}: nothing changed",
            db.name
        );
        // Straight to stderr, past the test harness's capture.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "{}: {} hostile requests refused, nothing changed",
            db.name,
            v.cases
        );
        server.stop().await;
    }
}
