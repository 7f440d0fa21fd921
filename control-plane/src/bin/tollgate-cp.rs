//! `tollgate-cp`: migrate the database, seed the demo, or serve the control plane.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::crypto::MasterKey;
use tollgate_control_plane::{db, seed, server};

#[derive(Parser)]
#[command(name = "tollgate-cp", version, about = "Tollgate control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start and matched at once: the size of `Serve` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Create the database if missing and apply all migrations.
    Migrate {
        #[arg(long, env = "DATABASE_URL", default_value = db::DEFAULT_DATABASE_URL)]
        database_url: String,
    },
    /// Serve the admin API, the config stream, usage ingest and limit leases over gRPC.
    Serve {
        #[arg(long, env = "DATABASE_URL", default_value = db::DEFAULT_DATABASE_URL)]
        database_url: String,
        #[arg(long, default_value = "127.0.0.1:8051")]
        listen: SocketAddr,
        /// After binding, write the bound address here (useful with `--listen 127.0.0.1:0`).
        #[arg(long)]
        listen_address_file: Option<std::path::PathBuf>,
        /// PEM certificate (chain) for the gRPC listener: serve TLS. Snapshots carry decrypted
        /// provider keys; without TLS run the plane on a private network only.
        #[arg(long, env = "TOLLGATE_CP_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, env = "TOLLGATE_CP_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// PEM CA bundle: edges must present a client certificate it signed (mTLS). Admin
        /// clients still authenticate with the admin token alone.
        #[arg(long, env = "TOLLGATE_CP_TLS_CLIENT_CA", requires = "tls_cert")]
        tls_client_ca: Option<std::path::PathBuf>,
        /// Serve gRPC reflection (for grpcurl), behind the admin token. Off by default.
        #[arg(long, env = "TOLLGATE_CP_REFLECTION")]
        reflection: bool,
        /// Bootstrap admin token every admin call must present.
        #[arg(
            long = "admin-token",
            env = "TOLLGATE_ADMIN_TOKEN",
            hide_env_values = true
        )]
        admin_token: String,
        /// 64 hex characters; encrypts provider API keys at rest.
        #[arg(
            long = "master-key",
            env = "TOLLGATE_MASTER_KEY",
            hide_env_values = true
        )]
        master_key: String,
        /// How long a limit lease lives unrenewed; edges renew about every second.
        #[arg(long = "lease-ttl-ms", env = "TOLLGATE_LEASE_TTL_MS", default_value_t = 10_000,
              value_parser = clap::value_parser!(u64).range(1..))]
        lease_ttl_ms: u64,
        /// Serve Prometheus metrics on this address (`GET /metrics`); off when unset.
        #[arg(long = "metrics-listen", env = "TOLLGATE_CP_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        /// POST limit alerts (soft and hard thresholds) as JSON to this URL.
        #[arg(long = "alert-webhook-url", env = "TOLLGATE_ALERT_WEBHOOK_URL")]
        alert_webhook_url: Option<String>,
    },
    /// Create the demo org, mock provider and models; print a new key and join token.
    SeedDemo {
        #[arg(long, env = "DATABASE_URL", default_value = db::DEFAULT_DATABASE_URL)]
        database_url: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// The alert webhook must be an absolute http(s) URL.
fn parse_webhook_url(text: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(text).context("--alert-webhook-url is not a URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--alert-webhook-url must be an http or https URL, not {url}");
    }
    Ok(url)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line naming the cause chain, never a backtrace: this is an operator's error.
            eprintln!("tollgate-cp: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();

    match Cli::parse().command {
        Command::Migrate { database_url } => {
            if db::create_database_if_missing(&database_url)
                .await
                .context("cannot reach Postgres")?
            {
                tracing::info!("created database");
            }
            let pool = db::connect(&database_url, 2)
                .await
                .context("cannot connect to Postgres")?;
            db::MIGRATOR.run(&pool).await.context("migration failed")?;
            tracing::info!("database is migrated");
        }
        Command::Serve {
            database_url,
            listen,
            listen_address_file,
            tls_cert,
            tls_key,
            tls_client_ca,
            reflection,
            admin_token,
            master_key,
            lease_ttl_ms,
            metrics_listen,
            alert_webhook_url,
        } => {
            if admin_token.trim().is_empty() {
                bail!("TOLLGATE_ADMIN_TOKEN must not be empty: the admin API is never open");
            }
            let master_key = MasterKey::from_hex(&master_key)?;
            let alert_webhook_url = alert_webhook_url
                .map(|text| parse_webhook_url(&text))
                .transpose()?;
            let pool = db::connect(&database_url, 16)
                .await
                .context("cannot connect to Postgres")?;
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutting down");
                on_signal.cancel();
            });
            let read = |path: &std::path::Path| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(server::ServerTls {
                    cert_pem: read(&cert)?,
                    key_pem: read(&key)?,
                    client_ca_pem: tls_client_ca.as_deref().map(read).transpose()?,
                }),
                _ => None,
            };
            let options = server::ServeOptions {
                listen,
                listen_address_file,
                tls,
                reflection,
                admin_token,
                master_key,
                lease_ttl: Duration::from_millis(lease_ttl_ms),
                metrics_listen,
                alert_webhook_url,
            };
            server::serve(pool, options, shutdown).await?;
        }
        Command::SeedDemo {
            database_url,
            output,
        } => {
            let pool = db::connect(&database_url, 2)
                .await
                .context("cannot connect to Postgres")?;
            let seeded = seed::seed_demo(&pool).await?;
            let mut stdout = std::io::stdout().lock();
            match output {
                Output::Json => writeln!(stdout, "{}", serde_json::to_string(&seeded)?)?,
                Output::Table => {
                    writeln!(stdout, "org:        {}", seeded.org)?;
                    writeln!(stdout, "team:       {}", seeded.team)?;
                    writeln!(stdout, "project:    {}", seeded.project)?;
                    writeln!(stdout, "models:     {}", seeded.models.join(", "))?;
                    writeln!(
                        stdout,
                        "key:        {}  (shown once; store it now)",
                        seeded.key
                    )?;
                    writeln!(
                        stdout,
                        "join token: {}  (for tollgate-edge --join-token)",
                        seeded.join_token
                    )?;
                }
            }
        }
    }
    Ok(())
}
