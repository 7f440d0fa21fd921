//! `tollgate-cp`: migrate the database, seed the demo, or serve the control plane.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::crypto::MasterKey;
use tollgate_control_plane::{db, seed, server};

#[derive(Parser)]
#[command(name = "tollgate-cp", version, about = "Tollgate control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if missing and apply all migrations.
    Migrate {
        #[arg(long, env = "DATABASE_URL", default_value = db::DEFAULT_DATABASE_URL)]
        database_url: String,
    },
    /// Serve the admin API and the config stream over gRPC.
    Serve {
        #[arg(long, env = "DATABASE_URL", default_value = db::DEFAULT_DATABASE_URL)]
        database_url: String,
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
            admin_token,
            master_key,
        } => {
            if admin_token.trim().is_empty() {
                bail!("TOLLGATE_ADMIN_TOKEN must not be empty: the admin API is never open");
            }
            let master_key = MasterKey::from_hex(&master_key)?;
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
            let options = server::ServeOptions {
                listen,
                admin_token,
                master_key,
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
