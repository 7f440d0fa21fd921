//! The command-line surface of `tollgatectl`: global options and one subcommand per Admin API
//! call. Values people type (prices, timestamps, model lists) are parsed and validated here,
//! so a bad price is rejected before any request is sent.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::timestamp;
use tollgate_contract::money as usd;

#[derive(Parser)]
#[command(
    name = "tollgatectl",
    version,
    about = "Administer a Tollgate control plane"
)]
pub struct Cli {
    /// gRPC address of the control plane.
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_CONTROL_PLANE",
        default_value = "http://127.0.0.1:8051"
    )]
    pub control_plane: String,

    /// PEM CA that signed the control plane's certificate; required for an https:// URL.
    #[arg(long, global = true, env = "TOLLGATE_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// Admin token (required; sent as `authorization: Bearer <token>`).
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The response message as pretty-printed JSON, field names as in the proto.
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Organisations.
    Orgs {
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// Teams inside an org.
    Teams {
        #[command(subcommand)]
        command: TeamsCommand,
    },
    /// Projects inside a team.
    Projects {
        #[command(subcommand)]
        command: ProjectsCommand,
    },
    /// Users inside an org.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Virtual keys clients use against the edges.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Upstream model providers.
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
    /// Public model names, their provider and prices.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Tokens edges use to join the control plane.
    JoinTokens {
        #[command(subcommand)]
        command: JoinTokensCommand,
    },
    /// Edges that have connected, with the config version each runs (`edges` alone lists them).
    Edges {
        #[command(subcommand)]
        command: Option<EdgesCommand>,
    },
    /// Rate limits, token quotas, budgets and concurrency caps per org, team, project, user or
    /// key, enforced across all edges.
    Limits {
        #[command(subcommand)]
        command: LimitsCommand,
    },
    /// Spend and tokens per team, project, user, model or org, from the hourly rollups (the
    /// range is widened to whole UTC hours).
    Usage {
        /// What each row is.
        #[arg(long = "by", value_enum)]
        group_by: UsageGroupBy,
        /// Start of the range, RFC 3339; the start of the current UTC month when omitted.
        #[arg(long, value_name = "RFC3339", value_parser = timestamp::parse_rfc3339_ms)]
        since: Option<i64>,
        /// End of the range (exclusive), RFC 3339; now when omitted.
        #[arg(long, value_name = "RFC3339", value_parser = timestamp::parse_rfc3339_ms)]
        until: Option<i64>,
        /// Only usage of this org.
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UsageGroupBy {
    Team,
    Project,
    User,
    Model,
    Org,
}

impl UsageGroupBy {
    /// The `group_by` value the Admin API expects.
    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Team => "team",
            Self::Project => "project",
            Self::User => "user",
            Self::Model => "model",
            Self::Org => "org",
        }
    }
}

#[derive(Subcommand)]
pub enum OrgsCommand {
    Create {
        name: String,
        /// IANA time zone of the org's calendar quotas and budgets (e.g. Europe/Berlin); UTC
        /// when omitted.
        #[arg(long, value_name = "ZONE")]
        time_zone: Option<String>,
    },
    List,
    /// Move the org's hourly, daily and monthly quota and budget periods to another time zone.
    SetTimeZone {
        name: String,
        /// IANA time zone, e.g. Europe/Berlin or UTC.
        zone: String,
    },
}

#[derive(Subcommand)]
pub enum TeamsCommand {
    Create {
        #[arg(long)]
        org: String,
        name: String,
    },
    List {
        #[arg(long)]
        org: String,
    },
}

#[derive(Subcommand)]
pub enum ProjectsCommand {
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
        name: String,
    },
    List {
        #[arg(long)]
        org: String,
        /// Only projects of this team.
        #[arg(long)]
        team: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    Create {
        #[arg(long)]
        org: String,
        name: String,
    },
    List {
        #[arg(long)]
        org: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Mint a key; its plaintext is printed once and never again.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
        #[arg(long)]
        project: String,
        /// Owner user in the org.
        #[arg(long)]
        user: Option<String>,
        /// A label to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        /// Comma-separated public model names the key may call; every model when omitted.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// When the key stops working, RFC 3339 (e.g. 2027-01-31T00:00:00Z); never when omitted.
        #[arg(long, value_name = "RFC3339", value_parser = timestamp::parse_rfc3339_ms)]
        expires_at: Option<i64>,
    },
    List {
        /// Only keys of this org.
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke a key by id or by its display prefix (if unique).
    Revoke { key: String },
}

#[derive(Subcommand)]
pub enum ProvidersCommand {
    Create {
        name: String,
        /// mock | openai | azure_openai | anthropic | gemini
        #[arg(long)]
        kind: String,
        /// Where the provider's API lives. Defaults to the public endpoint for openai
        /// (https://api.openai.com/v1), anthropic and gemini; required for azure_openai (the
        /// resource endpoint, https://<resource>.openai.azure.com); none for mock.
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Upstream API key (visible in the process list; prefer --api-key-env).
        #[arg(long, conflicts_with = "api_key_env")]
        api_key: Option<String>,
        /// Read the upstream API key from this environment variable of tollgatectl's own
        /// environment; the control plane stores it encrypted.
        #[arg(long, value_name = "VAR")]
        api_key_env: Option<String>,
        /// azure_openai: the `api-version` (default 2024-10-21); anthropic: the
        /// `anthropic-version` (default 2023-06-01). Refused for other kinds.
        #[arg(long, value_name = "VERSION")]
        api_version: Option<String>,
        /// Total deadline for one upstream call of this provider's models (a model's own
        /// --total-timeout-ms wins); the edge default when omitted.
        #[arg(long)]
        timeout_ms: Option<u32>,
        #[arg(long)]
        mock_latency_ms: Option<u32>,
        #[arg(long)]
        mock_output_tokens: Option<u32>,
        #[arg(long)]
        mock_chunk_interval_ms: Option<u32>,
    },
    List,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    Create {
        name: String,
        #[arg(long)]
        provider: String,
        /// Model name sent upstream; the public name when omitted.
        #[arg(long)]
        upstream_model: Option<String>,
        /// USD per 1M input tokens, e.g. 2.50. Omit both prices for an unpriced model.
        #[arg(
            long,
            value_name = "USD",
            allow_negative_numbers = true,
            value_parser = usd::parse_usd_micros
        )]
        input_price: Option<i64>,
        /// USD per 1M output tokens, e.g. 10.00. Omit both prices for an unpriced model.
        #[arg(
            long,
            value_name = "USD",
            allow_negative_numbers = true,
            value_parser = usd::parse_usd_micros
        )]
        output_price: Option<i64>,
        /// USD per 1M input tokens served from the provider's prompt cache; the input price
        /// when omitted.
        #[arg(
            long,
            value_name = "USD",
            allow_negative_numbers = true,
            value_parser = usd::parse_usd_micros
        )]
        cached_input_price: Option<i64>,
        /// Output cap assumed when a request sets no max_tokens (limits and budgets reserve
        /// prompt + this before the call); 4096 when omitted.
        #[arg(long, value_name = "N")]
        max_output_tokens: Option<u32>,
        #[command(flatten)]
        timeouts: TimeoutArgs,
    },
    List,
    /// Replace the model's upstream deadlines; a phase not given goes back to the edge default.
    /// Calls already running keep the deadlines they started with.
    SetTimeouts {
        name: String,
        #[command(flatten)]
        timeouts: TimeoutArgs,
    },
    /// Start a new price version, now or at a later time; usage already recorded keeps its
    /// old price.
    SetPrice {
        name: String,
        /// USD per 1M input tokens, e.g. 2.50.
        #[arg(
            long,
            value_name = "USD",
            allow_negative_numbers = true,
            value_parser = usd::parse_usd_micros
        )]
        input_price: i64,
        /// USD per 1M output tokens, e.g. 10.00.
        #[arg(
            long,
            value_name = "USD",
            allow_negative_numbers = true,
            value_parser = usd::parse_usd_micros
        )]
        output_price: i64,
        /// USD per 1M input tokens served from the provider's prompt cache; the input price
        /// when omitted.
        #[arg(
            long,
            value_name = "USD",
            allow_negative_numbers = true,
            value_parser = usd::parse_usd_micros
        )]
        cached_input_price: Option<i64>,
        /// When the new price takes effect, RFC 3339 (must not be in the past); now when
        /// omitted. Edges switch to it at that time on their own.
        #[arg(long, value_name = "RFC3339", value_parser = timestamp::parse_rfc3339_ms)]
        effective_from: Option<i64>,
    },
}

/// A model's upstream deadlines by phase, in milliseconds; 0 (the default) means the edge's
/// default for that phase (connect 10 s, first token 60 s, idle 60 s, total: the provider's
/// timeout, else 600 s). At most 86400000 (24 hours) each.
#[derive(Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutArgs {
    /// TCP + TLS connection to the provider.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub connect_timeout_ms: u32,
    /// From sending the request to the first streamed output (streams only; a complete
    /// response is bounded by the total deadline).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub first_token_timeout_ms: u32,
    /// Longest silence between two streamed chunks.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub idle_timeout_ms: u32,
    /// The whole call, body included.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub total_timeout_ms: u32,
}

/// Which org, team, project, user or key a limit belongs to:
/// `--org NAME [--team NAME [--project NAME]]`, `--org NAME --user NAME` or `--key ID_OR_PREFIX`.
/// The control plane checks the combination (the most specific level named decides).
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeArgs {
    #[arg(long, value_name = "NAME")]
    pub org: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub team: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// A key's id or its unique display prefix (e.g. tg_1a2b3c4d).
    #[arg(long, value_name = "ID_OR_PREFIX")]
    pub key: Option<String>,
}

/// New values for `limits set`; only the flags given change. Values are passed to the control
/// plane as typed, so it reports every invalid one with the field it belongs to.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitValueArgs {
    /// Requests per minute (sliding 60-second window).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub rpm: Option<i64>,
    /// Tokens (input + output) per minute (sliding 60-second window).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tpm: Option<i64>,
    /// Tokens per calendar hour in the org's time zone.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tokens_per_hour: Option<i64>,
    /// Tokens per calendar day in the org's time zone.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tokens_per_day: Option<i64>,
    /// Tokens per calendar month in the org's time zone.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tokens_per_month: Option<i64>,
    /// Spend per calendar month in US dollars, e.g. 50 or 12.50 (stored exactly as
    /// micro-dollars).
    #[arg(
        long,
        value_name = "USD",
        allow_negative_numbers = true,
        value_parser = usd::parse_usd_micros
    )]
    pub budget_usd_month: Option<i64>,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_concurrent: Option<i64>,
    /// Percent of each calendar limit (quotas, budget) at which an alert is recorded (default
    /// 80).
    #[arg(long, value_name = "P")]
    pub soft_threshold_pct: Option<u32>,
    /// Percent of each calendar limit from which requests are refused (default 100; above 100
    /// allows overage).
    #[arg(long, value_name = "P")]
    pub hard_threshold_pct: Option<u32>,
}

/// Which limits `limits remove` drops; none given removes every limit of the scope.
#[derive(Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitMetricArgs {
    #[arg(long)]
    pub rpm: bool,
    #[arg(long)]
    pub tpm: bool,
    #[arg(long)]
    pub tokens_per_hour: bool,
    #[arg(long)]
    pub tokens_per_day: bool,
    #[arg(long)]
    pub tokens_per_month: bool,
    /// The monthly budget.
    #[arg(long)]
    pub budget: bool,
    #[arg(long)]
    pub max_concurrent: bool,
}

#[derive(Subcommand)]
pub enum LimitsCommand {
    /// Set limits of a scope; limits not named keep their values.
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        values: LimitValueArgs,
    },
    /// The limits of a scope.
    Get {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Every scope with limits.
    List {
        /// Only limits of this org.
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
    },
    /// Remove the named limits of a scope, or all of them when none is named.
    Remove {
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        metrics: LimitMetricArgs,
    },
    /// Current use of each limit of a scope across all edges.
    Status {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Quota and budget threshold alerts, newest first.
    Alerts {
        /// Only alerts of this org.
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
        /// At most this many (100 when omitted).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum JoinTokensCommand {
    /// Mint a join token; it is printed once and never again.
    Create {
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum EdgesCommand {
    List,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_after_the_subcommand() {
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "orgs",
            "list",
            "--output",
            "json",
            "--admin-token",
            "t",
            "--control-plane",
            "http://127.0.0.1:1",
        ]);
        assert!(
            parsed.is_ok_and(|cli| matches!(cli.output, OutputFormat::Json)
                && cli.admin_token.as_deref() == Some("t")
                && cli.control_plane == "http://127.0.0.1:1")
        );
    }

    #[test]
    fn prices_and_models_are_parsed_at_the_command_line() {
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "keys",
            "create",
            "--org",
            "o",
            "--team",
            "t",
            "--project",
            "p",
            "--models",
            "mock-small,mock-large",
            "--expires-at",
            "2027-01-31T00:00:00Z",
        ]);
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Keys {
                command: KeysCommand::Create { models, expires_at: Some(1_801_353_600_000), .. }
            }) if models == ["mock-small", "mock-large"]
        ));

        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "models",
            "set-price",
            "gpt",
            "--input-price",
            "2.50",
            "--output-price",
            "10",
        ]);
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Models {
                command: ModelsCommand::SetPrice {
                    input_price: 2_500_000,
                    output_price: 10_000_000,
                    ..
                }
            })
        ));
    }

    #[test]
    fn scheduled_and_cached_prices_are_parsed() {
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "models",
            "set-price",
            "gpt",
            "--input-price",
            "2.50",
            "--output-price",
            "10",
            "--cached-input-price",
            "1.25",
            "--effective-from",
            "2027-01-31T00:00:00Z",
        ]);
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Models {
                command: ModelsCommand::SetPrice {
                    cached_input_price: Some(1_250_000),
                    effective_from: Some(1_801_353_600_000),
                    ..
                }
            })
        ));
    }

    #[test]
    fn usage_takes_a_grouping_and_an_optional_range() {
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "usage",
            "--by",
            "project",
            "--since",
            "2027-01-31T00:00:00Z",
            "--org",
            "acme",
        ]);
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Usage {
                group_by: UsageGroupBy::Project,
                since: Some(1_801_353_600_000),
                until: None,
                org: Some(org),
            }) if org == "acme"
        ));
        for bad in [
            vec!["tollgatectl", "usage"],
            vec!["tollgatectl", "usage", "--by", "galaxy"],
            vec![
                "tollgatectl",
                "usage",
                "--by",
                "team",
                "--since",
                "yesterday",
            ],
        ] {
            assert!(Cli::try_parse_from(bad.clone()).is_err(), "{bad:?}");
        }
    }

    fn limits(args: &[&str]) -> Result<LimitsCommand, clap::Error> {
        let argv = ["tollgatectl", "limits"].iter().chain(args).copied();
        Cli::try_parse_from(argv).and_then(|cli| match cli.command {
            Command::Limits { command } => Ok(command),
            _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
        })
    }

    #[test]
    fn limits_set_takes_a_scope_values_and_a_usd_budget() {
        let parsed = limits(&[
            "set",
            "--org",
            "acme",
            "--team",
            "platform",
            "--rpm",
            "600",
            "--tpm",
            "200000",
            "--budget-usd-month",
            "12.50",
            "--max-concurrent",
            "8",
            "--soft-threshold-pct",
            "75",
            "--hard-threshold-pct",
            "110",
        ]);
        let expected_scope = ScopeArgs {
            org: Some("acme".to_owned()),
            team: Some("platform".to_owned()),
            ..ScopeArgs::default()
        };
        let expected_values = LimitValueArgs {
            rpm: Some(600),
            tpm: Some(200_000),
            budget_usd_month: Some(12_500_000),
            max_concurrent: Some(8),
            soft_threshold_pct: Some(75),
            hard_threshold_pct: Some(110),
            ..LimitValueArgs::default()
        };
        assert!(
            matches!(&parsed, Ok(LimitsCommand::Set { scope, values })
                if *scope == expected_scope && *values == expected_values),
            "{:?}",
            parsed.err()
        );
    }

    #[test]
    fn limit_values_reach_the_control_plane_as_typed() {
        // Zero and negative values are the control plane's to refuse, naming the field.
        let parsed = limits(&[
            "set",
            "--key",
            "tg_1a2b3c4d",
            "--rpm",
            "-1",
            "--tokens-per-day",
            "0",
        ]);
        assert!(matches!(
            parsed,
            Ok(LimitsCommand::Set { scope, values })
                if scope.key.as_deref() == Some("tg_1a2b3c4d")
                    && values.rpm == Some(-1)
                    && values.tokens_per_day == Some(0)
        ));
    }

    #[test]
    fn usd_budgets_are_exact_and_bad_ones_rejected_at_the_command_line() {
        for (usd, micros) in [("50", 50_000_000), ("0.10", 100_000), ("0.000001", 1)] {
            let parsed = limits(&["set", "--org", "acme", "--budget-usd-month", usd]);
            assert!(
                matches!(&parsed, Ok(LimitsCommand::Set { values, .. })
                    if values.budget_usd_month == Some(micros)),
                "{usd}"
            );
        }
        for (usd, reason) in [
            ("-5", "must not be negative"),
            ("1.0000001", "more than 6 decimal places"),
            ("$5", "must be a decimal number"),
        ] {
            let parsed = limits(&["set", "--org", "acme", "--budget-usd-month", usd]);
            assert!(
                parsed
                    .as_ref()
                    .is_err_and(|err| err.to_string().contains(reason)),
                "{usd}: {:?}",
                parsed.err().map(|err| err.to_string())
            );
        }
    }

    #[test]
    fn limits_remove_names_metrics_by_flag() {
        let parsed = limits(&[
            "remove", "--org", "acme", "--user", "alice", "--rpm", "--budget",
        ]);
        assert!(matches!(
            parsed,
            Ok(LimitsCommand::Remove { scope, metrics })
                if scope.user.as_deref() == Some("alice")
                    && metrics == LimitMetricArgs { rpm: true, budget: true, ..LimitMetricArgs::default() }
        ));
        let parsed = limits(&["remove", "--org", "acme"]);
        assert!(matches!(
            parsed,
            Ok(LimitsCommand::Remove { metrics, .. }) if metrics == LimitMetricArgs::default()
        ));
    }

    #[test]
    fn limits_read_commands_parse() {
        assert!(matches!(
            limits(&["get", "--org", "acme", "--team", "platform", "--project", "web"]),
            Ok(LimitsCommand::Get { scope }) if scope.project.as_deref() == Some("web")
        ));
        assert!(matches!(
            limits(&["status", "--key", "0190d4b4-0000-7000-8000-000000000000"]),
            Ok(LimitsCommand::Status { scope }) if scope.key.is_some()
        ));
        assert!(matches!(
            limits(&["list", "--org", "acme"]),
            Ok(LimitsCommand::List { org: Some(org) }) if org == "acme"
        ));
        assert!(matches!(
            limits(&["alerts", "--limit", "5"]),
            Ok(LimitsCommand::Alerts {
                org: None,
                limit: Some(5)
            })
        ));
        assert!(limits(&["set", "--org", "acme", "--soft-threshold-pct", "-1"]).is_err());
    }

    #[test]
    fn org_time_zones_and_model_output_caps_parse() {
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "orgs",
            "create",
            "acme",
            "--time-zone",
            "Europe/Berlin",
        ]);
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Orgs { command: OrgsCommand::Create { name, time_zone: Some(zone) } })
                if name == "acme" && zone == "Europe/Berlin"
        ));
        let parsed = Cli::try_parse_from(["tollgatectl", "orgs", "set-time-zone", "acme", "UTC"]);
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Orgs { command: OrgsCommand::SetTimeZone { name, zone } })
                if name == "acme" && zone == "UTC"
        ));
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "models",
            "create",
            "m",
            "--provider",
            "p",
            "--max-output-tokens",
            "8192",
        ]);
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Models {
                command: ModelsCommand::Create {
                    max_output_tokens: Some(8192),
                    ..
                }
            })
        ));
    }

    #[test]
    fn providers_take_a_kind_an_api_version_and_an_optional_base_url() {
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "providers",
            "create",
            "claude",
            "--kind",
            "anthropic",
            "--api-key-env",
            "ANTHROPIC_API_KEY",
            "--api-version",
            "2023-06-01",
        ]);
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Providers {
                command: ProvidersCommand::Create { kind, base_url: None, api_version: Some(version), api_key: None, api_key_env: Some(var), .. }
            }) if kind == "anthropic" && version == "2023-06-01" && var == "ANTHROPIC_API_KEY"
        ));
        let both_keys = Cli::try_parse_from([
            "tollgatectl",
            "providers",
            "create",
            "p",
            "--kind",
            "gemini",
            "--api-key",
            "k",
            "--api-key-env",
            "VAR",
        ]);
        assert!(both_keys.is_err());
    }

    #[test]
    fn model_timeouts_default_to_zero_and_parse_per_phase() {
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "models",
            "create",
            "m",
            "--provider",
            "p",
            "--connect-timeout-ms",
            "5000",
            "--total-timeout-ms",
            "120000",
        ]);
        let expected = TimeoutArgs {
            connect_timeout_ms: 5_000,
            total_timeout_ms: 120_000,
            ..TimeoutArgs::default()
        };
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Models { command: ModelsCommand::Create { timeouts, .. } }) if timeouts == expected
        ));
        let parsed = Cli::try_parse_from([
            "tollgatectl",
            "models",
            "set-timeouts",
            "m",
            "--idle-timeout-ms",
            "15000",
            "--first-token-timeout-ms",
            "30000",
        ]);
        let expected = TimeoutArgs {
            first_token_timeout_ms: 30_000,
            idle_timeout_ms: 15_000,
            ..TimeoutArgs::default()
        };
        assert!(matches!(
            parsed.map(|cli| cli.command),
            Ok(Command::Models { command: ModelsCommand::SetTimeouts { name, timeouts } })
                if name == "m" && timeouts == expected
        ));
        let reset = Cli::try_parse_from(["tollgatectl", "models", "set-timeouts", "m"]);
        assert!(matches!(
            reset.map(|cli| cli.command),
            Ok(Command::Models { command: ModelsCommand::SetTimeouts { timeouts, .. } })
                if timeouts == TimeoutArgs::default()
        ));
        for bad in ["-1", "1.5", "5s"] {
            let parsed = Cli::try_parse_from([
                "tollgatectl",
                "models",
                "set-timeouts",
                "m",
                "--idle-timeout-ms",
                bad,
            ]);
            assert!(parsed.is_err(), "{bad}");
        }
    }

    #[test]
    fn negative_and_overprecise_prices_are_rejected_with_the_reason() {
        for (price, reason) in [
            ("-1", "must not be negative"),
            ("0.0000001", "more than 6 decimal places"),
            ("two", "must be a decimal number"),
        ] {
            let parsed = Cli::try_parse_from([
                "tollgatectl",
                "models",
                "set-price",
                "gpt",
                "--input-price",
                price,
                "--output-price",
                "1",
            ]);
            assert!(
                parsed
                    .as_ref()
                    .is_err_and(|err| err.to_string().contains(reason)),
                "price {price:?} gave {:?}",
                parsed.err().map(|err| err.to_string())
            );
        }
    }
}
