//! A real `tollgate-cp serve` process on its own database and port, and `tollgatectl` aimed at
//! it.

use std::ffi::OsString;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;
use uuid::Uuid;

use crate::STARTUP_TIMEOUT;
use crate::db::TestDb;
use crate::eventually::eventually;
use crate::gateway_client::http_client;
use crate::metrics::Metrics;
use crate::ports::{accepts_connections, bound_port};
use crate::process::{CommandOutput, ManagedProcess, base_command, binary_path, run_to_completion};

/// Longest a one-shot command (migrate, seed-demo, tollgatectl) may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What `tollgate-cp seed-demo --output json` prints.
#[derive(Debug, Clone, Deserialize)]
pub struct SeedDemo {
    pub org: String,
    pub team: String,
    pub project: String,
    /// Plaintext virtual key allowed to use every model.
    pub key: String,
    pub key_id: String,
    pub join_token: String,
    pub models: Vec<String>,
}

/// Output of one `tollgatectl` run.
pub type CtlOutput = CommandOutput;

/// A key minted by `tollgatectl keys create`.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: String,
    pub plaintext: String,
    /// The full JSON `VirtualKey` the control plane returned.
    pub key: Value,
}

/// `tollgatectl edges list` in JSON.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EdgeList {
    pub current_config_version: u64,
    pub edges: Vec<EdgeStatus>,
}

impl EdgeList {
    pub fn edge(&self, edge_id: &str) -> Option<&EdgeStatus> {
        self.edges.iter().find(|edge| edge.edge_id == edge_id)
    }
}

/// One edge as the control plane sees it (proto `Edge`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EdgeStatus {
    pub edge_id: String,
    pub region: String,
    pub build_version: String,
    pub config_version: u64,
    pub connected: bool,
    pub last_seen_at_unix_ms: i64,
    pub last_nack_version: u64,
    pub last_nack_reason: String,
    pub last_nack_at_unix_ms: i64,
    pub key_revision: u64,
}

/// A running control plane (`tollgate-cp serve`) on a migrated [`TestDb`].
///
/// Killed on drop. [`ControlPlane::stop`] and [`ControlPlane::restart`] keep the port, admin
/// token and master key, so edges and `tollgatectl` reach it again at the same URL.
pub struct ControlPlane {
    process: ManagedProcess,
    /// Learned from `address_file` at the first start, then pinned for restarts.
    port: u16,
    address_file: std::path::PathBuf,
    /// Set by [`ControlPlane::speaks_tls`]: URLs are https:// and tollgatectl trusts this CA.
    tls_ca: Option<std::path::PathBuf>,
    admin_token: String,
    master_key_hex: String,
    database_url: String,
    /// The whole `tollgate-cp serve ...` argument list.
    serve_args: Vec<String>,
    // Declared after `process`, so logs still exist when the process prints them on drop.
    _work_dir: TempDir,
}

impl ControlPlane {
    /// Migrates `db`, starts `tollgate-cp serve` on a port the kernel chooses (read back from --listen-address-file) and waits until it accepts
    /// connections.
    pub async fn start(db: &TestDb) -> ControlPlane {
        ControlPlane::start_with_args(db, &[]).await
    }

    /// Like [`ControlPlane::start`], passing `extra_args` to `tollgate-cp serve` (e.g.
    /// `["--lease-ttl-ms", "2000", "--metrics-listen", "127.0.0.1:PORT"]`).
    pub async fn start_with_args(db: &TestDb, extra_args: &[&str]) -> ControlPlane {
        let admin_token = format!("e2e-admin-{}", Uuid::new_v4().simple());
        // 32 random bytes as 64 hex characters.
        let master_key_hex = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let mut control_plane = ControlPlane::prepare(
            "tollgate-cp",
            db.url().to_owned(),
            admin_token,
            master_key_hex,
            extra_args,
        );
        let migrate = control_plane.cp_command(&["migrate"]).await;
        assert!(
            migrate.success(),
            "tollgate-cp migrate failed ({}):\nstdout:\n{}\nstderr:\n{}",
            migrate.status,
            migrate.stdout,
            migrate.stderr
        );
        control_plane.launch().await;
        control_plane
    }

    /// A second replica of this control plane: the same database (already migrated), admin
    /// token and master key, on its own port, with `extra_args` for `tollgate-cp serve`.
    /// Edges and `tollgatectl` may use either replica.
    pub async fn start_replica(&self, extra_args: &[&str]) -> ControlPlane {
        let mut replica = ControlPlane::prepare(
            "tollgate-cp-replica",
            self.database_url.clone(),
            self.admin_token.clone(),
            self.master_key_hex.clone(),
            extra_args,
        );
        replica.launch().await;
        replica
    }

    /// Describes a `tollgate-cp serve` on port 0 (the kernel chooses; the first start learns it); nothing runs yet.
    fn prepare(
        label: &str,
        database_url: String,
        admin_token: String,
        master_key_hex: String,
        extra_args: &[&str],
    ) -> ControlPlane {
        let work_dir = tempfile::Builder::new()
            .prefix("tollgate-e2e-cp-")
            .tempdir()
            .expect("create a temp dir for control plane logs");
        let address_file = work_dir.path().join("listen-address");
        let address_file_arg = address_file.display().to_string();
        let mut args: Vec<String> = [
            "serve",
            "--database-url",
            database_url.as_str(),
            "--listen",
            "127.0.0.1:0",
            "--listen-address-file",
            address_file_arg.as_str(),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        let process = ManagedProcess::new(
            label,
            binary_path("tollgate-cp"),
            args.iter().map(OsString::from).collect(),
            vec![
                ("TOLLGATE_ADMIN_TOKEN".to_owned(), admin_token.clone()),
                ("TOLLGATE_MASTER_KEY".to_owned(), master_key_hex.clone()),
                ("DATABASE_URL".to_owned(), database_url.clone()),
            ],
            work_dir.path(),
        );
        ControlPlane {
            process,
            port: 0,
            address_file,
            tls_ca: None,
            admin_token,
            master_key_hex,
            database_url,
            serve_args: args,
            _work_dir: work_dir,
        }
    }

    /// Base URL for `--control-plane`: `http://127.0.0.1:PORT`, or https:// once the plane
    /// [speaks TLS](ControlPlane::speaks_tls).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Records that this plane was started with `--tls-cert` from a certificate `ca` signed:
    /// from now on its URL is https:// and `tollgatectl` is given the CA.
    pub fn speaks_tls(&mut self, ca: &std::path::Path) {
        self.tls_ca = Some(ca.to_owned());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// `http://ADDR/metrics` when the plane was started with `--metrics-listen ADDR`.
    pub fn metrics_url(&self) -> Option<String> {
        self.serve_args
            .iter()
            .position(|arg| arg == "--metrics-listen")
            .and_then(|index| self.serve_args.get(index + 1))
            .map(|addr| format!("http://{addr}/metrics"))
    }

    /// Scrapes the plane's Prometheus endpoint (needs `--metrics-listen`).
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let url = self
            .metrics_url()
            .ok_or_else(|| anyhow::anyhow!("the control plane runs without --metrics-listen"))?;
        Metrics::scrape(&http_client(), &url).await
    }

    /// Process id of the running plane, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the control plane. Edges lose their config stream; the database stays.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the control plane again on the same port (killing it first if it runs).
    pub async fn restart(&mut self) {
        self.process.stop();
        self.launch().await;
    }

    /// Panics with its logs if the control plane process has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }

    async fn launch(&mut self) {
        let _ = std::fs::remove_file(&self.address_file);
        self.process.start();
        let address_file = self.address_file.clone();
        let process = &mut self.process;
        let port = eventually(STARTUP_TIMEOUT, async || {
            process.assert_running();
            let port = bound_port(&address_file)?;
            accepts_connections(port).await.map(|()| port)
        })
        .await;
        if self.port == 0 {
            self.port = port;
            self.process
                .set_arg("--listen", &format!("127.0.0.1:{port}"));
        }
    }

    /// Runs `tollgate-cp <args> --database-url <db>` with the plane's secrets in the environment.
    pub async fn cp_command(&self, args: &[&str]) -> CommandOutput {
        let mut command = base_command(&binary_path("tollgate-cp"));
        command
            .args(args)
            .arg("--database-url")
            .arg(&self.database_url)
            .env("DATABASE_URL", &self.database_url)
            .env("TOLLGATE_ADMIN_TOKEN", &self.admin_token)
            .env("TOLLGATE_MASTER_KEY", &self.master_key_hex);
        run_to_completion(command, COMMAND_TIMEOUT).await
    }

    /// `tollgate-cp seed-demo --output json`, parsed. Each call mints a new key and join token.
    pub async fn seed_demo(&self) -> SeedDemo {
        let output = self.cp_command(&["seed-demo", "--output", "json"]).await;
        assert!(
            output.success(),
            "tollgate-cp seed-demo failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            output.stdout,
            output.stderr
        );
        serde_json::from_str(output.stdout.trim()).unwrap_or_else(|error| {
            panic!(
                "seed-demo output is not the expected JSON ({error}):\n{}",
                output.stdout
            )
        })
    }

    /// `tollgatectl --control-plane <url> --output json <args>` with the admin token in
    /// `TOLLGATE_ADMIN_TOKEN`. Does not check the exit status.
    pub async fn ctl(&self, args: &[&str]) -> CtlOutput {
        self.ctl_as(&self.admin_token, args).await
    }

    /// Like [`ControlPlane::ctl`] but with another admin token.
    pub async fn ctl_as(&self, admin_token: &str, args: &[&str]) -> CtlOutput {
        let mut command = base_command(&binary_path("tollgatectl"));
        command
            .arg("--control-plane")
            .arg(self.url())
            .arg("--output")
            .arg("json")
            .args(args)
            .env("TOLLGATE_ADMIN_TOKEN", admin_token);
        if let Some(ca) = &self.tls_ca {
            command.env("TOLLGATE_CA_CERT", ca);
        }
        run_to_completion(command, COMMAND_TIMEOUT).await
    }

    /// Runs `tollgatectl`, asserts it succeeded, and parses its JSON stdout.
    pub async fn ctl_json(&self, args: &[&str]) -> Value {
        let output = self.ctl(args).await;
        assert!(
            output.success(),
            "tollgatectl {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            output.stdout,
            output.stderr
        );
        serde_json::from_str(output.stdout.trim()).unwrap_or_else(|error| {
            panic!(
                "tollgatectl {args:?} printed invalid JSON ({error}):\n{}",
                output.stdout
            )
        })
    }

    /// Runs `tollgatectl`, asserts it failed, and returns its stderr.
    pub async fn ctl_failure(&self, args: &[&str]) -> String {
        let output = self.ctl(args).await;
        assert!(
            !output.success(),
            "tollgatectl {args:?} was expected to fail but succeeded:\nstdout:\n{}\nstderr:\n{}",
            output.stdout,
            output.stderr
        );
        output.stderr
    }

    /// `tollgatectl edges list`, parsed.
    pub async fn edges(&self) -> EdgeList {
        let value = self.ctl_json(&["edges", "list"]).await;
        serde_json::from_value(value.clone())
            .unwrap_or_else(|error| panic!("unexpected `edges list` JSON ({error}): {value}"))
    }

    /// `tollgatectl keys create --org O --team T --project P <extra_args>` in the demo project.
    pub async fn create_key(&self, demo: &SeedDemo, extra_args: &[&str]) -> CreatedKey {
        let mut args = vec![
            "keys",
            "create",
            "--org",
            demo.org.as_str(),
            "--team",
            demo.team.as_str(),
            "--project",
            demo.project.as_str(),
        ];
        args.extend_from_slice(extra_args);
        let value = self.ctl_json(&args).await;
        let plaintext = value["plaintext"]
            .as_str()
            .unwrap_or_else(|| panic!("keys create JSON has no plaintext: {value}"))
            .to_owned();
        let id = value["key"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("keys create JSON has no key.id: {value}"))
            .to_owned();
        CreatedKey {
            id,
            plaintext,
            key: value["key"].clone(),
        }
    }
}
