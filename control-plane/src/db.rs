//! Postgres connection and schema migrations (embedded from `migrations/` at build time, so the
//! binary migrates any database without the source tree).

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tollgate";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A read-only repeatable-read transaction and the config version it sees: everything read in
/// it is that one version, as snapshots and key changes must be.
pub async fn read_at_config_version(
    pool: &PgPool,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, u64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let version = sqlx::query_scalar!("SELECT version FROM config_version")
        .fetch_one(&mut *tx)
        .await?;
    Ok((tx, u64::try_from(version).unwrap_or(0)))
}

pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(database_url)?
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Creates the database named in `database_url` if it does not exist yet, connecting to the
/// server's `postgres` database to do so.
pub async fn create_database_if_missing(database_url: &str) -> Result<bool, sqlx::Error> {
    let options = PgConnectOptions::from_str(database_url)?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(false);
    };
    let mut admin = options.database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(&mut admin)
        .await?;
    Ok(true)
}
