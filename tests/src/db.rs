//! A fresh Postgres database per test, dropped when the test ends.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

/// Server used when `TOLLGATE_TEST_DATABASE_URL` is not set.
const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// An empty database `tollgate_e2e_<uuid>` created on the test Postgres server.
///
/// The schema is not applied here: `tollgate-cp migrate` does that, as in production. On drop
/// the database is dropped with `WITH (FORCE)` (ending any session still connected), unless
/// `TOLLGATE_E2E_KEEP_DB` is set.
pub struct TestDb {
    name: String,
    url: String,
    server_url: String,
    pool: PgPool,
}

impl TestDb {
    /// Creates the database and connects a small pool to it.
    pub async fn create() -> TestDb {
        let server_url = std::env::var("TOLLGATE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
        let name = format!("tollgate_e2e_{}", Uuid::new_v4().simple());

        let mut server = connect_server(&server_url).await;
        let create = format!("CREATE DATABASE {name}");
        // CREATE DATABASE copies template1 and fails if another session is using the template
        // at that instant (parallel tests do); that is transient, so try a few times.
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match sqlx::raw_sql(AssertSqlSafe(create.clone()))
                .execute(&mut server)
                .await
            {
                Ok(_) => break,
                Err(error) if attempt < 10 => {
                    eprintln!("e2e: {create} failed (attempt {attempt}), retrying: {error}");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(error) => panic!("{create} failed: {error}"),
            }
        }
        drop(server);

        let url = database_url(&server_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to test database {name}: {error}"));
        TestDb {
            name,
            url,
            server_url,
            pool,
        }
    }

    /// Connection URL of this database, for `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool on this database, for direct SQL in tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The config version edges should converge to (`config_version.version`).
    pub async fn config_version(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT version FROM config_version")
            .fetch_one(&self.pool)
            .await
            .expect("read config_version")
    }

    /// Inserts `count` virtual keys in the project of the first key, in one statement (one
    /// transaction, so one key revision). Key `n`'s plaintext is `{tag}{n}` and its name
    /// `{tag}{n}`, so a test can both present and revoke it.
    pub async fn insert_bulk_keys(&self, tag: &str, count: usize) {
        sqlx::query(
            "INSERT INTO virtual_keys (name, key_hash, key_prefix, org_id, team_id, project_id)
             SELECT $1 || g, sha256(convert_to($1 || g, 'UTF8')), 'tg_bulk',
                    org_id, team_id, project_id
             FROM generate_series(1, $2) AS g,
                  (SELECT org_id, team_id, project_id FROM virtual_keys LIMIT 1) AS scope",
        )
        .bind(tag)
        .bind(i64::try_from(count).expect("a key count that fits i64"))
        .execute(&self.pool)
        .await
        .expect("insert bulk keys");
    }

    /// `SELECT tollgate_bump_config_version()`: publishes raw SQL writes to edges like an admin
    /// write would. Returns the new version.
    pub async fn bump_config_version(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT tollgate_bump_config_version()")
            .fetch_one(&self.pool)
            .await
            .expect("bump config version")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("TOLLGATE_E2E_KEEP_DB").is_some() {
            eprintln!("e2e: keeping database {} ({})", self.name, self.url);
            return;
        }
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a separate thread
        // with its own runtime does the DROP DATABASE. The pool is left alone (its sockets
        // belong to the test runtime); WITH (FORCE) ends its sessions.
        let dropper = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("e2e: cannot build a runtime to drop database {name}: {error}");
                    return;
                }
            };
            runtime.block_on(async {
                let drop_database = async {
                    let mut server = connect_server(&server_url).await;
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut server)
                    .await
                };
                match tokio::time::timeout(Duration::from_secs(15), drop_database).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => eprintln!("e2e: dropping database {name} failed: {error}"),
                    Err(_) => eprintln!("e2e: dropping database {name} timed out"),
                }
            });
        });
        if dropper.join().is_err() {
            eprintln!("e2e: the thread dropping database {} panicked", self.name);
        }
    }
}

async fn connect_server(server_url: &str) -> PgConnection {
    use sqlx::Connection as _;
    PgConnection::connect(server_url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "cannot connect to the Postgres server for e2e tests (TOLLGATE_TEST_DATABASE_URL, \
             default {DEFAULT_SERVER_URL}): {error}"
            )
        })
}

/// `server_url` with its database name replaced by `name` (query parameters kept).
fn database_url(server_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(server_url)
        .unwrap_or_else(|error| panic!("TOLLGATE_TEST_DATABASE_URL is not a URL: {error}"));
    url.set_path(&format!("/{name}"));
    url.to_string()
}
