#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A tenant with a valid key attacks the gateway: whatever it sends, it must never stop serving
//! or billing for anyone else.

use std::time::Duration;
use tollgate_e2e::{Stack, chat_body, eventually, usage_rows, wait_for_usage};

/// 3 MiB: a model name far past any real one, below the 16 MiB body limit.
const HUGE_MODEL_NAME_BYTES: usize = 3 << 20;

/// Before: the model name went into the usage event as sent, eight of them made a 24 MB spool
/// segment the plane refused (gRPC message too large), and the reporter retried that segment
/// forever, so no later event of anyone was ever billed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_model_names_are_bounded_and_never_hold_up_anyone_elses_usage() {
    let stack = Stack::start().await;
    let other_tenant = stack.create_key(&[]).await;
    let client = stack.client();

    // Sent together, so their events share one spool segment.
    let replies = futures::future::join_all((0..8).map(|i| {
        let client = client.clone();
        let key = stack.demo.key.clone();
        async move {
            let model = format!("{i}{}", "m".repeat(HUGE_MODEL_NAME_BYTES));
            client
                .chat(Some(&key), &chat_body(&model, "hi"))
                .await
                .unwrap()
        }
    }))
    .await;
    let mut poison_ids = Vec::new();
    for reply in replies {
        let error = reply.assert_openai_error(
            404,
            "invalid_request_error",
            "model_not_found",
            Some("model"),
        );
        // The error echoes a bounded prefix of the name, not 3 MiB of it.
        assert!(
            error["message"].as_str().unwrap().len() < 1024,
            "{}",
            &reply.body[..200]
        );
        poison_ids.push(reply.request_id().unwrap().to_owned());
    }

    let reply = client
        .chat(
            Some(&other_tenant.plaintext),
            &chat_body("mock-small", "hi"),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let row = wait_for_usage(&stack.db, reply.request_id().unwrap()).await;
    assert_eq!(row.status, "ok");

    for id in &poison_ids {
        let row = wait_for_usage(&stack.db, id).await;
        assert_eq!(
            (row.status.as_str(), row.http_status),
            ("client_error", 404)
        );
        assert!(
            row.requested_model.len() <= 256,
            "{}",
            row.requested_model.len()
        );
        assert!(
            row.requested_model.ends_with("mmm"),
            "{}",
            row.requested_model
        );
    }
    assert_eq!(usage_rows(&stack.db).await.len(), poison_ids.len() + 1);
}

/// A tmpfs of `size` mounted on a fresh directory (the test machine runs as root), unmounted on
/// drop: a disk that really fills up.
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root: {status}");
        Self { dir }
    }

    /// Fills the disk with one file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        path
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Before: with the spool's disk full, requests kept getting 200 while their events were lost,
/// each waiting event held a blocking thread (5 → 516 threads), and a 64 KB prompt hung once
/// the blocking pool was exhausted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_disk_refuses_at_once_and_recovers_when_space_returns() {
    let disk = TinyDisk::mount("1m");
    let spool_dir = disk.dir.path().join("spool");
    let spool_arg = spool_dir.display().to_string();
    let stack = Stack::start_with_edge_args(&["--spool-dir", &spool_arg]).await;
    let client = stack.client();
    let key = stack.demo.key.clone();
    let filler = disk.fill();

    let mut served = Vec::new();
    eventually(Duration::from_secs(30), async || {
        let reply = client
            .chat(Some(&key), &chat_body("mock-small", "hi"))
            .await?;
        if reply.status == 200 {
            served.push(reply.request_id().unwrap_or_default().to_owned());
        }
        anyhow::ensure!(reply.status == 503, "status {}", reply.status);
        Ok::<_, anyhow::Error>(reply)
    })
    .await
    .assert_openai_error(503, "service_unavailable", "usage_spool_full", None);
    assert!(
        served.len() < 50,
        "{} requests served on a full disk",
        served.len()
    );

    let big_prompt = "x".repeat(64 * 1024);
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        client.chat(Some(&key), &chat_body("mock-small", &big_prompt)),
    )
    .await
    .expect("a 64 KB prompt is answered, not hung")
    .unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);
    let metrics = stack.edge.metrics().await.unwrap();
    assert_eq!(
        metrics
            .value("tollgate_usage_spool_write_failing", &[])
            .unwrap(),
        1.0
    );

    std::fs::remove_file(filler).unwrap();
    eventually(Duration::from_secs(30), async || {
        let reply = client
            .chat(Some(&key), &chat_body("mock-small", "hi"))
            .await?;
        anyhow::ensure!(reply.status == 200, "status {}", reply.status);
        Ok::<_, anyhow::Error>(())
    })
    .await;
    // What was served while the disk filled up is billed once space returned.
    for id in &served {
        assert_eq!(wait_for_usage(&stack.db, id).await.status, "ok");
    }
    let metrics = stack.edge.metrics().await.unwrap();
    assert_eq!(
        metrics
            .value("tollgate_usage_events_lost_total", &[])
            .unwrap(),
        0.0
    );
    // A write cut short by the full disk left no torn line behind: nothing was quarantined.
    let quarantined: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_rejected_events")
        .fetch_one(stack.db.pool())
        .await
        .unwrap();
    assert_eq!(quarantined, 0);
}

/// Before: an older snapshot file put back in the state dir was accepted on restart, so a key
/// revoked since then worked again while the control plane was unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_put_back_is_refused_on_restart() {
    let mut stack = Stack::start().await;
    let status = stack
        .restart_on_state_from_before_a_revocation("config-snapshot.bin", "version-floor")
        .await;
    assert_ne!(
        status, 200,
        "the revoked key works again from the old snapshot"
    );
    assert_eq!(stack.edge.readyz_status().await.unwrap(), 503);
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// Before: 15.6 MB of 540k empty messages took the edge from 118 MB to 572 MB for one request
/// (the whole body became a JSON tree before anything looked at it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_half_a_million_messages_is_refused_without_the_memory() {
    let stack = Stack::start().await;
    let pid = stack.edge.pid().unwrap();
    let mut body = String::from(r#"{"model":"mock-small","messages":["#);
    body.push_str(&vec![r#"{"role":"user","content":""}"#; 540_000].join(","));
    body.push_str("]}");
    let before = peak_rss_bytes(pid);
    let reply = stack
        .client()
        .chat_raw(Some(&stack.demo.key), body)
        .await
        .unwrap();
    let error = reply.assert_openai_error(400, "invalid_request_error", "invalid_json", None);
    assert!(
        error["message"].as_str().unwrap().contains("JSON values"),
        "{error}"
    );
    let grown = peak_rss_bytes(pid).saturating_sub(before);
    // The body itself is 15.7 MB of text; its tree would have been ~450 MB.
    assert!(grown < 100 << 20, "peak memory grew {} MiB", grown >> 20);

    let too_many = serde_json::json!({
        "model": "mock-small",
        "messages": vec![serde_json::json!({"role": "user", "content": "hi"}); 3_000],
    });
    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &too_many)
        .await
        .unwrap();
    reply.assert_openai_error(
        400,
        "invalid_request_error",
        "invalid_value",
        Some("messages"),
    );
}
