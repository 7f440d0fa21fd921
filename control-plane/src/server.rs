//! Wires the gRPC server: admin API behind the admin-token interceptor, the config stream and
//! usage ingest (which check join tokens themselves, as that needs the database), and server
//! reflection; the lease service; and owns the background tasks serving needs (config version
//! watch, usage partition upkeep, alert webhook delivery, the metrics endpoint).

use crate::admin::AdminApi;
use crate::auth::AdminAuth;
use crate::config_stream::ConfigStreamService;
use crate::crypto::MasterKey;
use crate::limits::alerts;
use crate::limits::metrics::{self as limit_metrics, Metrics};
use crate::limits::service::LeaseService;
use crate::snapshot::SnapshotBuilder;
use crate::usage::{UsageIngestService, partitions};
use crate::version_watch;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the config version (is the database migrated?): {0}")]
    Database(#[from] sqlx::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(
        "cannot listen for gRPC on {addr}: {source}{}",
        port_hint(source, "--listen")
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot listen for metrics on {addr}: {source}{}",
        port_hint(source, "--metrics-listen")
    )]
    MetricsListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the listen address to {path}: {source}")]
    ListenAddressFile {
        path: String,
        source: std::io::Error,
    },
    #[error("alert webhook client: {0}")]
    WebhookClient(#[from] reqwest::Error),
}

/// What to do about a port another process holds.
fn port_hint(source: &std::io::Error, flag: &str) -> String {
    if source.kind() == std::io::ErrorKind::AddrInUse {
        format!(" (another process holds this port; choose another with {flag} HOST:PORT)")
    } else {
        String::new()
    }
}

pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Where to write the bound address once bound (`--listen-address-file`).
    pub listen_address_file: Option<std::path::PathBuf>,
    pub admin_token: String,
    pub master_key: MasterKey,
    /// How long a lease grant lives unrenewed (`--lease-ttl-ms`).
    pub lease_ttl: Duration,
    /// Where to serve Prometheus metrics (`GET /metrics`); none when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Where limit alerts are POSTed; alerts are only recorded when unset.
    pub alert_webhook_url: Option<url::Url>,
}

pub async fn serve(
    pool: PgPool,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    // Bound first: a port in use must fail before anything starts or claims to be serving.
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: options.listen,
            source,
        })?;
    let versions = version_watch::spawn(pool.clone(), shutdown.clone()).await?;
    let upkeep_stop = shutdown.child_token();
    let metrics = Metrics::new();
    let mut tasks = Vec::new();
    if let Some(addr) = options.metrics_listen {
        let listener = limit_metrics::bind(addr)
            .await
            .map_err(|source| ServeError::MetricsListen { addr, source })?;
        tracing::info!(listen = %addr, "control plane serving metrics");
        tasks.push(limit_metrics::spawn(
            listener,
            metrics.clone(),
            upkeep_stop.clone(),
        ));
    }
    if let Some(url) = options.alert_webhook_url {
        let client = reqwest::Client::builder().build()?;
        tasks.push(alerts::spawn(
            pool.clone(),
            client,
            url,
            upkeep_stop.clone(),
        ));
    }
    tasks.push(partitions::spawn(pool.clone(), upkeep_stop.clone()));
    let builder = Arc::new(SnapshotBuilder::new(
        pool.clone(),
        options.master_key.clone(),
    ));
    let config = ConfigStreamService::new(pool.clone(), builder, versions, shutdown.clone());
    let usage = UsageIngestService::new(pool.clone());
    let leases = LeaseService::new(pool.clone(), options.lease_ttl, metrics);
    let admin = AdminApi::new(pool, options.master_key);
    let auth = AdminAuth::new(&options.admin_token);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let bound = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: options.listen,
        source,
    })?;
    if let Some(path) = &options.listen_address_file {
        tollgate_contract::listen::write_listen_address(path, bound).map_err(|source| {
            ServeError::ListenAddressFile {
                path: path.display().to_string(),
                source,
            }
        })?;
    }
    tracing::info!(listen = %bound, "control plane serving gRPC");
    let served = tonic::transport::Server::builder()
        // Detects edges that vanished without closing their stream.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(reflection)
        .add_service(
            pb::admin_service_server::AdminServiceServer::with_interceptor(admin, move |request| {
                auth.intercept(request)
            }),
        )
        .add_service(pb::config_service_server::ConfigServiceServer::new(config))
        .add_service(usage.into_server())
        .add_service(leases.into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await;
    // The server also stops on a transport error; the background tasks must not outlive it.
    upkeep_stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    served?;
    Ok(())
}
