#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Limits as operators manage them, through the real `tollgatectl` and `tollgate-cp`: set
//! (merge), get, list, remove and status per scope; org time zones and model output caps; every
//! invalid write refused with the field or scope it is about and nothing changed; every write
//! audited and published to edges in the next config snapshot.

use serde_json::{Value, json};
use sqlx::Row;
use tollgate_control_plane::crypto::MasterKey;
use tollgate_control_plane::snapshot::SnapshotBuilder;
use tollgate_e2e::{ControlPlane, TestDb};
use uuid::Uuid;

/// Wire numbers of `tollgate.v1.LimitScope` and `LimitMetric` (JSON output prints enums as
/// numbers).
const SCOPE_ORG: i64 = 1;
const SCOPE_TEAM: i64 = 2;
const SCOPE_PROJECT: i64 = 3;
const SCOPE_USER: i64 = 4;
const SCOPE_KEY: i64 = 5;
const RPM: i64 = 1;
const TPM: i64 = 2;
const TOKENS_PER_DAY: i64 = 4;
const TOKENS_PER_MONTH: i64 = 5;
const BUDGET: i64 = 6;
const CONCURRENT: i64 = 7;

/// Asserts `stderr` names the gRPC status `code` and every one of `needles`.
#[track_caller]
fn assert_error(stderr: &str, code: &str, needles: &[&str]) {
    assert!(
        stderr.contains(code),
        "expected {code} in tollgatectl stderr, got:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "expected '{needle}' in tollgatectl stderr, got:\n{stderr}"
        );
    }
}

/// A control plane with org acme (Berlin time), team platform, project web, user alice, and
/// one key in acme/platform/web; returns the key's display prefix and id.
async fn acme(cp: &ControlPlane) -> (String, String) {
    cp.ctl_json(&["orgs", "create", "acme", "--time-zone", "Europe/Berlin"])
        .await;
    cp.ctl_json(&["teams", "create", "--org", "acme", "platform"])
        .await;
    cp.ctl_json(&[
        "projects", "create", "--org", "acme", "--team", "platform", "web",
    ])
    .await;
    cp.ctl_json(&["users", "create", "--org", "acme", "alice"])
        .await;
    let key = cp
        .ctl_json(&[
            "keys",
            "create",
            "--org",
            "acme",
            "--team",
            "platform",
            "--project",
            "web",
            "--user",
            "alice",
        ])
        .await;
    (
        key["key"]["prefix"].as_str().unwrap().to_owned(),
        key["key"]["id"].as_str().unwrap().to_owned(),
    )
}

/// `[(metric, limit, soft, hard)]` of a LimitPolicy JSON, in response order.
fn limits_of(policy: &Value) -> Vec<(i64, i64, i64, i64)> {
    policy["limits"]
        .as_array()
        .unwrap_or_else(|| panic!("no limits array: {policy}"))
        .iter()
        .map(|limit| {
            (
                limit["metric"].as_i64().unwrap(),
                limit["limit"].as_i64().unwrap(),
                limit["soft_threshold_pct"].as_i64().unwrap(),
                limit["hard_threshold_pct"].as_i64().unwrap(),
            )
        })
        .collect()
}

const TEAM: &[&str] = &["--org", "acme", "--team", "platform"];

fn args<'a>(command: &[&'a str], scope: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["limits"];
    all.extend_from_slice(command);
    all.extend_from_slice(scope);
    all.extend_from_slice(rest);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_merges_and_get_list_remove_round_trip() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let (key_prefix, key_id) = acme(&cp).await;

    let set = cp
        .ctl_json(&args(
            &["set"],
            TEAM,
            &[
                "--rpm",
                "600",
                "--tpm",
                "200000",
                "--budget-usd-month",
                "12.50",
            ],
        ))
        .await;
    assert_eq!(set["scope_kind"], SCOPE_TEAM, "{set}");
    assert_eq!(
        set["scope"],
        json!({"org": "acme", "team": "platform", "project": "", "user": "", "key": ""})
    );
    assert!(Uuid::parse_str(set["scope_id"].as_str().unwrap()).is_ok());
    assert_eq!(
        limits_of(&set),
        [
            (RPM, 600, 80, 100),
            (TPM, 200_000, 80, 100),
            (BUDGET, 12_500_000, 80, 100)
        ]
    );
    assert!(set["limits"][0]["updated_at_unix_ms"].as_i64().unwrap() > 0);

    // Merge: only what is named changes; thresholds apply to the calendar limits.
    let merged = cp
        .ctl_json(&args(
            &["set"],
            TEAM,
            &["--rpm", "100", "--soft-threshold-pct", "90"],
        ))
        .await;
    assert_eq!(
        limits_of(&merged),
        [
            (RPM, 100, 80, 100),
            (TPM, 200_000, 80, 100),
            (BUDGET, 12_500_000, 90, 100)
        ]
    );
    assert_eq!(cp.ctl_json(&args(&["get"], TEAM, &[])).await, merged);

    // Every level, the key by its display prefix.
    let org = cp
        .ctl_json(&[
            "limits",
            "set",
            "--org",
            "acme",
            "--tokens-per-month",
            "5000000",
        ])
        .await;
    assert_eq!(org["scope_kind"], SCOPE_ORG, "{org}");
    assert_eq!(limits_of(&org), [(TOKENS_PER_MONTH, 5_000_000, 80, 100)]);
    let project = cp
        .ctl_json(&args(
            &["set"],
            &["--org", "acme", "--team", "platform", "--project", "web"],
            &["--max-concurrent", "4"],
        ))
        .await;
    assert_eq!(project["scope_kind"], SCOPE_PROJECT, "{project}");
    assert_eq!(project["scope"]["project"], "web");
    let user = cp
        .ctl_json(&args(
            &["set"],
            &["--org", "acme", "--user", "alice"],
            &["--tokens-per-day", "1000", "--hard-threshold-pct", "120"],
        ))
        .await;
    assert_eq!(user["scope_kind"], SCOPE_USER, "{user}");
    assert_eq!(user["scope"]["user"], "alice");
    assert_eq!(limits_of(&user), [(TOKENS_PER_DAY, 1000, 80, 120)]);
    let key = cp
        .ctl_json(&["limits", "set", "--key", &key_prefix, "--rpm", "10"])
        .await;
    assert_eq!(key["scope_kind"], SCOPE_KEY, "{key}");
    assert_eq!(key["scope_id"], key_id.as_str());
    assert_eq!(
        key["scope"],
        json!({"org": "acme", "team": "platform", "project": "web", "user": "alice", "key": key_prefix})
    );
    // The id names the same key.
    assert_eq!(cp.ctl_json(&["limits", "get", "--key", &key_id]).await, key);

    cp.ctl_json(&["orgs", "create", "globex"]).await;
    cp.ctl_json(&["limits", "set", "--org", "globex", "--rpm", "5"])
        .await;
    let all = cp.ctl_json(&["limits", "list"]).await;
    let kinds: Vec<i64> = all["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| policy["scope_kind"].as_i64().unwrap())
        .collect();
    // Ordered by org name, then level.
    assert_eq!(
        kinds,
        [
            SCOPE_ORG,
            SCOPE_TEAM,
            SCOPE_PROJECT,
            SCOPE_USER,
            SCOPE_KEY,
            SCOPE_ORG
        ],
        "{all}"
    );
    let acme_only = cp.ctl_json(&["limits", "list", "--org", "acme"]).await;
    assert_eq!(acme_only["policies"].as_array().unwrap().len(), 5);
    assert_eq!(acme_only["policies"][1], merged);
    let globex = cp.ctl_json(&["limits", "list", "--org", "globex"]).await;
    assert_eq!(globex["policies"].as_array().unwrap().len(), 1);

    // Remove named metrics, then everything.
    let removed = cp
        .ctl_json(&args(&["remove"], TEAM, &["--rpm", "--budget"]))
        .await;
    assert_eq!(limits_of(&removed), [(TPM, 200_000, 80, 100)]);
    let emptied = cp.ctl_json(&args(&["remove"], TEAM, &[])).await;
    assert_eq!(emptied["limits"], json!([]), "{emptied}");
    // A scope without limits exists all the same: get answers with none.
    let none = cp.ctl_json(&args(&["get"], TEAM, &[])).await;
    assert_eq!(none["limits"], json!([]));
    assert_eq!(none["scope_kind"], SCOPE_TEAM);
    assert_eq!(
        cp.ctl_json(&["limits", "list", "--org", "acme"]).await["policies"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_scope_without_traffic_shows_zero_use() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    acme(&cp).await;
    cp.ctl_json(&args(
        &["set"],
        TEAM,
        &[
            "--rpm",
            "60",
            "--budget-usd-month",
            "10",
            "--hard-threshold-pct",
            "90",
            "--max-concurrent",
            "3",
        ],
    ))
    .await;

    let status = cp.ctl_json(&args(&["status"], TEAM, &[])).await;
    assert_eq!(status["policy"]["scope_kind"], SCOPE_TEAM, "{status}");
    assert_eq!(status["policy"]["limits"].as_array().unwrap().len(), 3);
    let uses = status["uses"].as_array().unwrap();
    let by_metric = |metric: i64| {
        uses.iter()
            .find(|limit_use| limit_use["metric"] == metric)
            .unwrap_or_else(|| panic!("no use for metric {metric}: {status}"))
    };

    let rpm = by_metric(RPM);
    assert_eq!(
        rpm,
        &json!({"metric": RPM, "limit": 60, "enforced_limit": 60, "consumed": 0, "leased": 0,
                "remaining": 60, "period_start_unix_ms": 0, "period_end_unix_ms": 0, "edges": 0})
    );
    let slots = by_metric(CONCURRENT);
    assert_eq!(
        (
            slots["remaining"].as_i64(),
            slots["period_end_unix_ms"].as_i64()
        ),
        (Some(3), Some(0))
    );

    // The budget's period is the current month in Berlin: it starts at local midnight.
    let budget = by_metric(BUDGET);
    assert_eq!(budget["limit"], 10_000_000);
    assert_eq!(budget["enforced_limit"], 9_000_000);
    assert_eq!(budget["consumed"], 0);
    assert_eq!(budget["leased"], 0);
    assert_eq!(budget["remaining"], 9_000_000);
    assert_eq!(budget["edges"], 0);
    let start = budget["period_start_unix_ms"].as_i64().unwrap();
    let end = budget["period_end_unix_ms"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert!(start <= now && now < end, "{budget}");
    let days = (end - start) / 86_400_000;
    assert!((27..=31).contains(&days), "{budget}");
    let start_utc = chrono::DateTime::from_timestamp_millis(start).unwrap();
    assert!(
        start_utc.format("%M:%S").to_string() == "00:00"
            && ["22", "23"].contains(&start_utc.format("%H").to_string().as_str()),
        "a Berlin month starts at 22:00 or 23:00 UTC, got {start_utc}"
    );

    // A scope with no limits has no uses.
    let user = cp
        .ctl_json(&["limits", "status", "--org", "acme", "--user", "alice"])
        .await;
    assert_eq!(user["uses"], json!([]), "{user}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_limit_writes_name_the_field_or_scope_and_change_nothing() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    acme(&cp).await;
    cp.ctl_json(&args(&["set"], TEAM, &["--rpm", "60"])).await;
    cp.ctl_json(&["providers", "create", "local-mock", "--kind", "mock"])
        .await;

    let version_before = db.config_version().await;
    let audit_before = audit_rows(&db).await;
    let limits_before = cp.ctl_json(&["limits", "list"]).await;
    let orgs_before = cp.ctl_json(&["orgs", "list"]).await;
    let models_before = cp.ctl_json(&["models", "list"]).await;

    let invalid: &[(&[&str], &[&str])] = &[
        (
            &["limits", "set", "--org", "acme", "--rpm", "0"],
            &["requests_per_minute"],
        ),
        (
            &[
                "limits", "set", "--org", "acme", "--key", "tg_0000", "--rpm", "5",
            ],
            &["scope.key"],
        ),
        (
            &[
                "limits", "set", "--org", "acme", "--team", "platform", "--user", "alice", "--rpm",
                "5",
            ],
            &["scope.user"],
        ),
        (
            &["limits", "set", "--org", "acme", "--tpm", "-5"],
            &["tokens_per_minute"],
        ),
        (
            &["limits", "set", "--org", "acme", "--budget-usd-month", "0"],
            &["budget_micros_per_month"],
        ),
        (
            &["limits", "set", "--org", "acme", "--max-concurrent", "0"],
            &["max_concurrent_requests"],
        ),
        (
            &[
                "limits",
                "set",
                "--org",
                "acme",
                "--tokens-per-day",
                "10",
                "--soft-threshold-pct",
                "0",
            ],
            &["soft_threshold_pct"],
        ),
        (
            &[
                "limits",
                "set",
                "--org",
                "acme",
                "--tokens-per-day",
                "10",
                "--hard-threshold-pct",
                "1001",
            ],
            &["hard_threshold_pct"],
        ),
        (
            &[
                "limits",
                "set",
                "--org",
                "acme",
                "--tokens-per-day",
                "10",
                "--soft-threshold-pct",
                "95",
                "--hard-threshold-pct",
                "90",
            ],
            &["soft_threshold_pct", "above the hard threshold"],
        ),
        // The team has only a sliding-window limit: thresholds have nothing to apply to.
        (
            &[
                "limits",
                "set",
                "--org",
                "acme",
                "--team",
                "platform",
                "--hard-threshold-pct",
                "90",
            ],
            &["hard_threshold_pct", "calendar"],
        ),
        (
            &["limits", "set", "--org", "acme"],
            &["values", "nothing to set"],
        ),
        (&["limits", "set", "--rpm", "5"], &["scope"]),
        (
            &["limits", "set", "--team", "platform", "--rpm", "5"],
            &["scope.org"],
        ),
        (
            &[
                "limits",
                "set",
                "--org",
                "acme",
                "--project",
                "web",
                "--rpm",
                "5",
            ],
            &["scope.team"],
        ),
        (
            &["orgs", "create", "initech", "--time-zone", "Mars/Olympus"],
            &["time_zone", "Mars/Olympus"],
        ),
        (
            &["orgs", "set-time-zone", "acme", "Europe/Atlantis"],
            &["time_zone", "Europe/Atlantis"],
        ),
        (
            &[
                "models",
                "create",
                "huge",
                "--provider",
                "local-mock",
                "--max-output-tokens",
                "10000001",
            ],
            &["max_output_tokens"],
        ),
    ];
    for (args, needles) in invalid {
        let stderr = cp.ctl_failure(args).await;
        assert_error(&stderr, "INVALID_ARGUMENT", needles);
    }

    let unknown_key = Uuid::new_v4().to_string();
    let not_found: &[(&[&str], &[&str])] = &[
        (
            &["limits", "set", "--org", "nope", "--rpm", "5"],
            &["org 'nope'"],
        ),
        (
            &[
                "limits", "set", "--org", "acme", "--team", "nope", "--rpm", "5",
            ],
            &["team 'acme/nope'"],
        ),
        (
            &[
                "limits",
                "set",
                "--org",
                "acme",
                "--team",
                "platform",
                "--project",
                "nope",
                "--rpm",
                "5",
            ],
            &["project 'acme/platform/nope'"],
        ),
        (
            &["limits", "get", "--org", "acme", "--user", "nope"],
            &["user 'acme/nope'"],
        ),
        (
            &["limits", "status", "--key", "tg_00000000"],
            &["virtual key 'tg_00000000'"],
        ),
        (
            &["limits", "set", "--key", unknown_key.as_str(), "--rpm", "5"],
            &[unknown_key.as_str()],
        ),
        (
            &[
                "limits",
                "remove",
                "--org",
                "acme",
                "--team",
                "platform",
                "--tokens-per-hour",
            ],
            &["tokens_per_hour", "acme/platform"],
        ),
        (
            &["limits", "remove", "--org", "acme", "--user", "alice"],
            &["acme/alice"],
        ),
        (&["limits", "list", "--org", "nope"], &["org 'nope'"]),
        (&["orgs", "set-time-zone", "nope", "UTC"], &["org 'nope'"]),
    ];
    for (args, needles) in not_found {
        let stderr = cp.ctl_failure(args).await;
        assert_error(&stderr, "NOT_FOUND", needles);
    }

    assert_eq!(
        db.config_version().await,
        version_before,
        "config version moved"
    );
    assert_eq!(audit_rows(&db).await, audit_before, "audit log grew");
    assert_eq!(cp.ctl_json(&["limits", "list"]).await, limits_before);
    assert_eq!(cp.ctl_json(&["orgs", "list"]).await, orgs_before);
    assert_eq!(cp.ctl_json(&["models", "list"]).await, models_before);
}

async fn audit_rows(db: &TestDb) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM admin_audit_log")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_writes_are_audited_and_reach_the_config_snapshot() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let (key_prefix, key_id) = acme(&cp).await;

    let version_before = cp.edges().await.current_config_version;
    let policy = cp
        .ctl_json(&args(
            &["set"],
            TEAM,
            &["--rpm", "600", "--budget-usd-month", "50"],
        ))
        .await;
    let version_after = cp.edges().await.current_config_version;
    assert!(
        version_after > version_before,
        "SetLimits must bump the config version"
    );
    assert_eq!(
        i64::try_from(version_after).unwrap(),
        db.config_version().await
    );

    let row = sqlx::query(
        "SELECT actor, action, target, before, after, config_version FROM admin_audit_log \
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("actor"), "bootstrap-admin");
    assert_eq!(row.get::<String, _>("action"), "limits.set");
    assert_eq!(row.get::<String, _>("target"), "limits/team/acme/platform");
    assert_eq!(row.get::<Value, _>("before")["limits"], json!([]));
    assert_eq!(row.get::<Value, _>("after"), policy);
    assert_eq!(
        row.get::<Option<i64>, _>("config_version"),
        Some(i64::try_from(version_after).unwrap())
    );

    cp.ctl_json(&[
        "limits",
        "set",
        "--key",
        &key_prefix,
        "--max-concurrent",
        "2",
    ])
    .await;
    cp.ctl_json(&["orgs", "set-time-zone", "acme", "Asia/Tokyo"])
        .await;
    let removed_version = {
        cp.ctl_json(&args(&["remove"], TEAM, &["--rpm"])).await;
        db.config_version().await
    };
    let row = sqlx::query(
        "SELECT action, target, config_version FROM admin_audit_log ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("action"), "limits.remove");
    assert_eq!(
        row.get::<Option<i64>, _>("config_version"),
        Some(removed_version)
    );
    let time_zone_audits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM admin_audit_log WHERE action = 'org.set_time_zone' \
         AND target = 'org/acme' AND after->>'time_zone' = 'Asia/Tokyo'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(time_zone_audits, 1);

    // What edges receive: the limits with their scope names, and the org's time zone.
    let snapshot = build_snapshot(&db).await;
    let acme = snapshot.orgs.iter().find(|org| org.name == "acme").unwrap();
    assert_eq!(acme.time_zone, "Asia/Tokyo");
    let mut limits: Vec<(i32, String, i32, i64, String)> = snapshot
        .limits
        .iter()
        .map(|limit| {
            let key = limit.key.as_ref().unwrap();
            (
                key.scope,
                key.scope_id.clone(),
                key.metric,
                limit.limit,
                limit.scope_name.clone(),
            )
        })
        .collect();
    limits.sort();
    let team_id = policy["scope_id"].as_str().unwrap().to_owned();
    assert_eq!(
        limits,
        [
            (
                SCOPE_TEAM as i32,
                team_id,
                BUDGET as i32,
                50_000_000,
                "acme/platform".to_owned()
            ),
            (
                SCOPE_KEY as i32,
                key_id.clone(),
                CONCURRENT as i32,
                2,
                format!("{key_prefix}…")
            ),
        ]
    );

    // A revoked key's limits leave the snapshot with the key.
    cp.ctl_json(&["keys", "revoke", &key_id]).await;
    let snapshot = build_snapshot(&db).await;
    assert_eq!(snapshot.limits.len(), 1, "{:?}", snapshot.limits);
}

/// The snapshot the control plane would send an edge now, built by the plane's own code on the
/// test database (no provider secrets are involved, so any master key decrypts them).
async fn build_snapshot(db: &TestDb) -> std::sync::Arc<tollgate_proto::v1::ConfigSnapshot> {
    let master_key = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
    SnapshotBuilder::new(db.pool().clone(), master_key)
        .snapshot(0)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_time_zones_and_model_output_caps_round_trip() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;

    let acme = cp
        .ctl_json(&["orgs", "create", "acme", "--time-zone", "europe/berlin"])
        .await;
    assert_eq!(
        acme["time_zone"], "Europe/Berlin",
        "stored in canonical spelling: {acme}"
    );
    let globex = cp.ctl_json(&["orgs", "create", "globex"]).await;
    assert_eq!(globex["time_zone"], "UTC");
    let moved = cp
        .ctl_json(&["orgs", "set-time-zone", "globex", "Asia/Kolkata"])
        .await;
    assert_eq!(moved["time_zone"], "Asia/Kolkata");
    assert_eq!(moved["id"], globex["id"]);
    let orgs = cp.ctl_json(&["orgs", "list"]).await;
    let zones: Vec<(&str, &str)> = orgs["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|org| {
            (
                org["name"].as_str().unwrap(),
                org["time_zone"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        zones,
        [("acme", "Europe/Berlin"), ("globex", "Asia/Kolkata")]
    );

    cp.ctl_json(&["providers", "create", "local-mock", "--kind", "mock"])
        .await;
    let capped = cp
        .ctl_json(&[
            "models",
            "create",
            "big",
            "--provider",
            "local-mock",
            "--max-output-tokens",
            "16384",
        ])
        .await;
    assert_eq!(capped["max_output_tokens"], 16384);
    let default = cp
        .ctl_json(&["models", "create", "small", "--provider", "local-mock"])
        .await;
    assert_eq!(default["max_output_tokens"], 4096);
    let models = cp.ctl_json(&["models", "list"]).await;
    let caps: Vec<(&str, i64)> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            (
                model["name"].as_str().unwrap(),
                model["max_output_tokens"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(caps, [("big", 16384), ("small", 4096)]);
    let snapshot = build_snapshot(&db).await;
    let big = snapshot
        .models
        .iter()
        .find(|model| model.name == "big")
        .unwrap();
    assert_eq!(big.max_output_tokens, 16384);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_alerts_list_newest_first_with_scope_names() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    acme(&cp).await;
    let team = cp
        .ctl_json(&args(&["set"], TEAM, &["--budget-usd-month", "10"]))
        .await;

    let empty = cp.ctl_json(&["limits", "alerts"]).await;
    assert_eq!(
        empty["alerts"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{empty}"
    );

    // Alerts are recorded by the lease service; here they are written directly.
    let team_id = Uuid::parse_str(team["scope_id"].as_str().unwrap()).unwrap();
    for (kind, threshold, used, at) in [
        ("soft", 80, 8_100_000_i64, "2026-11-10T10:00:00Z"),
        ("hard", 100, 10_000_000_i64, "2026-11-12T10:00:00Z"),
    ] {
        sqlx::query(
            "INSERT INTO limit_alerts (scope_kind, scope_id, org_id, metric, kind, threshold_pct,
                                       used, limit_value, period_start, period_end, created_at)
             SELECT 'team', $1, org_id, 'budget_micros_per_month', $2, $3, $4, 10000000,
                    '2026-10-31T23:00:00Z', '2026-11-30T23:00:00Z', $5::timestamptz
             FROM teams WHERE id = $1",
        )
        .bind(team_id)
        .bind(kind)
        .bind(threshold)
        .bind(used)
        .bind(at)
        .execute(db.pool())
        .await
        .unwrap();
    }

    let alerts = cp.ctl_json(&["limits", "alerts", "--org", "acme"]).await;
    let list = alerts["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{alerts}");
    let newest = &list[0];
    assert!(Uuid::parse_str(newest["id"].as_str().unwrap()).is_ok());
    let mut without_id = newest.clone();
    without_id.as_object_mut().unwrap().remove("id");
    assert_eq!(
        without_id,
        json!({
            "scope": {"org": "acme", "team": "platform", "project": "", "user": "", "key": ""},
            "scope_kind": SCOPE_TEAM,
            "scope_id": team_id.to_string(),
            "metric": BUDGET,
            "kind": "hard",
            "threshold_pct": 100,
            "used": 10_000_000,
            "limit": 10_000_000,
            "period_start_unix_ms": 1_793_487_600_000_i64,
            "period_end_unix_ms": 1_796_079_600_000_i64,
            "created_at_unix_ms": 1_794_477_600_000_i64,
            "webhook_delivered_at_unix_ms": 0,
        })
    );
    assert_eq!(list[1]["kind"], "soft");

    let one = cp.ctl_json(&["limits", "alerts", "--limit", "1"]).await;
    assert_eq!(one["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(one["alerts"][0]["kind"], "hard");
    cp.ctl_json(&["orgs", "create", "globex"]).await;
    let other = cp.ctl_json(&["limits", "alerts", "--org", "globex"]).await;
    assert_eq!(other["alerts"].as_array().map(Vec::len).unwrap_or(0), 0);
    assert_error(
        &cp.ctl_failure(&["limits", "alerts", "--limit", "5000"])
            .await,
        "INVALID_ARGUMENT",
        &["limit"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_demo_gives_the_demo_team_generous_limits_and_keeps_changes() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let demo = cp.seed_demo().await;
    let scope = ["--org", demo.org.as_str(), "--team", demo.team.as_str()];

    let policy = cp.ctl_json(&args(&["get"], &scope, &[])).await;
    assert_eq!(
        limits_of(&policy),
        [
            (RPM, 1_000, 80, 100),
            (TPM, 1_000_000, 80, 100),
            (BUDGET, 50_000_000, 80, 100)
        ]
    );

    cp.ctl_json(&args(&["set"], &scope, &["--rpm", "5000"]))
        .await;
    cp.seed_demo().await;
    let policy = cp.ctl_json(&args(&["get"], &scope, &[])).await;
    assert_eq!(limits_of(&policy)[0], (RPM, 5_000, 80, 100));
    assert_eq!(limits_of(&policy).len(), 3);
}

/// Edges drop a removed limit's counter and count from zero if it is set again; the plane must
/// forget the sessions' figures with it, or it would read the new figures as already counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_limit_forgets_edge_sessions_but_keeps_what_was_spent() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    acme(&cp).await;
    let policy = cp
        .ctl_json(&args(&["set"], TEAM, &["--rpm", "60", "--tpm", "1000"]))
        .await;
    let team_id = Uuid::parse_str(policy["scope_id"].as_str().unwrap()).unwrap();
    for metric in ["requests_per_minute", "tokens_per_minute"] {
        let counter: i64 = sqlx::query_scalar(
            "INSERT INTO limit_counters (scope_kind, scope_id, metric, period_start)
             VALUES ('team', $1, $2, 'epoch') RETURNING id",
        )
        .bind(team_id)
        .bind(metric)
        .fetch_one(db.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO limit_leases (counter_id, session_id, edge_id, granted_total,
                                       consumed_total, expires_at)
             VALUES ($1, 's1', 'e1', 5000, 4990, now() + interval '10 seconds')",
        )
        .bind(counter)
        .execute(db.pool())
        .await
        .unwrap();
        sqlx::query("INSERT INTO limit_window_usage (counter_id, second, units) VALUES ($1, date_trunc('second', now()), 7)")
            .bind(counter)
            .execute(db.pool())
            .await
            .unwrap();
    }

    cp.ctl_json(&args(&["remove"], TEAM, &["--rpm"])).await;

    let leases: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.metric, count(l.session_id) FROM limit_counters c
         LEFT JOIN limit_leases l ON l.counter_id = c.id
         GROUP BY c.metric ORDER BY c.metric",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(
        leases,
        [
            ("requests_per_minute".to_owned(), 0),
            ("tokens_per_minute".to_owned(), 1)
        ],
        "the removed limit's sessions are gone, the other limit's stay, both counters stay"
    );
    let spent: i64 = sqlx::query_scalar("SELECT sum(units)::bigint FROM limit_window_usage")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(spent, 14, "what was spent in the window still counts");
}
