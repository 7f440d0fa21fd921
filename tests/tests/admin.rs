#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The admin API through `tollgatectl`: precise gRPC status codes for bad writes, and a failed
//! write leaves the configuration exactly as it was.

use tollgate_e2e::{ControlPlane, TestDb};

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

/// Server reflection is on, so grpcurl and other generic clients can discover the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reflection_lists_the_tollgate_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
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
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
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
