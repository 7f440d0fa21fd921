#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The official `openai` Python SDK against a real edge: chat, streaming with usage, tools
//! (answered by an Anthropic-format upstream, so the SDK parses what the gateway translated),
//! embeddings through the SDK's default base64 path, and an error. The SDK is pinned in
//! `tests/python/requirements.txt` and installed by `.ci/run`; on a machine without it the test
//! installs it from the package registry into a private virtualenv under the target directory,
//! so the README's test command works on a fresh machine.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tollgate_e2e::{FAKE_TOOL_ARGUMENTS, FakeProvider, Stack, WireFormat};

/// Below nextest's kill limit (3 min), so this test's own message explains a hang.
const SDK_TIMEOUT: Duration = Duration::from_secs(90);

fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Runs a command to completion with no stdin; its output, or a panic naming it.
async fn run(program: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()))
}

/// A Python interpreter that can `import openai`: python3 itself when the SDK is installed
/// (as `.ci/run` does), else a virtualenv under the target directory with the pinned SDK.
async fn python_with_openai_sdk() -> PathBuf {
    const PROBE: [&str; 2] = ["-c", "import openai; print(openai.__version__)"];
    let system = PathBuf::from("python3");
    if run(&system, &PROBE).await.status.success() {
        return system;
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openai-sdk-venv");
    let python = venv.join("bin").join("python");
    if !python.exists() || !run(&python, &PROBE).await.status.success() {
        let created = run(&system, &["-m", "venv", &venv.to_string_lossy()]).await;
        assert!(
            created.status.success(),
            "python3 -m venv failed; install the SDK with: \
             python3 -m pip install -r tests/python/requirements.txt\n{}",
            String::from_utf8_lossy(&created.stderr)
        );
        let requirements = python_dir().join("requirements.txt");
        let installed = run(
            &python,
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                &requirements.to_string_lossy(),
            ],
        )
        .await;
        assert!(
            installed.status.success(),
            "installing the openai SDK into {} failed:\n{}",
            venv.display(),
            String::from_utf8_lossy(&installed.stderr)
        );
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk_works_against_the_edge() {
    let python = python_with_openai_sdk().await;
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack
        .add_fake_provider(
            &fake,
            WireFormat::Anthropic,
            "claude",
            "claude-tools",
            &[],
            &[],
        )
        .await;
    stack.wait_model_listed("mock-embed").await;

    let mut command = tokio::process::Command::new(&python);
    command
        .arg(python_dir().join("sdk_check.py"))
        .env("TOLLGATE_BASE_URL", stack.edge.url("/v1"))
        .env("TOLLGATE_API_KEY", &stack.demo.key)
        .env("TOLLGATE_CHAT_MODEL", "mock-small")
        .env("TOLLGATE_TOOL_MODEL", "claude-tools")
        .env("TOLLGATE_EMBED_MODEL", "mock-embed")
        .env("TOLLGATE_TOOL_ARGUMENTS", FAKE_TOOL_ARGUMENTS)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SDK_TIMEOUT, command.output())
        .await
        .expect("sdk_check.py did not finish in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sdk_check.py failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");

    let anthropic_calls = fake
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/messages")
        .count();
    assert!(
        anthropic_calls >= 3,
        "the tool calls went to the Anthropic-format upstream: {anthropic_calls}"
    );
}
