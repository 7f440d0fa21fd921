//! The Tollgate binaries under test: where they are, how they are launched, and the child
//! processes a test owns (killed on drop, logs kept in files and shown when a test fails).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Lines of each log shown when a test fails.
const FAILURE_LOG_LINES: usize = 60;

/// Environment variables of the developer's shell that would change what a binary does.
const SCRUBBED_ENV: &[&str] = &[
    "DATABASE_URL",
    "TOLLGATE_CONTROL_PLANE",
    "TOLLGATE_ADMIN_TOKEN",
    "TOLLGATE_MASTER_KEY",
    "TOLLGATE_JOIN_TOKEN",
    "TOLLGATE_EDGE_ID",
    "TOLLGATE_CA_CERT",
    "TOLLGATE_CONTROL_PLANE_CA",
    "TOLLGATE_EDGE_TLS_CERT",
    "TOLLGATE_EDGE_TLS_KEY",
    "TOLLGATE_CP_TLS_CERT",
    "TOLLGATE_CP_TLS_KEY",
    "TOLLGATE_CP_TLS_CLIENT_CA",
    "TOLLGATE_CP_REFLECTION",
];

/// Path of a workspace binary (`tollgate-cp`, `tollgate-edge`, `tollgatectl`).
///
/// Cargo puts test executables in `target/<profile>/deps/`, examples in
/// `target/<profile>/examples/` and binaries in `target/<profile>/`, so the binaries sit next to
/// the parent of `current_exe()`. `TOLLGATE_E2E_BIN_DIR` overrides
/// the directory. Panics with a hint when the binary has not been built.
pub fn binary_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("TOLLGATE_E2E_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("path of the running test executable");
            let exe_dir = exe
                .parent()
                .expect("test executable has a parent directory");
            // Tests run from `deps/`, examples from `examples/`.
            if exe_dir
                .file_name()
                .is_some_and(|name| name == "deps" || name == "examples")
            {
                exe_dir
                    .parent()
                    .expect("deps directory has a parent")
                    .to_path_buf()
            } else {
                exe_dir.to_path_buf()
            }
        }
    };
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --workspace` first (or set TOLLGATE_E2E_BIN_DIR)",
        path.display()
    );
    path
}

/// A `Command` for a Tollgate binary with the developer's Tollgate environment removed and
/// readable, colour-free logs.
pub fn base_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    command
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1")
        // Backtraces for panics, but not for `anyhow` errors returned from main: those would
        // bury the error message under the log tail shown on failure.
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null());
    command
}

/// Captured result of a short-lived command (migrate, seed-demo, tollgatectl).
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs a short-lived command to completion without blocking the async runtime.
///
/// Panics if it cannot be spawned or runs longer than `timeout` (it is killed then).
pub async fn run_to_completion(command: Command, timeout: Duration) -> CommandOutput {
    let description = format!("{command:?}");
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{description} did not finish within {timeout:?}"))
        .unwrap_or_else(|error| panic!("failed to run {description}: {error}"));
    CommandOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A long-running child process owned by a test.
///
/// It can be stopped and started again with exactly the same command line (same ports, same
/// state directory). It is killed when dropped; if the test is failing at that moment, the last
/// lines of its stdout and stderr are printed to stderr.
pub struct ManagedProcess {
    label: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// CPUs the process is confined to (`taskset -c` list), for measurements.
    cpus: Option<String>,
}

impl ManagedProcess {
    /// Describes the process; nothing runs until [`ManagedProcess::start`]. Logs go to
    /// `<log_dir>/<label>.stdout.log` and `<label>.stderr.log`, appended across restarts.
    pub fn new(
        label: &str,
        program: PathBuf,
        args: Vec<OsString>,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> ManagedProcess {
        ManagedProcess {
            label: label.to_owned(),
            program,
            args,
            env,
            stdout_log: log_dir.join(format!("{label}.stdout.log")),
            stderr_log: log_dir.join(format!("{label}.stderr.log")),
            child: None,
            starts: 0,
            cpus: None,
        }
    }

    /// Confines the process to `cpus` (a `taskset -c` list such as `0` or `0-1`) from its next
    /// start on, so a benchmark can give it cores of its own. Needs `taskset` (util-linux).
    pub fn run_on_cpus(&mut self, cpus: &str) {
        self.cpus = Some(cpus.to_owned());
    }

    /// Sets the value after `flag` for the next start (e.g. pins `--listen` to the port the
    /// first start was given, so a restarted process keeps its address).
    pub fn set_arg(&mut self, flag: &str, value: &str) {
        if let Some(index) = self.args.iter().position(|arg| arg == flag)
            && let Some(slot) = self.args.get_mut(index + 1)
        {
            *slot = OsString::from(value);
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The OS process id while the process runs (for reading `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Spawns the process. Panics if it is already running or cannot be spawned.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.label);
        self.starts += 1;
        let stdout = open_log(&self.stdout_log, &self.label, self.starts);
        let stderr = open_log(&self.stderr_log, &self.label, self.starts);
        let mut command = match &self.cpus {
            None => base_command(&self.program),
            Some(cpus) => {
                // taskset execs the program: the pid stays the program's.
                let mut command = base_command(Path::new("taskset"));
                command.arg("-c").arg(cpus).arg(&self.program);
                command
            }
        };
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdout(stdout)
            .stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to spawn {}: {error}", self.program.display()));
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL) and reaps it. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.kill() {
                eprintln!("e2e: killing {} failed: {error}", self.label);
            }
            if let Err(error) = child.wait() {
                eprintln!("e2e: reaping {} failed: {error}", self.label);
            }
        }
    }

    /// `Ok` while the process runs; otherwise why not. (The end of its logs is printed when
    /// the process is dropped during a panic.)
    pub fn check_running(&mut self) -> Result<(), String> {
        let state = self.child.as_mut().map(Child::try_wait);
        match state {
            None => Err(format!("{} is not started", self.label)),
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => {
                self.child = None;
                Err(format!(
                    "{} exited unexpectedly with {status} (logs: {}, {})",
                    self.label,
                    self.stdout_log.display(),
                    self.stderr_log.display()
                ))
            }
            Some(Err(error)) => Err(format!("cannot query {}: {error}", self.label)),
        }
    }

    /// Panics if the process is no longer running.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Err(report) = self.check_running() {
            panic!("{report}");
        }
    }

    /// The last `lines` lines of stdout and stderr, labelled.
    pub fn log_report(&self, lines: usize) -> String {
        format!(
            "----- {label} stdout (last {lines} lines, {stdout_path}) -----\n{stdout}\n\
             ----- {label} stderr (last {lines} lines, {stderr_path}) -----\n{stderr}\n\
             ----- end of {label} logs -----",
            label = self.label,
            stdout_path = self.stdout_log.display(),
            stderr_path = self.stderr_log.display(),
            stdout = tail(&self.stdout_log, lines),
            stderr = tail(&self.stderr_log, lines),
        )
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log_report(FAILURE_LOG_LINES));
        }
    }
}

fn open_log(path: &Path, label: &str, start: u32) -> File {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("cannot open log {}: {error}", path.display()));
    // A visible marker, so the log of a restarted process shows where each run begins.
    let _ = writeln!(file, "===== e2e harness: {label} start #{start} =====");
    file
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("<cannot read {}: {error}>", path.display()),
    }
}
