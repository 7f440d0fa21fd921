#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Prices as the usage ledger needs them: cached-input prices, and price versions scheduled for
//! later that reach edges in the snapshot ahead of time, so a request is priced by the version
//! in force when it started.

mod usage_ingest_support;

use chrono::{Duration, SecondsFormat, Utc};
use tollgate_control_plane::crypto::MasterKey;
use tollgate_control_plane::error::AdminError;
use tollgate_control_plane::snapshot::SnapshotBuilder;
use tollgate_e2e::{ControlPlane, TestDb};
use tollgate_proto::v1 as pb;
use usage_ingest_support::World;

async fn with_model(world: &World, cached: Option<i64>) -> pb::Model {
    world
        .admin
        .create_provider(
            "test",
            pb::CreateProviderRequest {
                name: "mock".into(),
                kind: "mock".into(),
                ..pb::CreateProviderRequest::default()
            },
        )
        .await
        .unwrap();
    world
        .admin
        .create_model(
            "test",
            pb::CreateModelRequest {
                name: "gpt".into(),
                provider: "mock".into(),
                upstream_model: String::new(),
                input_price_micros_per_mtok: Some(1_000_000),
                output_price_micros_per_mtok: Some(2_000_000),
                cached_input_price_micros_per_mtok: cached,
                max_output_tokens: 0,
                timeouts: None,
            },
        )
        .await
        .unwrap()
}

fn set_price(
    input: i64,
    output: i64,
    cached: Option<i64>,
    from_ms: i64,
) -> pb::SetModelPriceRequest {
    pb::SetModelPriceRequest {
        model: "gpt".into(),
        input_price_micros_per_mtok: input,
        output_price_micros_per_mtok: output,
        cached_input_price_micros_per_mtok: cached,
        effective_from_unix_ms: from_ms,
    }
}

async fn snapshot_model(world: &World, name: &str) -> pb::SnapshotModel {
    let builder = SnapshotBuilder::new(
        world.pool().clone(),
        MasterKey::from_hex(&"ab".repeat(32)).unwrap(),
    );
    let snapshot = builder.snapshot(0).await.unwrap();
    snapshot
        .models
        .iter()
        .find(|m| m.name == name)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn usage_ingest_the_snapshot_carries_the_price_in_force_and_every_scheduled_one() {
    let world = World::create().await;
    let created = with_model(&world, None).await;
    assert_eq!(created.cached_input_price_micros_per_mtok, None);
    let tomorrow = Utc::now() + Duration::days(1);
    let later = Utc::now() + Duration::days(2);
    let admin = &world.admin;
    let v2 = admin
        .set_model_price(
            "test",
            set_price(
                3_000_000,
                4_000_000,
                Some(500_000),
                tomorrow.timestamp_millis(),
            ),
        )
        .await
        .unwrap();
    // Scheduling a price does not change the one in force.
    assert_eq!(
        (v2.price_version, v2.input_price_micros_per_mtok),
        (1, 1_000_000)
    );
    assert_eq!(v2.scheduled_prices.len(), 1);
    admin
        .set_model_price(
            "test",
            set_price(5_000_000, 6_000_000, None, later.timestamp_millis()),
        )
        .await
        .unwrap();
    // A new price effective now supersedes version 1, which no edge needs any more.
    let v4 = admin
        .set_model_price("test", set_price(7_000_000, 8_000_000, None, 0))
        .await
        .unwrap();
    assert_eq!(v4.price_version, 4);
    assert_eq!(v4.input_price_micros_per_mtok, 7_000_000);
    let scheduled: Vec<(u32, i64, Option<i64>)> = v4
        .scheduled_prices
        .iter()
        .map(|p| {
            (
                p.version,
                p.effective_from_unix_ms,
                p.cached_input_price_micros_per_mtok,
            )
        })
        .collect();
    assert_eq!(
        scheduled,
        vec![
            (2, tomorrow.timestamp_millis(), Some(500_000)),
            (3, later.timestamp_millis(), None)
        ]
    );

    let model = snapshot_model(&world, "gpt").await;
    assert_eq!(
        (
            model.price_version,
            model.input_price_micros_per_mtok,
            model.output_price_micros_per_mtok
        ),
        (4, 7_000_000, 8_000_000),
        "the single-price fields stay the price in force, for older edges"
    );
    let prices: Vec<(u32, i64, i64, i64)> = model
        .prices
        .iter()
        .map(|p| {
            (
                p.version,
                p.input_price_micros_per_mtok,
                p.output_price_micros_per_mtok,
                p.cached_input_price_micros_per_mtok,
            )
        })
        .collect();
    assert_eq!(
        prices,
        vec![
            // An unset cached-input price is sent as the input price.
            (4, 7_000_000, 8_000_000, 7_000_000),
            (2, 3_000_000, 4_000_000, 500_000),
            (3, 5_000_000, 6_000_000, 5_000_000),
        ]
    );
    assert_eq!(
        model.prices[1].effective_from_unix_ms,
        tomorrow.timestamp_millis()
    );
}

#[tokio::test]
async fn usage_ingest_models_without_a_price_in_force_are_unpriced_in_the_snapshot() {
    let world = World::create().await;
    with_model(&world, Some(250_000)).await;
    sqlx::query(
        "INSERT INTO models (name, provider_id, upstream_model) \
         SELECT n, id, n FROM providers, unnest(ARRAY['free', 'soon']) AS n",
    )
    .execute(world.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO model_prices (model_id, version, input_price_micros_per_mtok, \
             output_price_micros_per_mtok, effective_from) \
         SELECT id, 1, 10, 20, now() + interval '1 hour' FROM models WHERE name = 'soon'",
    )
    .execute(world.pool())
    .await
    .unwrap();

    let free = snapshot_model(&world, "free").await;
    assert_eq!((free.price_version, free.prices.len()), (0, 0));
    let soon = snapshot_model(&world, "soon").await;
    assert_eq!(soon.price_version, 0, "nothing in force yet");
    assert_eq!(
        soon.prices.len(),
        1,
        "but the edge already knows what comes"
    );
    let gpt = snapshot_model(&world, "gpt").await;
    assert_eq!(gpt.prices[0].cached_input_price_micros_per_mtok, 250_000);

    let models = world.admin.list_models().await.unwrap().models;
    let soon = models.iter().find(|m| m.name == "soon").unwrap();
    assert_eq!((soon.price_version, soon.scheduled_prices.len()), (0, 1));
    let gpt = models.iter().find(|m| m.name == "gpt").unwrap();
    assert_eq!(gpt.cached_input_price_micros_per_mtok, Some(250_000));
}

#[tokio::test]
async fn usage_ingest_a_price_effective_in_the_past_or_negative_is_refused_and_nothing_changes() {
    let world = World::create().await;
    with_model(&world, None).await;
    let past = (Utc::now() - Duration::minutes(1)).timestamp_millis();
    let err = world
        .admin
        .set_model_price("test", set_price(1, 1, None, past))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::InvalidArgument {
                field: "effective_from",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("is in the past"), "{err}");
    let err = world
        .admin
        .set_model_price("test", set_price(1, 1, Some(-1), 0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::InvalidArgument {
                field: "cached_input_price",
                ..
            }
        ),
        "{err}"
    );
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM model_prices")
        .fetch_one(world.pool())
        .await
        .unwrap();
    assert_eq!(versions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_ingest_tollgatectl_sets_cached_and_scheduled_prices() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    cp.seed_demo().await;
    let model = cp
        .ctl_json(&[
            "models",
            "create",
            "gpt-x",
            "--provider",
            "mock",
            "--input-price",
            "2.50",
            "--output-price",
            "10",
            "--cached-input-price",
            "1.25",
        ])
        .await;
    assert_eq!(model["cached_input_price_micros_per_mtok"], 1_250_000);
    assert_eq!(model["price_version"], 1);

    let from = (Utc::now() + Duration::days(7)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let model = cp
        .ctl_json(&[
            "models",
            "set-price",
            "gpt-x",
            "--input-price",
            "3",
            "--output-price",
            "12",
            "--effective-from",
            &from,
        ])
        .await;
    assert_eq!(
        model["price_version"], 1,
        "still the price in force: {model}"
    );
    assert_eq!(model["scheduled_prices"][0]["version"], 2, "{model}");
    assert_eq!(
        model["scheduled_prices"][0]["input_price_micros_per_mtok"],
        3_000_000
    );

    let stderr = cp
        .ctl_failure(&[
            "models",
            "set-price",
            "gpt-x",
            "--input-price",
            "3",
            "--output-price",
            "12",
            "--effective-from",
            "2026-01-01T00:00:00Z",
        ])
        .await;
    assert!(
        stderr.contains("INVALID_ARGUMENT: effective_from: "),
        "{stderr}"
    );
}
