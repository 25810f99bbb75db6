//! What the coordinator tells Prometheus, on `coordinator serve
//! --metrics-addr HOST:PORT` at `/metrics`:
//!
//! | series | kind | what |
//! | --- | --- | --- |
//! | `exp025_rpc_requests_total{method, code}` | counter | gRPC calls answered, by method and status code (`OK` or the error's) |
//! | `exp025_rpc_duration_seconds{method}` | histogram | time to answer a call (a Lease call's wait included) |
//! | `exp025_epoch_reports_total` | counter | epoch reports stored |
//! | `exp025_report_duration_seconds` | histogram | time from an epoch report's arrival to its acknowledgement |
//! | `exp025_leases_total` | counter | trials leased |
//! | `exp025_trials{sweep, status}` | gauge | queued and running trials of each sweep not yet done |
//! | `exp025_active_workers` | gauge | workers heard from within the lease period |
//!
//! The last two are read from the database every few seconds, so they count
//! every coordinator of the database; the others are this process's.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tonic::Status;

use crate::store::{Store, StoreError};

/// Histogram buckets (seconds): 0.5 ms to 30 s.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// How often the gauges read from the database are refreshed.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// Serves `/metrics` on `addr` (an HTTP listener of its own) and keeps the
/// database's gauges fresh until the process ends.
pub fn serve(addr: SocketAddr, store: Store, lease: Duration) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&BUCKETS)?
        .install()?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        let mut shown = HashSet::new();
        loop {
            tick.tick().await;
            if let Err(e) = sample(&store, lease, &mut shown).await {
                tracing::warn!(error = %e, "reading the queue for /metrics failed");
            }
        }
    });
    Ok(())
}

/// Records one answered call.
pub fn rpc(method: &'static str, took: Duration, error: Option<&Status>) {
    let code = error.map_or("OK".to_string(), |s| format!("{:?}", s.code()));
    metrics::counter!("exp025_rpc_requests_total", "method" => method, "code" => code).increment(1);
    metrics::histogram!("exp025_rpc_duration_seconds", "method" => method).record(took);
}

/// Records one stored epoch report and the time it took to acknowledge.
pub fn report(took: Duration) {
    metrics::counter!("exp025_epoch_reports_total").increment(1);
    metrics::histogram!("exp025_report_duration_seconds").record(took);
}

/// How long a request waited for its batch to start.
pub fn batch_wait(what: &'static str, waited: Duration) {
    metrics::histogram!("exp025_batch_wait_seconds", "what" => what).record(waited);
}

/// One batch of `n` requests, in the database for `took`.
pub fn batch(what: &'static str, n: usize, took: Duration) {
    metrics::histogram!("exp025_batch_seconds", "what" => what).record(took);
    metrics::histogram!("exp025_batch_size", "what" => what).record(n as f64);
}

/// Records one trial leased.
pub fn leased() {
    metrics::counter!("exp025_leases_total").increment(1);
}

/// Refreshes the gauges; `shown` holds the (sweep, status) series set
/// before, so that one whose trials are all gone reads 0.
async fn sample(
    store: &Store,
    lease: Duration,
    shown: &mut HashSet<(i64, String)>,
) -> Result<(), StoreError> {
    let counts = store.unfinished_counts().await?;
    let now: HashSet<(i64, String)> = counts.iter().map(|(s, st, _)| (*s, st.clone())).collect();
    for (sweep, status) in shown.difference(&now) {
        metrics::gauge!("exp025_trials", "sweep" => sweep.to_string(), "status" => status.clone())
            .set(0.0);
    }
    for (sweep, status, n) in counts {
        metrics::gauge!("exp025_trials", "sweep" => sweep.to_string(), "status" => status)
            .set(n as f64);
    }
    *shown = now;
    let workers = store.active_workers(lease).await?;
    metrics::gauge!("exp025_active_workers").set(workers as f64);
    Ok(())
}
