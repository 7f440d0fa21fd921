#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Limits hold globally across edges: three edges (and two control-plane replicas) under
//! concurrent load well above a limit admit no more than the limit allows in one window or
//! period. With every edge in contact with the plane the design's overshoot bound is zero
//! beyond worst-case-vs-actual, and these tests keep actual usage below the worst case, so the
//! bound asserted is the limit itself.

use std::time::Duration;

use serde_json::json;
use tollgate_e2e::limits::metric;
use tollgate_e2e::{
    HttpReply, LimitScope, LimitStack, LoadPlan, RateLimitHeaders, StackLayout,
    assert_limit_rejection, chat_body, eventually, run_load,
};
use uuid::Uuid;

/// The requests-per-minute limit of the request-limit tests.
const RPM_LIMIT: u64 = 30;
/// Admitted requests below this mean the limit refuses more than it should.
const RPM_FLOOR: usize = 20;

/// Load well above every limit here, and far inside one 60-s window: 3 edges × 2 clients ×
/// 10 requests/s for 8 s.
const OVERLOAD: LoadPlan = LoadPlan {
    workers_per_edge: 2,
    pace: Duration::from_millis(100),
    duration: Duration::from_secs(8),
};

/// Edges report consumption about once a second.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Spool sealing plus a report, with slack for a loaded machine.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(30);

fn header_u64(reply: &HttpReply, name: &str) -> u64 {
    reply
        .header(name)
        .unwrap_or_else(|| panic!("no {name} on a 200: {:?}", reply.headers))
        .parse()
        .unwrap_or_else(|error| panic!("{name} is not a count: {error}"))
}

/// A team rpm limit under overload from every edge of `stack`: admitted ≤ limit and ≥ a floor,
/// every 429 well-formed, `x-ratelimit-*-requests` on every response, and every replica's view
/// of the counter within the limit.
async fn assert_team_request_limit_holds(stack: &LimitStack) {
    let tenant = stack.create_tenant("acme", "platform", "chat").await;
    let key = stack.create_key(&tenant, &[]).await;
    let scope = tenant.team_scope();
    stack
        .set_limits(&scope, &["--rpm", &RPM_LIMIT.to_string()])
        .await;

    let report = run_load(
        &stack.clients(),
        &key.plaintext,
        &chat_body("mock-small", "hello"),
        OVERLOAD,
    )
    .await;

    report.assert_statuses_within(&[200, 429]);
    let admitted = report.count(200);
    let per_edge: Vec<usize> = (0..stack.edges.len())
        .map(|edge| report.count_on_edge(edge, 200))
        .collect();
    eprintln!(
        "rpm {RPM_LIMIT}: admitted {admitted} of {} ({per_edge:?} per edge)",
        report.replies.len()
    );
    assert!(
        admitted <= RPM_LIMIT as usize,
        "{admitted} requests admitted in one window against a global limit of {RPM_LIMIT} \
         ({per_edge:?} per edge)"
    );
    assert!(
        admitted >= RPM_FLOOR,
        "only {admitted} admitted against a limit of {RPM_LIMIT}: the limit refuses too much"
    );
    assert!(
        report.count(429) > 0,
        "the load was meant to exceed the limit"
    );
    for reply in report.with_status(429) {
        assert_limit_rejection(reply, "requests_per_minute", &scope, Some(&tenant.team));
        RateLimitHeaders::assert_on(&reply.headers, "requests", RPM_LIMIT);
    }
    for reply in report.with_status(200) {
        RateLimitHeaders::assert_on(&reply.headers, "requests", RPM_LIMIT);
    }

    // The plane's own view, from every replica: every admitted request is reported as spent
    // (within about a lease interval), and spent plus leased never exceeds the limit.
    for plane in 0..stack.planes.len() {
        let used = eventually(STATUS_TIMEOUT, async || {
            let status = stack.limit_status_on(plane, &scope).await;
            let used = status
                .metric(metric::REQUESTS_PER_MINUTE)
                .cloned()
                .ok_or_else(|| format!("no requests_per_minute in {status:?}"))?;
            if used.consumed < admitted as i64 {
                return Err(format!("{admitted} admitted, {used:?}"));
            }
            Ok(used)
        })
        .await;
        assert_eq!(used.limit, RPM_LIMIT as i64, "{used:?}");
        assert_eq!(used.enforced_limit, RPM_LIMIT as i64, "{used:?}");
        assert!(
            used.consumed + used.leased <= used.enforced_limit,
            "replica {plane}: consumed + leased beyond the limit: {used:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_edges_hold_a_global_request_limit() {
    let stack = LimitStack::start(3).await;
    assert_team_request_limit_holds(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_control_plane_replicas_hold_the_bound() {
    let stack = LimitStack::start_layout(StackLayout {
        planes: 2,
        // Edges 1 and 2 lease from replica A, edge 3 from replica B.
        edge_planes: vec![0, 0, 1],
        ..StackLayout::default()
    })
    .await;
    assert_team_request_limit_holds(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_edges_hold_a_global_token_limit() {
    const TPM_LIMIT: u64 = 3_000;
    let stack = LimitStack::start(3).await;
    let tenant = stack.create_tenant("acme", "platform", "chat").await;
    let key = stack.create_key(&tenant, &["--name", "tpm-key"]).await;
    let scope = LimitScope::key(&key);
    stack
        .set_limits(&scope, &["--tpm", &TPM_LIMIT.to_string()])
        .await;

    // Worst case = prompt + 100 tokens; the demo mock produces 24 output tokens, so actual use
    // stays well below what each request reserves.
    let mut body = chat_body("mock-small", "hello");
    body["max_tokens"] = json!(100);
    let report = run_load(&stack.clients(), &key.plaintext, &body, OVERLOAD).await;

    report.assert_statuses_within(&[200, 429]);
    let tokens: u64 = report
        .with_status(200)
        .map(|reply| {
            header_u64(reply, "x-tollgate-input-tokens")
                + header_u64(reply, "x-tollgate-output-tokens")
        })
        .sum();
    eprintln!(
        "tpm {TPM_LIMIT}: {tokens} tokens in {} admitted requests of {}",
        report.count(200),
        report.replies.len()
    );
    assert!(
        tokens <= TPM_LIMIT,
        "{tokens} tokens admitted in one window against a global limit of {TPM_LIMIT}"
    );
    assert!(
        tokens >= TPM_LIMIT / 2,
        "only {tokens} tokens admitted against a limit of {TPM_LIMIT}: the limit refuses too much"
    );
    assert!(
        report.count(429) > 0,
        "the load was meant to exceed the limit"
    );
    for reply in report.with_status(429) {
        assert_limit_rejection(reply, "tokens_per_minute", &scope, None);
        RateLimitHeaders::assert_on(&reply.headers, "tokens", TPM_LIMIT);
    }
    for reply in report.with_status(200) {
        RateLimitHeaders::assert_on(&reply.headers, "tokens", TPM_LIMIT);
    }

    let status = stack.limit_status(&scope).await;
    let used = status
        .metric(metric::TOKENS_PER_MINUTE)
        .unwrap_or_else(|| panic!("no tokens_per_minute in {status:?}"));
    assert!(
        used.consumed + used.leased <= used.enforced_limit,
        "consumed + leased beyond the limit: {used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_holds_under_concurrent_long_max_tokens_requests() {
    /// $1.00 a month for the project.
    const BUDGET_MICROS: i64 = 1_000_000;
    let stack = LimitStack::start(3).await;
    // $100 per 1M tokens either way = 100 micro-dollars a token. A request reserves
    // (prompt + 1000) × 100 ≈ $0.10, a tenth of the budget; it spends (prompt + 100) × 100 ≈
    // $0.01. The mock takes 200 ms, so many reservations are in flight at once.
    stack
        .add_mock_model(
            "pricey-mock",
            &["--mock-latency-ms", "200", "--mock-output-tokens", "100"],
            "pricey",
            &["--input-price", "100", "--output-price", "100"],
        )
        .await;
    let tenant = stack.create_tenant("acme", "platform", "chat").await;
    let key = stack.create_key(&tenant, &[]).await;
    let scope = tenant.project_scope();
    stack.set_limits(&scope, &["--budget-usd-month", "1"]).await;

    let mut body = chat_body("pricey", "hello");
    body["max_tokens"] = json!(1000);
    let report = run_load(
        &stack.clients(),
        &key.plaintext,
        &body,
        LoadPlan {
            workers_per_edge: 4,
            pace: Duration::from_millis(50),
            duration: Duration::from_secs(8),
        },
    )
    .await;

    report.assert_statuses_within(&[200, 429]);
    let admitted = report.count(200);
    let spent: i64 = report
        .with_status(200)
        .map(|reply| header_u64(reply, "x-tollgate-cost-micros") as i64)
        .sum();
    eprintln!(
        "budget {BUDGET_MICROS}: {spent} micro-dollars in {admitted} admitted requests of {}",
        report.replies.len()
    );
    assert!(
        spent <= BUDGET_MICROS,
        "{spent} micro-dollars admitted against a budget of {BUDGET_MICROS}"
    );
    assert!(
        spent >= BUDGET_MICROS / 2,
        "only {spent} of {BUDGET_MICROS} micro-dollars spent: the budget refuses too much"
    );
    assert!(
        report.count(429) > 0,
        "the budget was never exhausted: {:?}",
        report.status_histogram()
    );
    for reply in report.with_status(429) {
        assert_limit_rejection(
            reply,
            "budget_micros_per_month",
            &scope,
            Some(&tenant.project),
        );
    }

    // The ledger agrees once every edge's spool has drained.
    let project_id = Uuid::parse_str(&tenant.project_id).unwrap();
    let pool = stack.db.pool();
    eventually(LEDGER_TIMEOUT, async || {
        let rows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM usage_events WHERE project_id = $1 AND http_status = 200",
        )
        .bind(project_id)
        .fetch_one(pool)
        .await?;
        anyhow::ensure!(
            rows == admitted as i64,
            "{rows} successful usage rows in the ledger, {admitted} admitted"
        );
        Ok::<_, anyhow::Error>(())
    })
    .await;
    let ledger: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(cost_micros), 0)::BIGINT FROM usage_events WHERE project_id = $1",
    )
    .bind(project_id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(
        ledger <= BUDGET_MICROS,
        "the ledger holds {ledger} micro-dollars against a budget of {BUDGET_MICROS}"
    );
    assert!(
        ledger >= spent,
        "the ledger ({ledger}) lost spend the clients were told about ({spent})"
    );

    let status = stack.limit_status(&scope).await;
    let used = status
        .metric(metric::BUDGET_MICROS_PER_MONTH)
        .unwrap_or_else(|| panic!("no budget in {status:?}"));
    assert_eq!(used.limit, BUDGET_MICROS, "{used:?}");
    assert!(
        used.consumed + used.leased <= used.enforced_limit,
        "consumed + leased beyond the budget: {used:?}"
    );
    assert!(
        used.period_end_unix_ms > used.period_start_unix_ms,
        "a monthly budget has a calendar period: {used:?}"
    );
}
