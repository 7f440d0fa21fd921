//! A real `tollgate-edge serve` process: connected to a control plane, or standalone from a
//! TOML file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use uuid::Uuid;

use crate::control_plane::ControlPlane;
use crate::eventually::eventually;
use crate::gateway_client::{GatewayClient, http_client};
use crate::metrics::Metrics;
use crate::ports::bound_port;
use crate::process::{ManagedProcess, binary_path};
use crate::{PROPAGATION_TIMEOUT, STARTUP_TIMEOUT};

/// A running edge on a port the kernel chose (read back from `--listen-address-file`).
///
/// Killed on drop. [`Edge::stop`] and [`Edge::restart`] keep the port, edge id, arguments and
/// state directory, so a restarted edge is the same edge to clients and to the control plane.
pub struct Edge {
    process: ManagedProcess,
    /// Learned from `address_file` at the first start, then pinned for restarts.
    port: u16,
    address_file: PathBuf,
    edge_id: Option<String>,
    state_dir: Option<PathBuf>,
    http: reqwest::Client,
    // Declared after `process`, so logs still exist when the process prints them on drop,
    // and the state dir outlives the process using it.
    _work_dir: TempDir,
    _owned_dirs: Vec<TempDir>,
}

impl Edge {
    /// `tollgate-edge serve --control-plane <url> --join-token <token> --listen 127.0.0.1:0
    /// --state-dir <state_dir> --edge-id <generated> <extra_args>`; returns once /healthz
    /// answers (the edge may not have a config yet: see [`Edge::wait_ready`]).
    ///
    /// An `--edge-id` in `extra_args` replaces the generated one.
    pub async fn start(
        control_plane_url: &str,
        join_token: &str,
        state_dir: &Path,
        extra_args: &[&str],
    ) -> Edge {
        Edge::start_on(control_plane_url, join_token, state_dir, extra_args, None).await
    }

    /// [`Edge::start`], confined to `cpus` (a `taskset -c` list) when given.
    async fn start_on(
        control_plane_url: &str,
        join_token: &str,
        state_dir: &Path,
        extra_args: &[&str],
        cpus: Option<&str>,
    ) -> Edge {
        let edge_id = extra_args
            .iter()
            .position(|arg| *arg == "--edge-id")
            .and_then(|index| extra_args.get(index + 1))
            .map_or_else(
                || format!("e2e-edge-{}", &Uuid::new_v4().simple().to_string()[..12]),
                |id| (*id).to_owned(),
            );
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--control-plane".into(),
            control_plane_url.into(),
            "--join-token".into(),
            join_token.into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
        ];
        if !extra_args.contains(&"--edge-id") {
            args.extend(["--edge-id".to_owned(), edge_id.clone()]);
        }
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        Edge::launch(args, Some(edge_id), Some(state_dir.to_path_buf()), cpus).await
    }

    /// Like [`Edge::start`] against `control_plane`, with a fresh state directory owned by the
    /// edge: kept across [`Edge::restart`], deleted when the edge is dropped.
    pub async fn connect(
        control_plane: &ControlPlane,
        join_token: &str,
        extra_args: &[&str],
    ) -> Edge {
        Edge::connect_on(control_plane, join_token, extra_args, None).await
    }

    /// Like [`Edge::connect`], with the edge confined to `cpus` (a `taskset -c` list) from its
    /// first instruction, so its runtime sizes itself to them: for benchmarks.
    pub async fn connect_on_cpus(
        control_plane: &ControlPlane,
        join_token: &str,
        extra_args: &[&str],
        cpus: &str,
    ) -> Edge {
        Edge::connect_on(control_plane, join_token, extra_args, Some(cpus)).await
    }

    async fn connect_on(
        control_plane: &ControlPlane,
        join_token: &str,
        extra_args: &[&str],
        cpus: Option<&str>,
    ) -> Edge {
        let state_root = tempfile::Builder::new()
            .prefix("tollgate-e2e-edge-state-")
            .tempdir()
            .expect("create a state dir for the edge");
        // Deleted together with the edge (see `adopt_dir`), not when this function returns.
        let state_dir = state_root.path().join("state");
        std::fs::create_dir_all(&state_dir).expect("create the edge state dir");
        let mut edge = Edge::start_on(
            &control_plane.url(),
            join_token,
            &state_dir,
            extra_args,
            cpus,
        )
        .await;
        edge.adopt_dir(state_root);
        edge
    }

    /// `tollgate-edge serve --config <config_path> --listen 127.0.0.1:0 <extra_args>`:
    /// a standalone edge with no control plane. Returns once /healthz answers.
    /// The edge keeps its id and usage spool in a state directory owned by the edge.
    pub async fn start_with_config(config_path: &Path, extra_args: &[&str]) -> Edge {
        let state_root = tempfile::Builder::new()
            .prefix("tollgate-e2e-edge-state-")
            .tempdir()
            .expect("create a state dir for the edge");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--config".into(),
            config_path.display().to_string(),
            "--state-dir".into(),
            state_root.path().join("state").display().to_string(),
        ];
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        let mut edge = Edge::launch(args, None, None, None).await;
        edge.adopt_dir(state_root);
        edge
    }

    async fn launch(
        mut args: Vec<String>,
        edge_id: Option<String>,
        state_dir: Option<PathBuf>,
        cpus: Option<&str>,
    ) -> Edge {
        let work_dir = tempfile::Builder::new()
            .prefix("tollgate-e2e-edge-")
            .tempdir()
            .expect("create a temp dir for edge logs");
        let address_file = work_dir.path().join("listen-address");
        args.extend([
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--listen-address-file".to_owned(),
            address_file.display().to_string(),
        ]);
        let label = edge_id
            .clone()
            .unwrap_or_else(|| "tollgate-edge".to_owned());
        let mut process = ManagedProcess::new(
            &label,
            binary_path("tollgate-edge"),
            args.into_iter().map(OsString::from).collect(),
            Vec::new(),
            work_dir.path(),
        );
        if let Some(cpus) = cpus {
            process.run_on_cpus(cpus);
        }
        let mut edge = Edge {
            process,
            port: 0,
            address_file,
            edge_id,
            state_dir,
            http: http_client(),
            _work_dir: work_dir,
            _owned_dirs: Vec::new(),
        };
        edge.spawn_and_wait_healthy().await;
        edge
    }

    /// Keeps `dir` alive (and deletes it) together with this edge.
    fn adopt_dir(&mut self, dir: TempDir) {
        self._owned_dirs.push(dir);
    }

    async fn spawn_and_wait_healthy(&mut self) {
        let _ = std::fs::remove_file(&self.address_file);
        self.process.start();
        let address_file = self.address_file.clone();
        let process = &mut self.process;
        let port = eventually(STARTUP_TIMEOUT, async || {
            process.assert_running();
            bound_port(&address_file)
        })
        .await;
        if self.port == 0 {
            self.port = port;
            self.process
                .set_arg("--listen", &format!("127.0.0.1:{port}"));
        }
        let healthz = self.url("/healthz");
        let http = &self.http;
        let process = &mut self.process;
        eventually(STARTUP_TIMEOUT, async || {
            process.assert_running();
            match http.get(&healthz).send().await {
                Ok(response) if response.status().as_u16() == 200 => Ok(()),
                Ok(response) => Err(format!("/healthz answered {}", response.status())),
                Err(error) => Err(format!("/healthz: {error}")),
            }
        })
        .await;
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The edge's OS process id while it runs (e.g. to sample its memory).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The `--edge-id` this edge reports to the control plane. Panics for a standalone edge.
    pub fn edge_id(&self) -> &str {
        self.edge_id
            .as_deref()
            .expect("a standalone (--config) edge has no edge id")
    }

    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// A client for this edge's HTTP API (a fresh connection pool).
    pub fn client(&self) -> GatewayClient {
        GatewayClient::new(&self.base_url())
    }

    /// GET /metrics, parsed (the edge's Prometheus endpoint).
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        Metrics::scrape(&self.http, &self.url("/metrics")).await
    }

    /// Status of GET /readyz.
    pub async fn readyz_status(&self) -> anyhow::Result<u16> {
        Ok(self
            .http
            .get(self.url("/readyz"))
            .send()
            .await?
            .status()
            .as_u16())
    }

    /// Waits until GET /readyz answers 200 (a config is loaded).
    pub async fn wait_ready(&mut self) {
        let readyz = self.url("/readyz");
        let http = &self.http;
        let process = &mut self.process;
        eventually(PROPAGATION_TIMEOUT, async || {
            process.assert_running();
            match http.get(&readyz).send().await {
                Ok(response) if response.status().as_u16() == 200 => Ok(()),
                Ok(response) => Err(format!("/readyz answered {}", response.status())),
                Err(error) => Err(format!("/readyz: {error}")),
            }
        })
        .await;
    }

    /// Panics with its logs if the edge process has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }

    /// The tail of the edge's stdout and stderr (e.g. to wait for a line it must log).
    pub fn logs(&self) -> String {
        self.process.log_report(200)
    }

    /// Waits up to `within` until the version floor file `name` in the edge's state dir
    /// (`version-floor`, `key-revision-floor`) holds at least `at_least`: what it saved is on
    /// disk.
    pub async fn wait_state_floor(&self, name: &str, at_least: i64, within: std::time::Duration) {
        let floor = self
            .state_dir()
            .expect("an edge with a state dir")
            .join(name);
        eventually(within, async || {
            let saved: i64 = std::fs::read_to_string(&floor)?.trim().parse()?;
            anyhow::ensure!(saved >= at_least, "{name} is {saved}, want {at_least}");
            Ok::<_, anyhow::Error>(())
        })
        .await;
    }

    /// Kills the edge (SIGKILL: no chance to flush anything it has not already written).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the edge again with the same arguments, port and state dir (killing it first if
    /// it runs); returns once /healthz answers.
    pub async fn restart(&mut self) {
        self.process.stop();
        self.spawn_and_wait_healthy().await;
    }
}
