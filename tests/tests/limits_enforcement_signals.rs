#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What limits tell people: `x-ratelimit-*` headers on every chat response of a limited key
//! (success, client error and refusal alike), and soft budget alerts recorded in the admin API,
//! counted in the control plane's metrics and POSTed to the operator's webhook.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_e2e::limits::{metric, scope_kind};
use tollgate_e2e::webhook::has_string_field;
use tollgate_e2e::{
    HttpReply, LimitScope, LimitStack, RateLimitHeaders, StackLayout, WebhookReceiver,
    assert_limit_rejection, chat_body, eventually,
};

/// An alert is recorded at the next lease call after the spend is reported, and delivered by a
/// background task: seconds, with slack for a loaded machine.
const ALERT_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_headers_are_on_every_response() {
    const RPM: u64 = 5;
    const TPM: u64 = 100_000;
    let stack = LimitStack::start(1).await;
    let tenant = stack.create_tenant("acme", "platform", "chat").await;
    let key = stack.create_key(&tenant, &[]).await;
    let scope = LimitScope::key(&key);
    stack
        .set_limits(
            &scope,
            &["--rpm", &RPM.to_string(), "--tpm", &TPM.to_string()],
        )
        .await;
    let client = stack.clients().remove(0);
    let key_text = key.plaintext.as_str();
    let body = chat_body("mock-small", "hello");

    let assert_headers = |reply: &HttpReply| {
        RateLimitHeaders::assert_on(&reply.headers, "requests", RPM);
        RateLimitHeaders::assert_on(&reply.headers, "tokens", TPM);
    };

    // 200 (the first request may race the edge's first lease).
    let ok = eventually(Duration::from_secs(10), async || {
        let reply = client.chat(Some(key_text), &body).await?;
        anyhow::ensure!(reply.status == 200, "{} {}", reply.status, reply.body);
        Ok::<_, anyhow::Error>(reply)
    })
    .await;
    assert_headers(&ok);

    // 400: authenticated, but the body is not JSON.
    let bad = client
        .chat_raw(Some(key_text), "{not json".to_owned())
        .await
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_headers(&bad);

    // 429: the key's 5 requests a minute are used up.
    let refused = eventually(Duration::from_secs(10), async || {
        let reply = client.chat(Some(key_text), &body).await?;
        match reply.status {
            429 => Ok(reply),
            200 => Err(anyhow::anyhow!("still admitted")),
            other => panic!("unexpected status {other}: {}", reply.body),
        }
    })
    .await;
    assert_limit_rejection(&refused, "requests_per_minute", &scope, None);
    assert_headers(&refused);
    let requests = RateLimitHeaders::parse(&refused.headers, "requests").unwrap();
    assert!(
        requests.reset > Duration::ZERO,
        "a refused request's window frees capacity later, not now: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soft_budget_alert_is_recorded_and_sent_to_the_webhook() {
    /// $0.10 a month, soft alert at half.
    const BUDGET_MICROS: i64 = 100_000;
    let receiver = WebhookReceiver::start().await;
    let stack = LimitStack::start_layout(
        StackLayout::edges(1)
            .cp_args(&["--alert-webhook-url", &receiver.url()])
            .with_cp_metrics(),
    )
    .await;
    // 100 micro-dollars a token: a request of a few prompt tokens + 100 output tokens costs
    // about $0.0105, about a tenth of the budget.
    stack
        .add_mock_model(
            "pricey-mock",
            &["--mock-output-tokens", "100"],
            "pricey",
            &["--input-price", "100", "--output-price", "100"],
        )
        .await;
    let tenant = stack.create_tenant("acme", "platform", "chat").await;
    let key = stack.create_key(&tenant, &[]).await;
    let scope = tenant.project_scope();
    stack
        .set_limits(
            &scope,
            &["--budget-usd-month", "0.10", "--soft-threshold-pct", "50"],
        )
        .await;
    let client = stack.clients().remove(0);
    let mut body = chat_body("pricey", "hello");
    body["max_tokens"] = json!(100);

    // Spend past half the budget (and stay clear of the hard limit).
    let mut spent = 0_i64;
    while spent < BUDGET_MICROS * 6 / 10 {
        let reply = eventually(Duration::from_secs(10), async || {
            let reply = client.chat(Some(&key.plaintext), &body).await?;
            anyhow::ensure!(reply.status == 200, "{} {}", reply.status, reply.body);
            Ok::<_, anyhow::Error>(reply)
        })
        .await;
        let cost: i64 = reply
            .header("x-tollgate-cost-micros")
            .expect("a priced model's response carries its cost")
            .parse()
            .unwrap();
        assert!(cost > 0, "a priced request costs something");
        spent += cost;
    }

    // Recorded and exposed through the admin API.
    let is_soft_alert = |alert: &Value| {
        alert["kind"] == "soft"
            && alert["scope_id"] == tenant.project_id.as_str()
            && alert["metric"] == metric::BUDGET_MICROS_PER_MONTH
    };
    let alert = eventually(ALERT_TIMEOUT, async || {
        let alerts = stack.limit_alerts(&["--org", &tenant.org]).await;
        alerts
            .iter()
            .find(|alert| is_soft_alert(alert))
            .cloned()
            .ok_or_else(|| format!("no soft alert for the project yet: {alerts:?}"))
    })
    .await;
    assert_eq!(alert["scope_kind"], scope_kind::PROJECT, "{alert}");
    assert_eq!(alert["threshold_pct"], 50, "{alert}");
    assert_eq!(alert["limit"], BUDGET_MICROS, "{alert}");
    let used = alert["used"].as_i64().unwrap_or_default();
    assert!(
        used >= BUDGET_MICROS / 2,
        "the soft alert fired at {used}, below half of {BUDGET_MICROS}: {alert}"
    );

    // Sent to the webhook.
    let delivered = eventually(ALERT_TIMEOUT, async || {
        receiver
            .received()
            .into_iter()
            .find(|post| has_string_field(&post.body, "kind", "soft"))
            .ok_or("no soft alert POSTed yet")
    })
    .await;
    eprintln!("webhook got {} at {}", delivered.body, delivered.path);

    // ... and the admin API says so.
    eventually(ALERT_TIMEOUT, async || {
        let alerts = stack.limit_alerts(&["--org", &tenant.org]).await;
        let alert = alerts
            .iter()
            .find(|alert| is_soft_alert(alert))
            .ok_or("the soft alert disappeared")?;
        if alert["webhook_delivered_at_unix_ms"].as_i64().unwrap_or(0) > 0 {
            Ok(())
        } else {
            Err(format!("not marked delivered: {alert}"))
        }
    })
    .await;

    // Counted in the control plane's metrics.
    eventually(ALERT_TIMEOUT, async || {
        let soft = stack
            .cp()
            .metrics()
            .await?
            .value("tollgate_limit_alerts_total", &[("kind", "soft")])?;
        anyhow::ensure!(
            soft >= 1.0,
            "tollgate_limit_alerts_total{{kind=\"soft\"}} = {soft}"
        );
        Ok::<_, anyhow::Error>(())
    })
    .await;
}
