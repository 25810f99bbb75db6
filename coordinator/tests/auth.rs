//! Tokens and roles through a real server on SQLite and Postgres, and TLS
//! with a CA and certificates made in the test: who may call what, the
//! status and message of each refusal, nothing changed by a refused call,
//! health and reflection open to all.

mod common;

use coordinator::auth::{self, Auth, Role};
use coordinator::lease::Policy;
use coordinator::server::{Options, Tls};
use proto::client::Coordinator;
use proto::v1 as pb;
use proto::v1::sweep_service_client::SweepServiceClient;
use proto::v1::worker_service_client::WorkerServiceClient;
use tonic::Code;

fn required() -> Options {
    Options {
        policy: Policy::default(),
        auth: Auth::Required,
        tls: None,
    }
}

fn register() -> pb::RegisterRequest {
    pb::RegisterRequest {
        protocol_version: proto::PROTOCOL_VERSION,
        name: "w".into(),
        device: "cpu".into(),
        slots: 1,
    }
}

fn submit() -> pb::SubmitRequest {
    pb::SubmitRequest {
        yaml: common::sweep_yaml(1, 1, 1),
        file_name: "t.yaml".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_make_its_calls_only_and_refusals_change_nothing() {
    for db in common::databases().await {
        let server = common::start_with(&db.url, "127.0.0.1:0".parse().unwrap(), required()).await;
        let store = &server.store;
        let mut tokens = std::collections::HashMap::new();
        for role in [Role::Worker, Role::User, Role::Reader] {
            let token = auth::new_token();
            store
                .create_token(role.name(), role, &auth::hash(&token))
                .await
                .unwrap();
            tokens.insert(role, token);
        }
        let as_ = |token: Option<&str>| Coordinator {
            url: server.url(),
            token: token.map(str::to_string),
            tls_ca: None,
        };
        let sweeps = |token: Option<&str>| {
            let c = as_(token);
            async move { SweepServiceClient::new(c.connect().await.unwrap()) }
        };
        let workers = |token: Option<&str>| {
            let c = as_(token);
            async move { WorkerServiceClient::new(c.connect().await.unwrap()) }
        };

        // No token, a wrong one, a malformed header: UNAUTHENTICATED.
        let err = sweeps(None).await.submit(submit()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{}: {err:?}", db.name);
        assert!(
            err.message().contains("Submit needs a bearer token"),
            "{err:?}"
        );
        let err = sweeps(Some("exp025_guess"))
            .await
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::Unauthenticated, "unknown token")
        );
        let mut raw = SweepServiceClient::connect(server.url()).await.unwrap();
        let mut request = tonic::Request::new(pb::ListSweepsRequest {});
        request
            .metadata_mut()
            .insert("authorization", "Basic abc".parse().unwrap());
        let err = raw.list_sweeps(request).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(err.message().contains("expected `Bearer TOKEN`"), "{err:?}");

        // The wrong role: PERMISSION_DENIED, saying which role is needed.
        let reader = tokens[&Role::Reader].as_str();
        // The scheme's name is case-insensitive (RFC 9110).
        let mut request = tonic::Request::new(pb::ListSweepsRequest {});
        let header = format!("bearer {reader}");
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
        raw.list_sweeps(request).await.unwrap();
        let err = sweeps(Some(reader))
            .await
            .submit(submit())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(
            err.message(),
            "token \"reader\" has role reader; Submit needs user"
        );
        let err = workers(Some(tokens[&Role::User].as_str()))
            .await
            .register(register())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("Register needs worker"), "{err:?}");
        let err = sweeps(Some(tokens[&Role::Worker].as_str()))
            .await
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(
            store.sweeps().await.unwrap().is_empty(),
            "refused calls change nothing"
        );

        // The right roles: a user submits and cancels, a reader reads, a
        // worker registers and leases.
        let user = tokens[&Role::User].as_str();
        let sweep = sweeps(Some(user))
            .await
            .submit(submit())
            .await
            .unwrap()
            .into_inner()
            .sweep
            .unwrap();
        let listed = sweeps(Some(reader))
            .await
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .unwrap();
        assert_eq!(listed.into_inner().sweeps.len(), 1);
        sweeps(Some(user))
            .await
            .results(pb::ResultsRequest {
                sweep_id: sweep.id,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut worker = workers(Some(tokens[&Role::Worker].as_str())).await;
        let id = worker
            .register(register())
            .await
            .unwrap()
            .into_inner()
            .worker_id;
        let lease = worker
            .lease(pb::LeaseRequest {
                worker_id: id,
                wait_ms: 0,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(lease.into_inner().lease.is_some());

        // A revoked token is refused from then on, and says so.
        assert!(store.revoke_token("user").await.unwrap());
        let err = sweeps(Some(user))
            .await
            .cancel_sweep(pb::CancelSweepRequest { sweep_id: sweep.id })
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::Unauthenticated, "token \"user\" was revoked")
        );
        assert_eq!(
            store.sweep(sweep.id).await.unwrap().unwrap().counts.running,
            1,
            "not cancelled"
        );

        // Health and reflection need no token.
        let channel = tonic::transport::Endpoint::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            health.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        server.stop().await;
    }
}

/// A CA and a certificate for localhost and 127.0.0.1 that it signed, as
/// PEM files in `dir`: (ca.pem, cert.pem, key.pem).
fn certificates(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, Tls) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params
        .signed_by(&key, &Issuer::new(ca_params, ca_key))
        .unwrap();
    let write = |file: &str, pem: String| {
        let path = dir.join(format!("{name}-{file}"));
        std::fs::write(&path, pem).unwrap();
        path
    };
    (
        write("ca.pem", ca.pem()),
        Tls {
            cert: write("cert.pem", cert.pem()),
            key: write("key.pem", key.serialize_pem()),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_admits_clients_that_trust_its_ca_and_no_others() {
    let db = common::databases().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = certificates(dir.path(), "server");
    let (other_ca, _) = certificates(dir.path(), "other");
    let options = Options {
        tls: Some(tls),
        auth: Auth::Disabled,
        ..required()
    };
    let server = common::start_with(&db.url, "127.0.0.1:0".parse().unwrap(), options).await;
    let port = server.addr.port();
    let client = |url: String, ca: Option<&std::path::Path>| Coordinator {
        url,
        token: None,
        tls_ca: ca.map(|p| p.to_path_buf()),
    };

    // Whether a client gets an answer: it may fail to connect or on its
    // first call.
    let answered = |c: Coordinator| async move {
        match c.connect().await {
            Err(e) => Err(e.to_string()),
            Ok(channel) => SweepServiceClient::new(channel)
                .list_sweeps(pb::ListSweepsRequest {})
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    };
    let trusted = answered(client(format!("https://localhost:{port}"), Some(&ca))).await;
    assert!(trusted.is_ok(), "{trusted:?}");
    let by_address = answered(client(format!("https://127.0.0.1:{port}"), Some(&ca))).await;
    assert!(by_address.is_ok(), "{by_address:?}");
    let stranger = answered(client(format!("https://localhost:{port}"), Some(&other_ca))).await;
    assert!(
        stranger.is_err(),
        "a client that does not trust the CA is refused"
    );
    let plaintext = answered(client(format!("http://127.0.0.1:{port}"), None)).await;
    assert!(plaintext.is_err(), "plaintext to a TLS server is refused");

    let err = client(format!("http://127.0.0.1:{port}"), Some(&ca))
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs an https://"), "{err}");
    server.stop().await;
}

/// Coordinators keep valid tokens in memory on Postgres; a revocation
/// made anywhere (here: by another connection, as the `token revoke`
/// command makes it) reaches every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_elsewhere_is_refused_by_every_coordinator() {
    for db in common::databases().await {
        let (a, b) = (
            common::start_with(&db.url, "127.0.0.1:0".parse().unwrap(), required()).await,
            common::start_with(&db.url, "127.0.0.1:0".parse().unwrap(), required()).await,
        );
        let token = auth::new_token();
        a.store
            .create_token("reader", Role::Reader, &auth::hash(&token))
            .await
            .unwrap();
        let list = |url: String| {
            let token = token.clone();
            async move {
                let c = Coordinator {
                    url,
                    token: Some(token),
                    tls_ca: None,
                };
                SweepServiceClient::new(c.connect().await.unwrap())
                    .list_sweeps(pb::ListSweepsRequest {})
                    .await
            }
        };
        // Admitted (and remembered) by both.
        for _ in 0..3 {
            list(a.url()).await.unwrap();
            list(b.url()).await.unwrap();
        }
        let elsewhere = coordinator::store::Store::connect(&db.url).await.unwrap();
        assert!(elsewhere.revoke_token("reader").await.unwrap());
        for server in [&a, &b] {
            let refused = common::wait_for(
                "the revocation to reach the coordinator",
                std::time::Duration::from_secs(2),
                || async { list(server.url()).await.err() },
            )
            .await;
            assert_eq!(
                (refused.code(), refused.message()),
                (Code::Unauthenticated, "token \"reader\" was revoked"),
                "{}",
                db.name
            );
            for _ in 0..3 {
                assert!(list(server.url()).await.is_err(), "{}", db.name);
            }
        }
        a.stop().await;
        b.stop().await;
    }
}

/// A coordinator whose connection for notifications is cut may have missed
/// a revocation: it forgets the tokens it kept, so a token revoked with no
/// notification at all is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_connection_forgets_the_kept_tokens() {
    let postgres: Vec<_> = common::databases()
        .await
        .into_iter()
        .filter(|db| db.name == "postgres")
        .collect();
    if postgres.is_empty() {
        eprintln!("SKIPPED: set EXP025_PG_URL to cut a coordinator's notification connection");
    }
    for db in postgres {
        let server = common::start_with(&db.url, "127.0.0.1:0".parse().unwrap(), required()).await;
        let token = auth::new_token();
        server
            .store
            .create_token("reader", Role::Reader, &auth::hash(&token))
            .await
            .unwrap();
        let list = || {
            let c = Coordinator {
                url: server.url(),
                token: Some(token.clone()),
                tls_ca: None,
            };
            async move {
                SweepServiceClient::new(c.connect().await.unwrap())
                    .list_sweeps(pb::ListSweepsRequest {})
                    .await
            }
        };
        list().await.unwrap();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let listener = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                        AND query ILIKE '%LISTEN%' AND pid <> pg_backend_pid()";
        let (cut,): (i32,) = sqlx::query_as(listener).fetch_one(&mut conn).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(cut)
            .execute(&mut conn)
            .await
            .unwrap();
        // Revoked behind every coordinator's back: no notification is sent.
        sqlx::query("UPDATE tokens SET revoked_ms = 1 WHERE name = 'reader'")
            .execute(&mut conn)
            .await
            .unwrap();
        // Once it listens again, it must not answer from what it kept.
        common::wait_for(
            "the coordinator to listen again",
            std::time::Duration::from_secs(5),
            || async {
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
                    .await
                    .unwrap();
                let pids: Vec<(i32,)> =
                    sqlx::query_as(listener).fetch_all(&mut conn).await.unwrap();
                pids.iter().any(|(pid,)| *pid != cut).then_some(())
            },
        )
        .await;
        let refused = list().await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        server.stop().await;
    }
}
