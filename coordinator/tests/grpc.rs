//! The coordinator through its gRPC API, on a real server at an ephemeral
//! 127.0.0.1 port and a real database (SQLite, and Postgres when given).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use coordinator::store::{EpochReport, LeaseState, Recorded, Store};
use proto::metrics::{Metric, MetricValue, Split};
use proto::v1::sweep_service_client::SweepServiceClient;
use proto::v1::worker_service_client::WorkerServiceClient;
use proto::v1::{self as pb, Directive};
use tonic::Code;
use tonic::transport::Channel;

fn report(lease: &pb::Lease, epoch: u32) -> pb::ProgressReport {
    pb::ProgressReport {
        trial_id: lease.trial.as_ref().unwrap().id,
        lease_id: lease.lease_id.clone(),
        epoch,
        metrics: vec![
            pb::Metric {
                split: "test".into(),
                name: "board_accuracy".into(),
                value: 0.25 * f64::from(epoch),
            },
            pb::Metric {
                split: "test".into(),
                name: "spawn_precision".into(),
                value: f64::NAN,
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_leasing_clients_never_share_a_trial() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        common::submit(&server.url(), &common::sweep_yaml(4, 10, 1)).await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let url = server.url();
            tasks.push(tokio::spawn(async move {
                let (mut client, id) = common::worker(&url).await;
                let leases = common::lease_all(&mut client, id).await;
                leases
                    .into_iter()
                    .map(|l| l.trial.unwrap().id)
                    .collect::<Vec<_>>()
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 40, "{}: every trial leased", db.name);
        assert_eq!(distinct.len(), 40, "{}: no trial leased twice", db.name);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packing_worker_gets_trials_of_its_pack_key_first() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let sweep = |batch: u32| {
            format!(
                "name: b{batch}\nrepeats: 2\ndataset: {{generated: {{seed: 1, train: 16, test: 8}}}}\n\
                 parameters:\n  batch_size: {{value: {batch}}}\n  epochs: {{value: 1}}\n"
            )
        };
        // The batch-4 trials are older than the batch-8 ones.
        common::submit(&server.url(), &sweep(4)).await;
        common::submit(&server.url(), &sweep(8)).await;
        let (mut client, id) = common::worker(&server.url()).await;
        let mut lease = async |pack_with: &str| {
            let request = pb::LeaseRequest {
                worker_id: id,
                wait_ms: 0,
                pack_with: pack_with.to_string(),
            };
            let lease = client.lease(request).await.unwrap().into_inner().lease;
            lease.unwrap().trial.unwrap().config.unwrap()
        };
        let oldest = lease("").await;
        assert_eq!(oldest.batch_size, 4, "{}: no key, the oldest", db.name);
        let eights = proto::config::pack_key(&pb::TrialConfig {
            batch_size: 8,
            ..oldest.clone()
        });
        for _ in 0..2 {
            let joined = lease(&eights).await;
            assert_eq!(joined.batch_size, 8, "{}: its pack's key first", db.name);
            assert_eq!(proto::config::pack_key(&joined), eights);
        }
        let other = lease(&eights).await;
        assert_eq!(
            other.batch_size, 4,
            "{}: none of its key left, any other",
            db.name
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_re_leased_and_the_old_holder_refused() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_millis(600), 2).await;
        common::submit(&server.url(), &common::sweep_yaml(1, 1, 3)).await;
        let (mut first, first_id) = common::worker(&server.url()).await;
        let (mut second, second_id) = common::worker(&server.url()).await;
        let old = common::lease(&mut first, first_id).await.unwrap();
        assert_eq!(
            common::send(&mut first, vec![report(&old, 1)]).await,
            [Directive::Continue]
        );

        tokio::time::sleep(Duration::from_millis(1200)).await;
        let new = common::lease(&mut second, second_id)
            .await
            .expect("the expired trial is queued again");
        assert_eq!(
            new.trial.as_ref().unwrap().id,
            old.trial.as_ref().unwrap().id
        );
        assert_eq!(new.trial.as_ref().unwrap().attempts, 2);
        assert_eq!(
            new.resume_from_epoch, 1,
            "{}: the stored epoch survives",
            db.name
        );

        assert_eq!(
            common::send(&mut first, vec![report(&old, 2)]).await,
            [Directive::Stop]
        );
        let complete = pb::CompleteRequest {
            trial_id: new.trial.as_ref().unwrap().id,
            lease_id: old.lease_id.clone(),
            samples: Vec::new(),
        };
        let err = first.complete(complete).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{}: {err:?}", db.name);
        let put = pb::PutCheckpointRequest {
            trial_id: new.trial.as_ref().unwrap().id,
            lease_id: old.lease_id,
            epoch: 2,
            data: vec![1],
            samples: Vec::new(),
        };
        assert_eq!(
            first.put_checkpoint(put).await.unwrap_err().code(),
            Code::FailedPrecondition
        );

        // The new holder lets the lease lapse too: after its last attempt
        // the trial fails with the reason.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let trial = server
            .store
            .trial(new.trial.unwrap().id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(trial.status, "failed", "{}", db.name);
        assert!(trial.error.contains("lease expired"), "{}", trial.error);
        assert_eq!(trial.epochs_done, 1, "only the holder's report was stored");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trials_ended_at_once_each_end_once_as_their_holder_said() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        common::submit(&server.url(), &common::sweep_yaml(1, 12, 1)).await;
        let (mut client, id) = common::worker(&server.url()).await;
        let leases = common::lease_all(&mut client, id).await;
        assert_eq!(leases.len(), 12, "{}", db.name);
        // Sent together, so that they end in the same batches: each trial
        // completed (the first twice, by the same holder), failed, or
        // ended with a lease it does not hold.
        let complete = |l: &pb::Lease, lease_id: &str| pb::CompleteRequest {
            trial_id: l.trial.as_ref().unwrap().id,
            lease_id: lease_id.to_string(),
            samples: Vec::new(),
        };
        let mut calls = tokio::task::JoinSet::new();
        for (i, l) in leases.iter().enumerate() {
            let mut c = client.clone();
            let (l, lease_id) = (l.clone(), l.lease_id.clone());
            calls.spawn(async move {
                let code = |r: Result<(), tonic::Status>| r.err().map(|e| e.code());
                let done = match i % 4 {
                    0 => {
                        let mut twice = c.clone();
                        let (a, b) = tokio::join!(
                            twice.complete(complete(&l, &lease_id)),
                            c.complete(complete(&l, &lease_id))
                        );
                        vec![code(a.map(drop)), code(b.map(drop))]
                    }
                    1 => {
                        let fail = pb::FailRequest {
                            trial_id: l.trial.as_ref().unwrap().id,
                            lease_id,
                            reason: format!("broke {i}"),
                        };
                        vec![code(c.fail(fail).await.map(drop))]
                    }
                    2 => vec![code(
                        c.complete(complete(&l, "not-the-lease")).await.map(drop),
                    )],
                    _ => vec![code(c.complete(complete(&l, &lease_id)).await.map(drop))],
                };
                (i, l.trial.unwrap().id, done)
            });
        }
        while let Some(ended) = calls.join_next().await {
            let (i, trial_id, codes) = ended.unwrap();
            let trial = server.store.trial(trial_id).await.unwrap().unwrap();
            let (status, codes_want): (&str, Vec<Vec<Option<Code>>>) = match i % 4 {
                0 => (
                    "completed",
                    vec![
                        vec![None, Some(Code::FailedPrecondition)],
                        vec![Some(Code::FailedPrecondition), None],
                    ],
                ),
                1 => ("failed", vec![vec![None]]),
                2 => ("running", vec![vec![Some(Code::FailedPrecondition)]]),
                _ => ("completed", vec![vec![None]]),
            };
            assert!(
                codes_want.contains(&codes),
                "{}: trial {i}: {codes:?}",
                db.name
            );
            assert_eq!(trial.status, status, "{}: trial {i}", db.name);
            if i % 4 == 1 {
                assert_eq!(trial.error, format!("broke {i}"), "{}", db.name);
            }
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_report_writes_nothing_twice() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        common::submit(&server.url(), &common::sweep_yaml(1, 1, 2)).await;
        let (mut client, id) = common::worker(&server.url()).await;
        let l = common::lease(&mut client, id).await.unwrap();
        let reports = vec![report(&l, 1), report(&l, 1), report(&l, 2), report(&l, 1)];
        assert_eq!(
            common::send(&mut client, reports).await,
            [Directive::Continue; 4]
        );
        let trial_id = l.trial.unwrap().id;
        let stored = server.store.metrics_after(trial_id, 0).await.unwrap();
        assert_eq!(stored.len(), 4, "{}: 2 epochs x 2 metrics", db.name);
        assert!(
            stored
                .iter()
                .any(|m| m.value.metric == Metric::SpawnPrecision && m.value.value.is_nan()),
            "NaN kept"
        );
        assert_eq!(
            server
                .store
                .trial(trial_id)
                .await
                .unwrap()
                .unwrap()
                .epochs_done,
            2
        );
        let fail = pb::FailRequest {
            trial_id,
            lease_id: l.lease_id.clone(),
            reason: "out of memory".into(),
        };
        client.fail(fail.clone()).await.unwrap();
        let failed = server.store.trial(trial_id).await.unwrap().unwrap();
        assert_eq!(
            (failed.status.as_str(), failed.error.as_str()),
            ("failed", "out of memory"),
            "{}",
            db.name
        );
        assert_eq!(
            client.fail(fail).await.unwrap_err().code(),
            Code::FailedPrecondition,
            "a finished trial stays finished"
        );
        server.stop().await;
    }
}

/// A trial's report as the store takes it, with one metric.
fn epoch_report(lease: &pb::Lease, lease_id: &str, epoch: u32) -> EpochReport {
    EpochReport {
        trial_id: lease.trial.as_ref().unwrap().id,
        lease_id: lease_id.into(),
        epoch,
        metrics: vec![MetricValue {
            split: Split::Test,
            metric: Metric::BoardAccuracy,
            value: f64::from(epoch),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_judged_in_order_whether_or_not_its_trials_were_leased_here() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        common::submit(&server.url(), &common::sweep_yaml(3, 1, 3)).await;
        let (mut client, id) = common::worker(&server.url()).await;
        let leased = common::lease_all(&mut client, id).await;
        let [a, b, c] = &leased[..] else {
            panic!("{}: three trials leased, got {}", db.name, leased.len())
        };
        let held = |answer: &Recorded| match answer {
            Recorded::Held(facts) => Some(facts.epochs),
            _ => None,
        };

        // Leased through this server's store, which stores its trials'
        // reports without reading them where it can.
        let batch = [
            epoch_report(a, &a.lease_id, 1),
            epoch_report(a, &a.lease_id, 2),
            epoch_report(b, &b.lease_id, 2),
            epoch_report(b, &b.lease_id, 1),
            epoch_report(c, "forged", 1),
            EpochReport {
                trial_id: 1 << 40,
                ..epoch_report(c, &c.lease_id, 1)
            },
            epoch_report(c, &c.lease_id, 4),
        ];
        let answers = server.store.record_epochs(&batch, 60_000).await.unwrap();
        assert_eq!(answers.len(), batch.len());
        assert_eq!(held(&answers[0]), Some(3), "{}: {answers:?}", db.name);
        assert_eq!(held(&answers[1]), Some(3), "{}: {answers:?}", db.name);
        assert!(
            matches!(&answers[2], Recorded::Refused(m) if m.contains("out of order")),
            "{}: epoch 2 before 1: {answers:?}",
            db.name
        );
        assert_eq!(held(&answers[3]), Some(3), "{}: {answers:?}", db.name);
        assert_eq!(
            answers[4],
            Recorded::NotHeld(LeaseState::Lost),
            "{}",
            db.name
        );
        assert_eq!(answers[5], Recorded::Unknown, "{}", db.name);
        assert!(
            matches!(&answers[6], Recorded::Refused(m) if m.contains("1..=3")),
            "{}: {answers:?}",
            db.name
        );

        // Another coordinator's store, which knows none of them: it reads
        // them first and then knows them too.
        let other = Store::connect(&db.url).await.unwrap();
        for _ in 0..2 {
            let batch = [
                epoch_report(a, &a.lease_id, 3),
                epoch_report(b, &b.lease_id, 3),
                epoch_report(c, &c.lease_id, 1),
            ];
            let answers = other.record_epochs(&batch, 60_000).await.unwrap();
            assert!(
                matches!(&answers[1], Recorded::Refused(m) if m.contains("up to 1")),
                "{}: {answers:?}",
                db.name
            );
            assert_eq!(
                [held(&answers[0]), held(&answers[2])],
                [Some(3), Some(3)],
                "{}: {answers:?}",
                db.name
            );
        }

        for (lease, epochs) in [(a, 3), (b, 1), (c, 1)] {
            let trial_id = lease.trial.as_ref().unwrap().id;
            let stored = server.store.metrics_after(trial_id, 0).await.unwrap();
            let mut got: Vec<u32> = stored.iter().map(|m| m.epoch).collect();
            got.sort_unstable();
            assert_eq!(
                got,
                (1..=epochs).collect::<Vec<_>>(),
                "{}: each once",
                db.name
            );
            let trial = server.store.trial(trial_id).await.unwrap().unwrap();
            assert_eq!(trial.epochs_done, epochs, "{}", db.name);
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_coordinator_mid_sweep_loses_nothing() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let sweep = common::submit(&server.url(), &common::sweep_yaml(2, 2, 2)).await;
        let (mut client, id) = common::worker(&server.url()).await;
        let l = common::lease(&mut client, id).await.unwrap();
        common::send(&mut client, vec![report(&l, 1)]).await;
        let mut input = vec![0u8; 220];
        input[215] = 1;
        let mut truth = input.clone();
        truth[4] = 1;
        let sample = pb::BoardSample {
            item: 3,
            kind: "spawn".into(),
            input: input.clone(),
            predicted: input,
            truth,
        };
        let ckpt = pb::PutCheckpointRequest {
            trial_id: l.trial.as_ref().unwrap().id,
            lease_id: l.lease_id.clone(),
            epoch: 1,
            data: vec![7; 1000],
            samples: vec![sample.clone()],
        };
        client.put_checkpoint(ckpt).await.unwrap();
        server.stop().await;

        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let mut client = WorkerServiceClient::connect(server.url()).await.unwrap();
        assert_eq!(
            common::send(&mut client, vec![report(&l, 2)]).await,
            [Directive::Continue],
            "{}: the lease survives",
            db.name
        );
        let get = pb::GetCheckpointRequest {
            trial_id: l.trial.as_ref().unwrap().id,
            lease_id: l.lease_id.clone(),
        };
        let ckpt = client
            .get_checkpoint(get)
            .await
            .unwrap()
            .into_inner()
            .checkpoint
            .unwrap();
        assert_eq!((ckpt.epoch, ckpt.data.len()), (1, 1000));
        let mut users = SweepServiceClient::connect(server.url()).await.unwrap();
        let detail = users
            .get_sweep(pb::GetSweepRequest { sweep_id: sweep.id })
            .await
            .unwrap()
            .into_inner();
        let s = detail.sweep.unwrap();
        assert_eq!((s.trials, s.queued, s.running), (4, 3, 1), "{}", db.name);
        assert_eq!(detail.trials.iter().map(|t| t.epochs_done).sum::<u32>(), 2);
        // The predictions sent with the checkpoint survive too.
        let predictions = users
            .predictions(pb::PredictionsRequest { sweep_id: sweep.id })
            .await
            .unwrap()
            .into_inner()
            .configurations;
        assert_eq!(predictions.len(), 1, "{}", db.name);
        let p = &predictions[0];
        assert_eq!((p.trial_id, p.epoch), (l.trial.as_ref().unwrap().id, 1));
        assert_eq!(p.samples, [sample]);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sweep_is_refused_with_field_details_and_nothing_is_stored() {
    use tonic_types::StatusExt;
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let mut users = SweepServiceClient::connect(server.url()).await.unwrap();
        let yaml = common::sweep_yaml(2, 1, 1).replace("epochs: {value: 1}", "epochs: {value: 0}");
        let err = users
            .submit(pb::SubmitRequest {
                yaml,
                file_name: "bad.yaml".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let violations = err.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "parameters.epochs.value");
        assert!(
            violations[0].description.starts_with("line 6, column 19"),
            "{}",
            violations[0].description
        );
        let sweeps = users
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .unwrap()
            .into_inner()
            .sweeps;
        assert!(sweeps.is_empty(), "{}: no partial sweep stored", db.name);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_sweep_stops_its_running_trials() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let sweep = common::submit(&server.url(), &common::sweep_yaml(1, 2, 3)).await;
        let (mut client, id) = common::worker(&server.url()).await;
        let l = common::lease(&mut client, id).await.unwrap();
        let mut users = SweepServiceClient::connect(server.url()).await.unwrap();
        let cancelled = users
            .cancel_sweep(pb::CancelSweepRequest { sweep_id: sweep.id })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cancelled.sweep.unwrap().cancelled, 2);
        assert_eq!(
            common::send(&mut client, vec![report(&l, 1)]).await,
            [Directive::Cancelled],
            "{}",
            db.name
        );
        assert!(common::lease(&mut client, id).await.is_none());
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_another_protocol_are_refused_and_watch_streams_events() {
    for db in common::databases().await {
        let server = common::start(&db.url, Duration::from_secs(60), 3).await;
        let mut client = WorkerServiceClient::connect(server.url()).await.unwrap();
        let old = pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION + 1,
            ..Default::default()
        };
        assert_eq!(
            client.register(old).await.unwrap_err().code(),
            Code::FailedPrecondition
        );

        let sweep = common::submit(&server.url(), &common::sweep_yaml(1, 1, 2)).await;
        let mut users = SweepServiceClient::connect(server.url()).await.unwrap();
        let mut events = users
            .watch(pb::WatchRequest { sweep_id: sweep.id })
            .await
            .unwrap()
            .into_inner();
        let (mut client, id) = common::worker(&server.url()).await;
        let l = common::lease(&mut client, id).await.unwrap();
        common::send(&mut client, vec![report(&l, 1)]).await;
        let mut saw_epoch = false;
        while !saw_epoch {
            let event = tokio::time::timeout(Duration::from_secs(5), events.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Some(pb::watch_event::Event::Epoch(e)) = event.event {
                assert_eq!((e.epoch, e.metrics.len()), (1, 2), "{}", db.name);
                saw_epoch = true;
            }
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_standard_clients() {
    let db = common::databases().await.remove(0);
    let server = common::start(&db.url, Duration::from_secs(60), 3).await;
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let request = tonic_health::pb::HealthCheckRequest {
        service: "exp025.v1.WorkerService".into(),
    };
    let status = health.check(request).await.unwrap().into_inner().status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"exp025.v1.SweepService") && names.contains(&"exp025.v1.WorkerService"),
        "{names:?}"
    );

    // The older v1alpha, which grpcio-reflection and older grpcurl speak.
    use tonic_reflection::pb::v1alpha as alpha;
    let mut reflection = alpha::server_reflection_client::ServerReflectionClient::new(
        Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "exp025.v1.WorkerService".into(),
            ),
        ),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("the file that holds WorkerService");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}
