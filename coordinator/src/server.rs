//! Assembles the coordinator: gRPC services behind the token gate, health
//! and reflection (both versions) open to all, TLS when given, bounded
//! message sizes, and the reaper that returns expired leases to the queue.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;
use proto::v1::sweep_service_server::SweepServiceServer;
use proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::auth::{Auth, Gate};
use crate::lease::{self, Policy};
use crate::limits;
use crate::service::{Finishes, Leases, Reports, Sweeps, Workers};
use crate::store::Store;

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The server's certificate (and any intermediates).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// How the coordinator serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Leases and retries.
    pub policy: Policy,
    /// Whether calls need tokens.
    pub auth: Auth,
    /// TLS, or plaintext when `None`.
    pub tls: Option<Tls>,
}

/// Serves the coordinator on `listener` until `shutdown` resolves.
pub async fn serve(
    store: Store,
    options: Options,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServiceServer<Workers>>().await;
    health.set_serving::<SweepServiceServer<Sweeps>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) =
        (reflection().build_v1()?, reflection().build_v1alpha()?);

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        // Ends open progress and watch streams, so that shutdown completes.
        let _ = stop.send(true);
    };
    let gate = Gate {
        store: store.clone(),
        auth: options.auth,
    };
    let workers = WorkerServiceServer::new(Workers {
        store: store.clone(),
        policy: options.policy,
        stopping: stopping.clone(),
        gate: gate.clone(),
        sweeps: Default::default(),
        reports: Reports::reports(store.clone(), options.policy.lease_ms()),
        leases: Leases::leases(store.clone(), options.policy.lease_ms()),
        finishes: Finishes::finishes(store.clone()),
    })
    .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(limits::MAX_MESSAGE_BYTES);
    let sweeps = SweepServiceServer::new(Sweeps {
        store: store.clone(),
        stopping,
        gate,
    })
    .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(limits::MAX_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .context("the TLS certificate and key")?;
    }
    let reaper = tokio::spawn(lease::reap(store.clone(), options.policy));
    // Every second: the curve deltas that report batches record into the
    // points, and the epochs of trials that ended into blocks; apart, so
    // that folding an old database's epochs does not hold the curves up.
    let folder = {
        let store = store.clone();
        tokio::spawn(every_second("folding curve deltas", move || {
            let store = store.clone();
            async move { store.fold_curve_deltas().await }
        }))
    };
    let blocks = tokio::spawn(every_second("folding epochs into blocks", move || {
        let store = store.clone();
        async move { store.fold_epochs().await }
    }));
    let result = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(workers)
        .add_service(sweeps)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await;
    reaper.abort();
    folder.abort();
    blocks.abort();
    Ok(result?)
}

/// Runs `work` every second until aborted, logging what fails (it is
/// tried again a second later).
async fn every_second<F, Fut>(what: &'static str, work: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u64, crate::store::StoreError>>,
{
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match work().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(n, "{what}"),
            Err(e) => tracing::error!(error = ?e, "{what} failed; retrying"),
        }
    }
}

/// The connections `listener` accepts, each sending what it is given at
/// once (`TCP_NODELAY`). Serving a listener of one's own skips the
/// builder's socket settings, that one among them; without it the kernel
/// holds a small write back until the peer has acknowledged the one before
/// (Nagle's algorithm), and the peer may delay that by 40 ms.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
pub(crate) mod tests {
    use tokio::net::{TcpListener, TcpStream};
    use tokio_stream::StreamExt;

    /// A listener on a free 127.0.0.1 port with a client connected to it,
    /// waiting to be accepted.
    pub(crate) async fn listener_with_client() -> (TcpListener, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (listener, client)
    }

    #[tokio::test]
    async fn accepted_connections_send_at_once() {
        let (listener, _client) = listener_with_client().await;
        let accepted = super::incoming(listener).next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
