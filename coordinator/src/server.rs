//! Assembles the coordinator: gRPC services with health and reflection,
//! and the reaper that returns expired leases to the queue.

use std::future::Future;

use proto::v1::sweep_service_server::SweepServiceServer;
use proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::lease::{self, Policy};
use crate::service::{Sweeps, Workers};
use crate::store::Store;

/// Serves the coordinator on `listener` until `shutdown` resolves.
pub async fn serve(
    store: Store,
    policy: Policy,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServiceServer<Workers>>().await;
    health.set_serving::<SweepServiceServer<Sweeps>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        // Ends open progress and watch streams, so that shutdown completes.
        let _ = stop.send(true);
    };
    let reaper = tokio::spawn(lease::reap(store.clone(), policy));
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(WorkerServiceServer::new(Workers {
            store: store.clone(),
            policy,
            stopping: stopping.clone(),
        }))
        .add_service(SweepServiceServer::new(Sweeps { store, stopping }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    reaper.abort();
    Ok(result?)
}
