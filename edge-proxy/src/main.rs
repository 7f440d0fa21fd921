//! `tollgate-edge serve`: the gateway process. Config comes from the control plane (with the
//! last good snapshot on disk as fallback) or from a TOML file.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_edge_proxy::api::json::{self, ParseLimits};
use tollgate_edge_proxy::config::client::{self, ConfigClient};
use tollgate_edge_proxy::config::link::{ControlPlaneLink, LinkTlsFiles};
use tollgate_edge_proxy::config::state::{self, StateStore};
use tollgate_edge_proxy::config::{RuntimeHolder, file};
use tollgate_edge_proxy::http::body::{BodyBudget, DEFAULT_MAX_BODY_BYTES_IN_FLIGHT};
use tollgate_edge_proxy::http::server::ConnectionLimits;
use tollgate_edge_proxy::http::{self, AppState, DEFAULT_MAX_BODY_BYTES};
use tollgate_edge_proxy::limits::Limiter;
use tollgate_edge_proxy::limits::clock::SystemClock;
use tollgate_edge_proxy::limits::lease_client::LeaseClient;
use tollgate_edge_proxy::metrics::Metrics;
use tollgate_edge_proxy::providers::clients::HttpClients;
use tollgate_edge_proxy::tokens::TokenCounter;
use tollgate_edge_proxy::usage::meter::MeterContext;
use tollgate_edge_proxy::usage::reporter::UsageReporter;
use tollgate_edge_proxy::usage::spool::{self, SpoolConfig, SpoolFullPolicy};

/// mimalloc: cheaper allocations on the request path than glibc's malloc, and freed memory
/// goes back to the OS instead of staying in per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tollgate-edge", version, about = "Tollgate edge proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible API.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Control plane gRPC URL, e.g. http://127.0.0.1:8051.
    #[arg(long, conflicts_with = "config")]
    control_plane: Option<String>,
    /// Static TOML config instead of a control plane.
    #[arg(long)]
    config: Option<PathBuf>,
    /// PEM file of the CA that signed the control plane's certificate; required for an
    /// https:// --control-plane.
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE_CA")]
    control_plane_ca: Option<PathBuf>,
    /// PEM client certificate this edge presents to the control plane (mTLS).
    #[arg(long, env = "TOLLGATE_EDGE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TOLLGATE_EDGE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Token that lets this edge subscribe to the control plane.
    #[arg(long, env = "TOLLGATE_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// After binding, write the bound address here (useful with `--listen 127.0.0.1:0`).
    #[arg(long)]
    listen_address_file: Option<PathBuf>,
    /// Where the last good config snapshot and the edge id are kept.
    #[arg(long, default_value = "tollgate-edge-state")]
    state_dir: PathBuf,
    /// Defaults to an id generated once and kept in the state directory.
    #[arg(long, env = "TOLLGATE_EDGE_ID")]
    edge_id: Option<String>,
    #[arg(long, default_value = "default")]
    region: String,
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Bytes of request bodies held at once across all requests; a body that finds no room
    /// waits up to 10 s, then gets 503 `server_busy`.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES_IN_FLIGHT)]
    max_body_bytes_in_flight: usize,
    /// Most messages in a chat or Messages request, inputs in an embeddings request.
    #[arg(long, default_value_t = json::DEFAULT_MAX_ITEMS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_messages: usize,
    /// Most JSON values (objects, arrays, strings, numbers) in one request body: bounds the
    /// memory a parsed body takes, whatever its shape.
    #[arg(long, default_value_t = json::DEFAULT_MAX_VALUES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..))]
    max_json_values: usize,
    /// Usage spool directory (default: <state-dir>/usage-spool).
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Spool size at which --spool-full applies.
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    spool_max_bytes: u64,
    /// When the spool is full: reject new requests (503) or keep serving and alert.
    #[arg(long, value_enum, default_value_t = SpoolFullPolicy::Reject)]
    spool_full: SpoolFullPolicy,
    /// Longest time a written usage event waits for fsync (group commit).
    #[arg(long, default_value_t = 100)]
    spool_fsync_interval_ms: u64,
    /// How often the lease client renews limit leases while limits are active (control-plane
    /// mode only; a request that misses or a counter running low triggers a call at once).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    lease_interval_ms: u64,
    /// Longest time a client may take to send a request's headers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: u64,
    /// Longest time a client may take to send a request's body (all of it).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed (keep-alive idle).
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
    /// Most client connections open at once; at the cap the idlest one makes room for a new
    /// one. Default: half the open-file limit left after a reserve, at most 16384.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Command::Serve(args) = Cli::parse().command;
    serve(args).await
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Pooled clients (one per connect timeout) for every provider and every config version.
    let http_client = HttpClients::new();
    let runtime = Arc::new(RuntimeHolder::new());
    let shutdown = CancellationToken::new();
    let edge_id = match args.edge_id {
        Some(id) => id,
        None => state::edge_id(&args.state_dir)?,
    };
    let mut spool_config = SpoolConfig::new(
        args.spool_dir
            .unwrap_or_else(|| args.state_dir.join("usage-spool")),
    );
    spool_config.max_bytes = args.spool_max_bytes;
    spool_config.full_policy = args.spool_full;
    spool_config.fsync_interval = Duration::from_millis(args.spool_fsync_interval_ms);
    let (usage_sink, spool_state, spool_writer) = spool::open(spool_config)?;
    let mut metrics = Metrics::new();
    metrics.watch_spool(&spool_state);
    let metrics = Arc::new(metrics);
    // With a control plane the limiter leases its limits; from a file it owns them alone.
    let limiter = Arc::new(Limiter::new(
        args.control_plane.is_some(),
        Arc::new(SystemClock),
        Arc::clone(&metrics),
    ));

    match (args.control_plane, args.config) {
        (Some(control_plane), None) => {
            let Some(join_token) = args.join_token.filter(|token| !token.is_empty()) else {
                bail!("--join-token (or TOLLGATE_JOIN_TOKEN) is required with --control-plane");
            };
            let control_plane = ControlPlaneLink::new(
                &control_plane,
                &LinkTlsFiles {
                    ca: args.control_plane_ca.as_deref(),
                    cert: args.tls_cert.as_deref(),
                    key: args.tls_key.as_deref(),
                },
            )?;
            let state = Arc::new(StateStore::open(&args.state_dir, &join_token)?);
            if let Some(version) = client::restore(Arc::clone(&state), &runtime, &http_client).await
            {
                tracing::info!(
                    version,
                    "serving the saved config snapshot until the control plane answers"
                );
            }
            let reporter = UsageReporter {
                control_plane: control_plane.clone(),
                join_token: join_token.clone(),
                edge_id: edge_id.clone(),
                spool: Arc::clone(&spool_state),
            };
            tokio::spawn(reporter.run(shutdown.clone()));
            if let Some(known_edges) = state::known_edges(&args.state_dir) {
                limiter.assume_known_edges(known_edges);
            }
            let lease_client = LeaseClient::new(
                control_plane.clone(),
                join_token.clone(),
                edge_id.clone(),
                Duration::from_millis(args.lease_interval_ms),
                Arc::clone(&limiter),
                Arc::clone(&runtime),
            )
            .remembering_known_edges_in(args.state_dir.clone());
            tokio::spawn(lease_client.run(shutdown.clone()));
            let config_client = ConfigClient {
                control_plane,
                join_token,
                edge_id: edge_id.clone(),
                region: args.region,
                runtime: Arc::clone(&runtime),
                state: Some(state),
                http: http_client,
            };
            tokio::spawn(config_client.run(shutdown.clone()));
        }
        (None, Some(path)) => {
            let snapshot = file::load(&path)?;
            runtime.install(snapshot, &http_client)?;
            tracing::info!(
                path = %path.display(),
                spool = %spool_state.dir().display(),
                "serving static config; usage events are kept in the spool as JSON lines (no control plane to report to)"
            );
        }
        _ => bail!("give either --control-plane URL or --config FILE"),
    }

    let state = Arc::new(AppState {
        runtime,
        max_body_bytes: args.max_body_bytes,
        body_budget: BodyBudget::new(args.max_body_bytes_in_flight),
        parse_limits: ParseLimits {
            max_values: args.max_json_values,
            max_items: args.max_messages,
        },
        meter: MeterContext {
            sink: usage_sink,
            counter: TokenCounter::new(),
            edge_id,
        },
        spool: spool_state,
        limiter,
        metrics: Arc::clone(&metrics),
    });
    let max_connections = match args.max_connections {
        Some(max) => usize::try_from(max).unwrap_or(usize::MAX),
        None => http::server::raise_open_file_limit(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    if let Some(path) = &args.listen_address_file {
        tollgate_contract::listen::write_listen_address(path, bound)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(listen = %bound, max_connections, "edge serving HTTP");
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        max_connections,
    };
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        on_signal.cancel();
    });
    http::server::serve(listener, http::router(state), limits, metrics, shutdown).await;
    // Every sink clone is gone with the server: the writer seals its segment and exits.
    let sealed = tokio::task::spawn_blocking(move || spool_writer.join());
    if tokio::time::timeout(Duration::from_secs(5), sealed)
        .await
        .is_err()
    {
        tracing::warn!(
            "usage spool writer did not finish within 5 s; its open segment is sealed at next start"
        );
    }
    Ok(())
}
