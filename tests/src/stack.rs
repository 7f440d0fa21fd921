//! The usual test world: a fresh database, a control plane with the demo data, and one edge
//! connected to it and serving.

use crate::PROPAGATION_TIMEOUT;
use crate::control_plane::{ControlPlane, CreatedKey, SeedDemo};
use crate::db::TestDb;
use crate::edge::Edge;
use crate::eventually::eventually;
use crate::fake_provider::FakeProvider;
use crate::gateway_client::GatewayClient;

/// The API key the fake OpenAI provider is registered with; must never reach a client.
pub const FAKE_API_KEY: &str = "sk-test-secret-123";
/// The upstream model name the fake-provider models map to.
pub const FAKE_UPSTREAM_MODEL: &str = "gpt-4o-mini";

/// Database + control plane (seeded with the demo org, key and mock models) + one connected,
/// ready edge.
///
/// Fields drop in declaration order: the edge first, the database last.
pub struct Stack {
    pub edge: Edge,
    pub cp: ControlPlane,
    pub demo: SeedDemo,
    pub db: TestDb,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with_edge_args(&[]).await
    }

    /// Like [`Stack::start`], passing `edge_args` to `tollgate-edge serve`.
    pub async fn start_with_edge_args(edge_args: &[&str]) -> Stack {
        let db = TestDb::create().await;
        let cp = ControlPlane::start(&db).await;
        let demo = cp.seed_demo().await;
        let mut edge = Edge::connect(&cp, &demo.join_token, edge_args).await;
        edge.wait_ready().await;
        Stack { edge, cp, demo, db }
    }

    /// A client for the edge.
    pub fn client(&self) -> GatewayClient {
        self.edge.client()
    }

    /// Mints a key in the demo project (`extra_args` e.g. `["--models", "mock-small"]`) and
    /// waits until the edge accepts it.
    pub async fn create_key(&self, extra_args: &[&str]) -> CreatedKey {
        let key = self.cp.create_key(&self.demo, extra_args).await;
        self.wait_key_accepted(&key.plaintext).await;
        key
    }

    /// Waits until GET /v1/models answers 200 for `key` (no upstream traffic involved).
    pub async fn wait_key_accepted(&self, key: &str) {
        let client = self.client();
        eventually(PROPAGATION_TIMEOUT, async || {
            let reply = client.models(Some(key)).await?;
            anyhow::ensure!(
                reply.status == 200,
                "GET /v1/models: {} {}",
                reply.status,
                reply.body
            );
            Ok::<(), anyhow::Error>(())
        })
        .await;
    }

    /// Waits until the demo key's GET /v1/models lists `model`.
    pub async fn wait_model_listed(&self, model: &str) {
        let client = self.client();
        let key = self.demo.key.as_str();
        eventually(PROPAGATION_TIMEOUT, async || {
            let ids = client.model_ids(key).await?;
            anyhow::ensure!(ids.iter().any(|id| id == model), "{model} not in {ids:?}");
            Ok::<(), anyhow::Error>(())
        })
        .await;
    }

    /// Registers `fake` as provider `provider` (kind openai, key [`FAKE_API_KEY`],
    /// `provider_args` e.g. `["--timeout-ms", "300"]`) with one model `model` that maps to
    /// [`FAKE_UPSTREAM_MODEL`], and waits until the edge lists the model.
    pub async fn add_fake_openai(
        &self,
        fake: &FakeProvider,
        provider: &str,
        model: &str,
        provider_args: &[&str],
    ) {
        let base_url = fake.base_url();
        let mut args = vec![
            "providers",
            "create",
            provider,
            "--kind",
            "openai",
            "--base-url",
            base_url.as_str(),
            "--api-key",
            FAKE_API_KEY,
        ];
        args.extend_from_slice(provider_args);
        self.cp.ctl_json(&args).await;
        self.cp
            .ctl_json(&[
                "models",
                "create",
                model,
                "--provider",
                provider,
                "--upstream-model",
                FAKE_UPSTREAM_MODEL,
                "--input-price",
                "0.15",
                "--output-price",
                "0.60",
            ])
            .await;
        self.wait_model_listed(model).await;
    }
}
