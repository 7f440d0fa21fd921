#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The admin API through `tollgatectl`: precise gRPC status codes for bad writes, a failed
//! write leaves the configuration exactly as it was, and what is configured (provider kinds,
//! API versions, model timeouts) reaches edges in their snapshot.

use serde_json::{Value, json};
use sqlx::Row;
use std::time::Duration;
use tollgate_e2e::fake_edge::FakeEdge;
use tollgate_e2e::process::{base_command, binary_path, run_to_completion};
use tollgate_e2e::{ControlPlane, TestDb};
use tollgate_proto::v1 as pb;

/// Asserts `stderr` names the gRPC status `code` (e.g. `ALREADY_EXISTS`).
#[track_caller]
fn assert_status_code(stderr: &str, code: &str) {
    assert!(
        stderr.contains(code),
        "expected {code} in tollgatectl stderr, got:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_org_fails_with_already_exists() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;

    let created = cp.ctl_json(&["orgs", "create", "acme"]).await;
    assert_eq!(created["name"], "acme", "{created}");
    assert!(
        created["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{created}"
    );

    let stderr = cp.ctl_failure(&["orgs", "create", "acme"]).await;
    assert_status_code(&stderr, "ALREADY_EXISTS");
    assert!(
        stderr.contains("acme"),
        "the message names the org:\n{stderr}"
    );

    let orgs = cp.ctl_json(&["orgs", "list"]).await;
    let acme_count = orgs["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|org| org["name"] == "acme")
        .count();
    assert_eq!(acme_count, 1, "{orgs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_names_and_unknown_kinds_fail_with_invalid_argument() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    cp.ctl_json(&["orgs", "create", "acme"]).await;

    assert_status_code(
        &cp.ctl_failure(&["orgs", "create", ""]).await,
        "INVALID_ARGUMENT",
    );
    assert_status_code(
        &cp.ctl_failure(&["teams", "create", "--org", "acme", ""])
            .await,
        "INVALID_ARGUMENT",
    );
    assert_status_code(
        &cp.ctl_failure(&["providers", "create", "future", "--kind", "quantum"])
            .await,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_to_unknown_parents_fail_with_not_found() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    cp.ctl_json(&["orgs", "create", "acme"]).await;

    assert_status_code(
        &cp.ctl_failure(&["teams", "create", "--org", "no-such-org", "platform"])
            .await,
        "NOT_FOUND",
    );
    assert_status_code(
        &cp.ctl_failure(&[
            "projects",
            "create",
            "--org",
            "acme",
            "--team",
            "no-such-team",
            "chat",
        ])
        .await,
        "NOT_FOUND",
    );
    assert_status_code(
        &cp.ctl_failure(&[
            "models",
            "create",
            "orphan",
            "--provider",
            "no-such-provider",
        ])
        .await,
        "NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_writes_change_nothing() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    cp.ctl_json(&["orgs", "create", "acme"]).await;
    cp.ctl_json(&["teams", "create", "--org", "acme", "platform"])
        .await;
    cp.ctl_json(&["providers", "create", "local-mock", "--kind", "mock"])
        .await;

    let version_before = cp.edges().await.current_config_version;
    let orgs_before = cp.ctl_json(&["orgs", "list"]).await;
    let teams_before = cp.ctl_json(&["teams", "list", "--org", "acme"]).await;
    let providers_before = cp.ctl_json(&["providers", "list"]).await;
    let models_before = cp.ctl_json(&["models", "list"]).await;
    assert!(version_before > 0);
    assert_eq!(
        i64::try_from(version_before).unwrap(),
        db.config_version().await
    );

    let failing_writes: &[&[&str]] = &[
        &["orgs", "create", "acme"],
        &["orgs", "create", ""],
        &["teams", "create", "--org", "acme", "platform"],
        &["teams", "create", "--org", "no-such-org", "platform"],
        &["providers", "create", "local-mock", "--kind", "mock"],
        &["providers", "create", "future", "--kind", "quantum"],
        &[
            "models",
            "create",
            "orphan",
            "--provider",
            "no-such-provider",
        ],
    ];
    for args in failing_writes {
        cp.ctl_failure(args).await;
    }

    assert_eq!(
        cp.edges().await.current_config_version,
        version_before,
        "config version moved"
    );
    assert_eq!(cp.ctl_json(&["orgs", "list"]).await, orgs_before);
    assert_eq!(
        cp.ctl_json(&["teams", "list", "--org", "acme"]).await,
        teams_before
    );
    assert_eq!(cp.ctl_json(&["providers", "list"]).await, providers_before);
    assert_eq!(cp.ctl_json(&["models", "list"]).await, models_before);

    // A successful write does move the version: the check above is not vacuous.
    cp.ctl_json(&["orgs", "create", "globex"]).await;
    assert!(cp.edges().await.current_config_version > version_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_token_fails_with_unauthenticated() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;

    let output = cp
        .ctl_as("not-the-admin-token", &["orgs", "create", "acme"])
        .await;

    assert!(
        !output.success(),
        "a wrong admin token must be refused:\n{}",
        output.stdout
    );
    assert_status_code(&output.stderr, "UNAUTHENTICATED");
    let orgs = cp.ctl_json(&["orgs", "list"]).await;
    assert_eq!(orgs["orgs"].as_array().map(Vec::len), Some(0), "{orgs}");
}

/// With `--reflection`, grpcurl and other generic clients can discover the API (with the admin
/// token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reflection_lists_the_tollgate_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let db = TestDb::create().await;
    let cp = ControlPlane::start_with_args(&db, &["--reflection"]).await;
    let channel = tonic::transport::Endpoint::from_shared(cp.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut request = tonic::Request::new(tokio_stream::iter([request]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", cp.admin_token()).parse().unwrap(),
    );
    let mut responses = client
        .server_reflection_info(request)
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"tollgate.v1.AdminService"), "{names:?}");
    assert!(names.contains(&"tollgate.v1.ConfigService"), "{names:?}");
}

/// `tollgatectl <args>` with its default table output; asserts success and returns stdout.
async fn ctl_table(cp: &ControlPlane, args: &[&str]) -> String {
    let mut command = base_command(&binary_path("tollgatectl"));
    command
        .arg("--control-plane")
        .arg(cp.url())
        .args(args)
        .env("TOLLGATE_ADMIN_TOKEN", cp.admin_token());
    let output = run_to_completion(command, Duration::from_secs(60)).await;
    assert!(
        output.success(),
        "tollgatectl {args:?} failed:\n{}",
        output.stderr
    );
    output.stdout
}

async fn last_audit_row(db: &TestDb) -> (String, String, Value, Value) {
    let row = sqlx::query(
        "SELECT action, target, before, after FROM admin_audit_log ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    (
        row.get("action"),
        row.get("target"),
        row.get::<Option<Value>, _>("before").unwrap_or(Value::Null),
        row.get::<Option<Value>, _>("after").unwrap_or(Value::Null),
    )
}

fn timeouts_json(connect: u32, first_token: u32, idle: u32, total: u32) -> Value {
    json!({
        "connect_ms": connect,
        "first_token_ms": first_token,
        "idle_ms": idle,
        "total_ms": total,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_provider_kinds_are_created_with_default_endpoints_and_api_versions() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;

    let claude = cp
        .ctl_json(&[
            "providers",
            "create",
            "claude",
            "--kind",
            "anthropic",
            "--api-key",
            "sk-ant-test",
            "--api-version",
            "2023-06-01",
        ])
        .await;
    assert_eq!(claude["kind"], "anthropic", "{claude}");
    assert_eq!(claude["base_url"], "https://api.anthropic.com", "{claude}");
    assert_eq!(claude["api_version"], "2023-06-01", "{claude}");
    assert_eq!(claude["has_api_key"], true, "{claude}");

    let google = cp
        .ctl_json(&[
            "providers",
            "create",
            "google",
            "--kind",
            "gemini",
            "--api-key",
            "gm-test",
        ])
        .await;
    assert_eq!(
        google["base_url"], "https://generativelanguage.googleapis.com",
        "{google}"
    );
    assert_eq!(google["api_version"], "", "{google}");

    let azure = cp
        .ctl_json(&[
            "providers",
            "create",
            "azure",
            "--kind",
            "azure_openai",
            "--base-url",
            "https://acme.openai.azure.com/",
            "--api-key",
            "az-test",
        ])
        .await;
    assert_eq!(
        azure["base_url"], "https://acme.openai.azure.com",
        "{azure}"
    );
    assert_eq!(
        azure["api_version"], "",
        "empty means the adapter's default: {azure}"
    );

    // OpenAI keeps working without a key (local servers need none) and now defaults its URL.
    let openai = cp
        .ctl_json(&["providers", "create", "openai", "--kind", "openai"])
        .await;
    assert_eq!(openai["base_url"], "https://api.openai.com/v1", "{openai}");
    assert_eq!(openai["has_api_key"], false, "{openai}");

    let list = cp.ctl_json(&["providers", "list"]).await;
    let listed: Vec<(String, String, String)> = list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["kind"].as_str().unwrap().to_owned(),
                p["api_version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("azure", "azure_openai", ""),
            ("claude", "anthropic", "2023-06-01"),
            ("google", "gemini", ""),
            ("openai", "openai", ""),
        ]
        .map(|(n, k, v)| (n.to_owned(), k.to_owned(), v.to_owned()))
    );
    // The key itself is never shown, in JSON or in the table.
    assert!(!list.to_string().contains("sk-ant-test"), "{list}");
    let table = ctl_table(&cp, &["providers", "list"]).await;
    assert!(!table.contains("sk-ant-test"), "{table}");
    let claude_row = table
        .lines()
        .find(|line| line.starts_with("claude "))
        .unwrap();
    assert!(claude_row.contains(" 2023-06-01 "), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_settings_a_kind_cannot_use_fail_with_invalid_argument_and_change_nothing() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    cp.ctl_json(&["orgs", "create", "acme"]).await;
    let version_before = cp.edges().await.current_config_version;

    let cases: &[(&[&str], &str)] = &[
        (
            &["p", "--kind", "openai", "--api-version", "2024-10-21"],
            "api_version: only azure_openai and anthropic",
        ),
        (
            &[
                "p",
                "--kind",
                "gemini",
                "--api-key",
                "k",
                "--api-version",
                "v1beta",
            ],
            "api_version: only azure_openai and anthropic",
        ),
        (
            &["p", "--kind", "anthropic"],
            "api_key: required for anthropic",
        ),
        (
            &["p", "--kind", "gemini", "--api-key", "  "],
            "api_key: required for gemini",
        ),
        (
            &["p", "--kind", "azure_openai", "--api-key", "k"],
            "base_url: required for azure_openai",
        ),
        (
            &[
                "p",
                "--kind",
                "anthropic",
                "--api-key",
                "k",
                "--api-version",
                "2023-06-01; x=1",
            ],
            "api_version: '2023-06-01; x=1' is not an API version",
        ),
        (
            &[
                "p",
                "--kind",
                "anthropic",
                "--api-key",
                "k",
                "--base-url",
                "http://169.254.169.254/latest",
            ],
            "base_url: link-local",
        ),
    ];
    for (args, expected) in cases {
        let argv: Vec<&str> = ["providers", "create"]
            .iter()
            .chain(*args)
            .copied()
            .collect();
        let stderr = cp.ctl_failure(&argv).await;
        assert_status_code(&stderr, "INVALID_ARGUMENT");
        assert!(stderr.contains(expected), "{argv:?}: {stderr}");
    }

    let providers = cp.ctl_json(&["providers", "list"]).await;
    assert_eq!(providers["providers"], json!([]), "{providers}");
    assert_eq!(cp.edges().await.current_config_version, version_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_timeouts_round_trip_through_create_list_and_set_timeouts() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    cp.ctl_json(&["providers", "create", "local-mock", "--kind", "mock"])
        .await;

    let created = cp
        .ctl_json(&[
            "models",
            "create",
            "tuned",
            "--provider",
            "local-mock",
            "--connect-timeout-ms",
            "2000",
            "--first-token-timeout-ms",
            "30000",
            "--total-timeout-ms",
            "120000",
        ])
        .await;
    assert_eq!(
        created["timeouts"],
        timeouts_json(2_000, 30_000, 0, 120_000),
        "{created}"
    );
    let plain = cp
        .ctl_json(&["models", "create", "plain", "--provider", "local-mock"])
        .await;
    assert_eq!(plain["timeouts"], timeouts_json(0, 0, 0, 0), "{plain}");

    let list = cp.ctl_json(&["models", "list"]).await;
    let tuned = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == "tuned")
        .unwrap();
    assert_eq!(tuned["timeouts"], created["timeouts"], "{list}");

    // Set-timeouts replaces all four: the phases not given go back to the default.
    let version_before = cp.edges().await.current_config_version;
    let updated = cp
        .ctl_json(&[
            "models",
            "set-timeouts",
            "tuned",
            "--idle-timeout-ms",
            "15000",
            "--total-timeout-ms",
            "86400000",
        ])
        .await;
    assert_eq!(
        updated["timeouts"],
        timeouts_json(0, 0, 15_000, 86_400_000),
        "{updated}"
    );
    let version_after = cp.edges().await.current_config_version;
    assert!(
        version_after > version_before,
        "the write bumps the version"
    );
    assert_eq!(
        i64::try_from(version_after).unwrap(),
        db.config_version().await
    );
    let (action, target, before, after) = last_audit_row(&db).await;
    assert_eq!(action, "model.set_timeouts");
    assert_eq!(target, "model/tuned");
    assert_eq!(before["timeouts"], created["timeouts"], "{before}");
    assert_eq!(after, updated);

    let table = ctl_table(&cp, &["models", "list"]).await;
    let tuned_row = table
        .lines()
        .find(|line| line.starts_with("tuned "))
        .unwrap();
    assert!(tuned_row.contains("idle 15s, total 24h"), "{table}");

    // No flags at all: every phase back to the edge default.
    let reset = cp.ctl_json(&["models", "set-timeouts", "tuned"]).await;
    assert_eq!(reset["timeouts"], timeouts_json(0, 0, 0, 0), "{reset}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_timeouts_and_unknown_models_are_refused() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    cp.ctl_json(&["providers", "create", "local-mock", "--kind", "mock"])
        .await;
    cp.ctl_json(&[
        "models",
        "create",
        "tuned",
        "--provider",
        "local-mock",
        "--idle-timeout-ms",
        "5000",
    ])
    .await;
    let models_before = cp.ctl_json(&["models", "list"]).await;
    let version_before = cp.edges().await.current_config_version;

    let stderr = cp
        .ctl_failure(&[
            "models",
            "create",
            "slow",
            "--provider",
            "local-mock",
            "--first-token-timeout-ms",
            "86400001",
        ])
        .await;
    assert_status_code(&stderr, "INVALID_ARGUMENT");
    assert!(
        stderr.contains("timeouts.first_token_ms: 86400001 ms is more than the maximum"),
        "{stderr}"
    );

    let stderr = cp
        .ctl_failure(&[
            "models",
            "set-timeouts",
            "tuned",
            "--connect-timeout-ms",
            "1000",
            "--total-timeout-ms",
            "4294967295",
        ])
        .await;
    assert_status_code(&stderr, "INVALID_ARGUMENT");
    assert!(stderr.contains("timeouts.total_ms"), "{stderr}");

    let stderr = cp
        .ctl_failure(&[
            "models",
            "set-timeouts",
            "no-such-model",
            "--idle-timeout-ms",
            "1",
        ])
        .await;
    assert_status_code(&stderr, "NOT_FOUND");
    assert!(stderr.contains("no-such-model"), "{stderr}");

    assert_eq!(cp.ctl_json(&["models", "list"]).await, models_before);
    assert_eq!(cp.edges().await.current_config_version, version_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_receive_provider_api_versions_and_model_timeouts() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    cp.ctl_json(&[
        "providers",
        "create",
        "azure",
        "--kind",
        "azure_openai",
        "--base-url",
        "https://acme.openai.azure.com",
        "--api-key",
        "az-secret",
        "--api-version",
        "2024-10-01-preview",
        "--timeout-ms",
        "90000",
    ])
    .await;
    cp.ctl_json(&[
        "providers",
        "create",
        "google",
        "--kind",
        "gemini",
        "--api-key",
        "gm-secret",
    ])
    .await;
    cp.ctl_json(&[
        "models",
        "create",
        "gpt-4o",
        "--provider",
        "azure",
        "--upstream-model",
        "prod-gpt4o",
        "--connect-timeout-ms",
        "3000",
        "--idle-timeout-ms",
        "20000",
    ])
    .await;
    cp.ctl_json(&[
        "models",
        "create",
        "gemini-2.0-flash",
        "--provider",
        "google",
    ])
    .await;

    let mut edge = FakeEdge::connect(&cp).await;
    let version = cp.edges().await.current_config_version;
    let snapshot = edge.snapshot_at_least(version).await;

    let azure = snapshot
        .providers
        .iter()
        .find(|p| p.name == "azure")
        .unwrap();
    assert_eq!(azure.kind, "azure_openai");
    assert_eq!(azure.base_url, "https://acme.openai.azure.com");
    assert_eq!(azure.api_version, "2024-10-01-preview");
    assert_eq!(azure.api_key, "az-secret", "decrypted for the edge");
    assert_eq!(azure.request_timeout_ms, 90_000);
    let google = snapshot
        .providers
        .iter()
        .find(|p| p.name == "google")
        .unwrap();
    assert_eq!(google.kind, "gemini");
    assert_eq!(google.base_url, "https://generativelanguage.googleapis.com");
    assert_eq!(google.api_version, "");
    assert_eq!(google.api_key, "gm-secret");

    let model = |snapshot: &pb::ConfigSnapshot, name: &str| {
        snapshot
            .models
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .unwrap()
    };
    let gpt = model(&snapshot, "gpt-4o");
    assert_eq!(gpt.provider_id, azure.id);
    assert_eq!(gpt.upstream_model, "prod-gpt4o");
    assert_eq!(
        gpt.timeouts,
        Some(pb::ModelTimeouts {
            connect_ms: 3_000,
            first_token_ms: 0,
            idle_ms: 20_000,
            total_ms: 0,
        })
    );
    assert_eq!(
        model(&snapshot, "gemini-2.0-flash").timeouts,
        Some(pb::ModelTimeouts::default())
    );

    // A change reaches the connected edge as a new snapshot.
    cp.ctl_json(&[
        "models",
        "set-timeouts",
        "gemini-2.0-flash",
        "--first-token-timeout-ms",
        "45000",
    ])
    .await;
    let version = cp.edges().await.current_config_version;
    let pushed = edge.snapshot_at_least(version).await;
    assert_eq!(
        model(&pushed, "gemini-2.0-flash").timeouts,
        Some(pb::ModelTimeouts {
            first_token_ms: 45_000,
            ..pb::ModelTimeouts::default()
        })
    );
    assert_eq!(model(&pushed, "gpt-4o").timeouts, gpt.timeouts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_seed_adds_a_priced_embeddings_model_once() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;

    let first = cp.seed_demo().await;
    assert!(first.models.contains(&"mock-embed".to_owned()), "{first:?}");
    let second = cp.seed_demo().await;
    assert_eq!(second.models, first.models);

    let list = cp.ctl_json(&["models", "list"]).await;
    let embed: Vec<&Value> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|model| model["name"] == "mock-embed")
        .collect();
    assert_eq!(embed.len(), 1, "{list}");
    let embed = embed[0];
    assert_eq!(embed["provider"], "mock", "{embed}");
    // text-embedding-3-small: $0.02 per 1M input tokens; embeddings have no output.
    assert_eq!(embed["input_price_micros_per_mtok"], 20_000, "{embed}");
    assert_eq!(embed["output_price_micros_per_mtok"], 0, "{embed}");
    assert_eq!(
        embed["price_version"], 1,
        "re-seeding adds no price version: {embed}"
    );
}
