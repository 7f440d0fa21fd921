#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The gRPC links carry decrypted provider keys (snapshots) and the admin token: TLS on the
//! plane's listener, mTLS for edges, no silent cleartext, and reflection only when asked for and
//! behind the admin token. Certificates are generated at run time.

use std::time::Duration;
use tollgate_e2e::tls::TestPki;
use tollgate_e2e::{ControlPlane, Edge, TestDb, chat_body, eventually};

async fn tls_plane(db: &TestDb, pki: &TestPki, mtls: bool) -> ControlPlane {
    let cert = pki.server_cert.display().to_string();
    let key = pki.server_key.display().to_string();
    let ca = pki.ca.display().to_string();
    let mut args = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    if mtls {
        args.extend(["--tls-client-ca", ca.as_str()]);
    }
    let mut cp = ControlPlane::start_with_args(db, &args).await;
    cp.speaks_tls(&pki.ca);
    cp
}

/// Before: the plane spoke only cleartext gRPC, and snapshots with provider keys crossed the
/// network readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_and_admin_clients_speak_tls_and_mtls_keeps_out_edges_without_a_certificate() {
    let pki = TestPki::generate();
    let db = TestDb::create().await;
    let cp = tls_plane(&db, &pki, true).await;
    let demo = cp.seed_demo().await;
    // tollgatectl over TLS (the admin token alone authenticates it, no client certificate).
    let orgs = cp.ctl_json(&["orgs", "list"]).await;
    assert!(orgs.to_string().contains("demo"), "{orgs}");

    let ca = pki.ca.display().to_string();
    let cert = pki.client_cert.display().to_string();
    let key = pki.client_key.display().to_string();
    let mut edge = Edge::connect(
        &cp,
        &demo.join_token,
        &[
            "--control-plane-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    )
    .await;
    edge.wait_ready().await;
    let reply = edge
        .client()
        .chat(Some(&demo.key), &chat_body("mock-small", "hi"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The same edge without a client certificate is refused, and so never gets a config.
    let anonymous = Edge::connect(&cp, &demo.join_token, &["--control-plane-ca", &ca]).await;
    eventually(Duration::from_secs(30), async || {
        let logs = anonymous.logs();
        anyhow::ensure!(
            logs.contains("requires edges to present a client certificate"),
            "not refused yet"
        );
        Ok::<_, anyhow::Error>(())
    })
    .await;
    assert_eq!(anonymous.readyz_status().await.unwrap(), 503);
}

/// Before: an https:// control-plane URL silently spoke cleartext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_a_ca_is_refused_at_start_and_a_plaintext_client_cannot_talk_to_tls() {
    let pki = TestPki::generate();
    let db = TestDb::create().await;
    let cp = tls_plane(&db, &pki, false).await;
    let demo = cp.seed_demo().await;

    let state = tempfile::tempdir().unwrap();
    let mut command =
        std::process::Command::new(tollgate_e2e::process::binary_path("tollgate-edge"));
    command
        .args([
            "serve",
            "--control-plane",
            &cp.url(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .env("TOLLGATE_JOIN_TOKEN", &demo.join_token);
    let output =
        tollgate_e2e::process::run_to_completion(command, std::time::Duration::from_secs(30)).await;
    assert!(!output.success());
    assert!(
        output.stderr.contains("--control-plane-ca"),
        "{}",
        output.stderr
    );

    let plaintext = format!("http://127.0.0.1:{}", cp.port());
    let mut ctl = std::process::Command::new(tollgate_e2e::process::binary_path("tollgatectl"));
    ctl.args(["--control-plane", &plaintext, "orgs", "list"])
        .env("TOLLGATE_ADMIN_TOKEN", cp.admin_token());
    let output =
        tollgate_e2e::process::run_to_completion(ctl, std::time::Duration::from_secs(30)).await;
    assert!(!output.success(), "{}", output.stdout);
}

/// Before: reflection was always on and open to anyone who could reach the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_is_off_by_default_and_behind_the_admin_token_when_on() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    let list = || ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let call = async |cp: &ControlPlane, token: Option<&str>| {
        let channel = tonic::transport::Endpoint::from_shared(cp.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut request = tonic::Request::new(tokio_stream::iter([list()]));
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let mut client = ServerReflectionClient::new(channel);
        match client.server_reflection_info(request).await {
            Err(status) => Err(status.code()),
            Ok(response) => match response.into_inner().message().await {
                Err(status) => Err(status.code()),
                Ok(_) => Ok(()),
            },
        }
    };

    let db = TestDb::create().await;
    let off = ControlPlane::start(&db).await;
    assert_eq!(
        call(&off, Some(off.admin_token())).await,
        Err(tonic::Code::Unimplemented)
    );
    let on = off.start_replica(&["--reflection"]).await;
    assert_eq!(call(&on, None).await, Err(tonic::Code::Unauthenticated));
    assert_eq!(call(&on, Some(on.admin_token())).await, Ok(()));
}
