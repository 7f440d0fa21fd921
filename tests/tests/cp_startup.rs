#![allow(clippy::unwrap_used, clippy::expect_used)]
//! How the control plane starts, and how it refuses to.

use tollgate_e2e::{ControlPlane, TestDb};

/// Before: the plane logged "serving" before its bind, and a port in use ended in a backtrace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_one_line_naming_the_port_and_the_flag() {
    let db = TestDb::create().await;
    let running = ControlPlane::start(&db).await;
    let taken = format!("127.0.0.1:{}", running.port());
    let output = running.cp_command(&["serve", "--listen", &taken]).await;
    assert!(!output.success(), "{}", output.stderr);
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", output.stderr);
    assert!(lines[0].contains(&taken), "{}", lines[0]);
    assert!(lines[0].contains("--listen"), "{}", lines[0]);
    assert!(!output.stderr.contains("serving"), "{}", output.stderr);
}
