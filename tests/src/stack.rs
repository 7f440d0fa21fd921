//! The usual test world: a fresh database, a control plane with the demo data, and one edge
//! connected to it and serving.

use crate::PROPAGATION_TIMEOUT;
use crate::control_plane::{ControlPlane, CreatedKey, SeedDemo};
use crate::db::TestDb;
use crate::edge::Edge;
use crate::eventually::eventually;
use crate::fake_provider::{FakeProvider, WireFormat};
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

    /// Revokes `key` through `tollgatectl` and waits, up to `within`, until the edge refuses it
    /// (401 on a chat).
    pub async fn revoke_key_and_wait(&self, key: &CreatedKey, within: std::time::Duration) {
        self.cp.ctl_json(&["keys", "revoke", &key.id]).await;
        let client = self.client();
        eventually(within, async || {
            let status = client.chat_status(&key.plaintext, "mock-small").await?;
            anyhow::ensure!(status == 401, "revoked key answered {status}");
            Ok::<_, anyhow::Error>(())
        })
        .await;
    }

    /// Waits until the edge has saved what it holds now: the floor file `floor` in its state dir
    /// (`version-floor`, `key-revision-floor`) reaches the current config version.
    pub async fn wait_state_saved(&self, floor: &str) {
        let version = self.db.config_version().await;
        self.edge
            .wait_state_floor(floor, version, std::time::Duration::from_secs(30))
            .await;
    }

    /// The put-back attack: keeps a copy of the edge's state file `file` (guarded by the floor
    /// file `floor`) from before a key is revoked, revokes the key, then with the control plane
    /// down puts the copy back and restarts the edge. Returns the revoked key's chat status.
    pub async fn restart_on_state_from_before_a_revocation(
        &mut self,
        file: &str,
        floor: &str,
    ) -> u16 {
        let doomed = self.create_key(&[]).await;
        let path = self
            .edge
            .state_dir()
            .expect("an edge with a state dir")
            .join(file);
        self.wait_state_saved(floor).await;
        let before_revocation = std::fs::read(&path).expect("read the state file");
        self.revoke_key_and_wait(&doomed, std::time::Duration::from_secs(30))
            .await;
        self.wait_state_saved(floor).await;
        self.edge.stop();
        self.cp.stop();
        std::fs::write(&path, &before_revocation).expect("put the old state file back");
        self.edge.restart().await;
        self.client()
            .chat_status(&doomed.plaintext, "mock-small")
            .await
            .expect("the restarted edge answers")
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
        self.add_fake_provider(
            fake,
            WireFormat::OpenAi,
            provider,
            model,
            provider_args,
            &[],
        )
        .await;
    }

    /// Registers `fake` as provider `provider` of `format`'s kind (at
    /// [`FakeProvider::base_url_for`], key [`FAKE_API_KEY`], which the fake then requires),
    /// with one model `model` mapping to [`fake_upstream_model`] (unless `model_args` has its
    /// own `--upstream-model`) at [`FAKE_INPUT_PRICE_MICROS`] / [`FAKE_OUTPUT_PRICE_MICROS`];
    /// waits until the edge lists the model. `provider_args` go to `providers create` (e.g.
    /// `["--api-version", "2024-10-21"]`), `model_args` to `models create` (e.g.
    /// `["--first-token-timeout-ms", "300"]`).
    pub async fn add_fake_provider(
        &self,
        fake: &FakeProvider,
        format: WireFormat,
        provider: &str,
        model: &str,
        provider_args: &[&str],
        model_args: &[&str],
    ) {
        fake.set_api_key(FAKE_API_KEY);
        let base_url = fake.base_url_for(format);
        let mut args = vec![
            "providers",
            "create",
            provider,
            "--kind",
            format.kind(),
            "--base-url",
            base_url.as_str(),
            "--api-key",
            FAKE_API_KEY,
        ];
        args.extend_from_slice(provider_args);
        self.cp.ctl_json(&args).await;
        self.add_fake_model(provider, model, fake_upstream_model(format), model_args)
            .await;
    }

    /// Adds model `model` on an existing provider, mapping to `upstream_model` (unless
    /// `model_args` has its own `--upstream-model`), at the fake prices; waits until the edge
    /// lists it.
    pub async fn add_fake_model(
        &self,
        provider: &str,
        model: &str,
        upstream_model: &str,
        model_args: &[&str],
    ) {
        let mut args = vec!["models", "create", model, "--provider", provider];
        if !model_args.contains(&"--upstream-model") {
            args.extend(["--upstream-model", upstream_model]);
        }
        args.extend([
            "--input-price",
            FAKE_INPUT_PRICE,
            "--output-price",
            FAKE_OUTPUT_PRICE,
        ]);
        args.extend_from_slice(model_args);
        self.cp.ctl_json(&args).await;
        self.wait_model_listed(model).await;
    }
}

/// Input price of the fake-provider models, dollars per 1M tokens (as `tollgatectl` takes it).
const FAKE_INPUT_PRICE: &str = "0.15";
/// Output price of the fake-provider models, dollars per 1M tokens.
const FAKE_OUTPUT_PRICE: &str = "0.60";
/// [`FAKE_INPUT_PRICE`] in micro-dollars per 1M tokens.
pub const FAKE_INPUT_PRICE_MICROS: i64 = 150_000;
/// [`FAKE_OUTPUT_PRICE`] in micro-dollars per 1M tokens.
pub const FAKE_OUTPUT_PRICE_MICROS: i64 = 600_000;

/// The Azure deployment the fake-provider models map to.
pub const FAKE_AZURE_DEPLOYMENT: &str = "gpt4o-mini-prod";
/// The Anthropic model the fake-provider models map to.
pub const FAKE_ANTHROPIC_MODEL: &str = "claude-3-5-haiku-20241022";
/// The Gemini model the fake-provider models map to.
pub const FAKE_GEMINI_MODEL: &str = "gemini-2.0-flash";

/// The upstream model (Azure: deployment) a fake-provider chat model of `format` maps to.
pub fn fake_upstream_model(format: WireFormat) -> &'static str {
    match format {
        WireFormat::OpenAi => FAKE_UPSTREAM_MODEL,
        WireFormat::AzureOpenAi => FAKE_AZURE_DEPLOYMENT,
        WireFormat::Anthropic => FAKE_ANTHROPIC_MODEL,
        WireFormat::Gemini => FAKE_GEMINI_MODEL,
    }
}

/// The upstream embeddings model (Azure: deployment) of `format`; Anthropic has none.
pub fn fake_embedding_model(format: WireFormat) -> Option<&'static str> {
    match format {
        WireFormat::OpenAi => Some("text-embedding-3-small"),
        WireFormat::AzureOpenAi => Some("embed-small-prod"),
        WireFormat::Gemini => Some("text-embedding-004"),
        WireFormat::Anthropic => None,
    }
}
