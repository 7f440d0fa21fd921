//! Wires the gRPC server: admin API behind the admin-token interceptor, the config stream and
//! usage ingest (which check join tokens themselves, as that needs the database), and server
//! reflection; the lease service; and owns the background tasks serving needs (config version
//! watch, usage partition upkeep, alert webhook delivery, the metrics endpoint).

use crate::admin::AdminApi;
use crate::auth::AdminAuth;
use crate::config_stream::ConfigStreamService;
use crate::crypto::MasterKey;
use crate::edge_gate::EdgeGate;
use crate::key_feed::KeyFeed;
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

/// PEM contents for the listener's TLS.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// When set, edges must present a certificate this CA signed (mTLS); admin clients need
    /// not (they authenticate with the admin token).
    pub client_ca_pem: Option<Vec<u8>>,
}

pub struct ServeOptions {
    pub listen: SocketAddr,
    /// TLS for the gRPC listener (`--tls-cert`/`--tls-key`, optional `--tls-client-ca`).
    pub tls: Option<ServerTls>,
    /// Serve gRPC reflection (behind the admin token) (`--reflection`).
    pub reflection: bool,
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
    let keys = Arc::new(KeyFeed::new(pool.clone()));
    let config = ConfigStreamService::new(pool.clone(), builder, keys, versions, shutdown.clone());
    let usage = UsageIngestService::new(pool.clone());
    let leases = LeaseService::new(pool.clone(), options.lease_ttl, metrics);
    let admin = AdminApi::new(pool, options.master_key);
    let auth = AdminAuth::new(&options.admin_token);
    let mut builder = tonic::transport::Server::builder();
    let mut require_client_cert = false;
    if let Some(tls) = &options.tls {
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
        );
        if let Some(ca) = &tls.client_ca_pem {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true);
            require_client_cert = true;
        }
        builder = builder.tls_config(config)?;
    }
    let reflection = if options.reflection {
        let service = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_auth = auth.clone();
        Some(tonic::service::interceptor::InterceptedService::new(
            service,
            move |request| reflection_auth.intercept(request),
        ))
    } else {
        None
    };

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
    tracing::info!(listen = %bound, tls = options.tls.is_some(), mtls = require_client_cert, reflection = options.reflection, "control plane serving gRPC");
    let served = builder
        // Detects edges that vanished without closing their stream.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_optional_service(reflection)
        .add_service(
            pb::admin_service_server::AdminServiceServer::with_interceptor(admin, move |request| {
                auth.intercept(request)
            }),
        )
        .add_service(EdgeGate::client_cert_only(
            pb::config_service_server::ConfigServiceServer::new(config),
            require_client_cert,
        ))
        .add_service(usage.into_server(require_client_cert))
        .add_service(EdgeGate::client_cert_only(
            leases.into_server(),
            require_client_cert,
        ))
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
