#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A tenant with a valid key attacks the gateway: whatever it sends, it must never stop serving
//! or billing for anyone else.

use tollgate_e2e::{Stack, chat_body, usage_rows, wait_for_usage};

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
