//! `coordinator serve --metrics-addr`: the real binary on a SQLite file,
//! a sweep drained by clients playing workers, then `/metrics` scraped over
//! HTTP as Prometheus does, with the series and counts the sweep implies.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use coordinator::store::Store;
use coordinator::testing::{self, Process};
use proto::v1 as pb;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics` over plain HTTP/1.0.
fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1"), "{response}");
    assert!(response.contains(" 200 "), "{response}");
    response
}

/// Sample lines by series (name with labels, as exposed) -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("exp025_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn report(_: &pb::TrialConfig, epoch: u32) -> Vec<pb::Metric> {
    vec![pb::Metric {
        split: "test".into(),
        name: "board_accuracy".into(),
        value: f64::from(epoch),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_with_the_series_a_sweep_implies() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("m.db").display());
    let (port, metrics_port) = (free_port(), free_port());
    let _server = Process(
        std::process::Command::new(COORDINATOR)
            .args(["serve", "--insecure-no-auth", "--database-url", &database])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    testing::wait_until(
        "the coordinator to serve",
        Duration::from_secs(30),
        || async {
            tonic::transport::Endpoint::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .is_ok()
        },
    )
    .await;

    let (trials, epochs) = (6, 3);
    let sweep = testing::submit(&url, &testing::sweep_yaml(3, 2, epochs))
        .await
        .id;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let reporter: Arc<testing::Reporter> = Arc::new(report);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(testing::simulated_worker(
                url.clone(),
                reporter.clone(),
                stopping.clone(),
            ))
        })
        .collect();
    let store = Store::connect(&database).await.unwrap();
    testing::wait_until("the sweep to end", Duration::from_secs(60), || async {
        store.sweep(sweep).await.unwrap().unwrap().is_done()
    })
    .await;
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    // One refused call: a lease for a worker that never registered.
    let (mut client, _) = testing::worker(&url).await;
    let refused = client
        .lease(pb::LeaseRequest {
            worker_id: 999_999,
            wait_ms: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    // A second sweep with no worker left: its trials wait in the queue.
    let waiting = testing::submit(&url, &testing::sweep_yaml(2, 2, epochs))
        .await
        .id;
    // The gauges are read from the database every 2 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let text = scrape(metrics_port);
    let s = samples(&text);
    let get = |series: &str| {
        *s.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    let reports = f64::from(trials * epochs);
    assert_eq!(get("exp025_epoch_reports_total"), reports);
    assert_eq!(get("exp025_report_duration_seconds_count"), reports);
    assert_eq!(get("exp025_leases_total"), f64::from(trials));
    assert_eq!(
        get("exp025_rpc_requests_total{method=\"Complete\",code=\"OK\"}"),
        f64::from(trials)
    );
    assert_eq!(
        get("exp025_rpc_requests_total{method=\"Lease\",code=\"NotFound\"}"),
        1.0
    );
    assert_eq!(
        get("exp025_rpc_requests_total{method=\"Submit\",code=\"OK\"}"),
        2.0
    );
    assert!(get("exp025_rpc_duration_seconds_count{method=\"ReportProgress\"}") >= 1.0);
    assert!(text.contains("exp025_rpc_duration_seconds_bucket{method=\"Lease\",le=\"0.005\"}"));
    assert!(text.contains("# TYPE exp025_rpc_duration_seconds histogram"));
    // The sweep is done: nothing queued or running.
    for status in ["queued", "running"] {
        let series = format!("exp025_trials{{sweep=\"{sweep}\",status=\"{status}\"}}");
        assert_eq!(s.get(&series).copied().unwrap_or(0.0), 0.0, "{series}");
    }
    let queued = format!("exp025_trials{{sweep=\"{waiting}\",status=\"queued\"}}");
    assert_eq!(get(&queued), 4.0);
    assert!(get("exp025_active_workers") >= 1.0);
}
