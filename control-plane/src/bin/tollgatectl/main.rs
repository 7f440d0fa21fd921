//! `tollgatectl`: the admin CLI over the control plane's gRPC Admin API. Every call carries the
//! admin token as `authorization: Bearer <token>`; failures print the gRPC status code and
//! message (`error: ALREADY_EXISTS: ...`) and exit 1.

#![allow(clippy::print_stdout)]

mod cli;
mod output;
mod table;
mod timestamp;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use serde::Serialize;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tollgate_proto::v1::{
    CreateJoinTokenRequest, CreateModelRequest, CreateOrgRequest, CreateProjectRequest,
    CreateProviderRequest, CreateTeamRequest, CreateUserRequest, CreateVirtualKeyRequest,
    GetLimitsRequest, LimitMetric, LimitScopeRef, LimitStatusRequest, LimitValues,
    ListEdgesRequest, ListLimitAlertsRequest, ListLimitsRequest, ListModelsRequest,
    ListOrgsRequest, ListProjectsRequest, ListProvidersRequest, ListTeamsRequest, ListUsersRequest,
    ListVirtualKeysRequest, MockSettings, ModelTimeouts, RemoveLimitsRequest,
    RevokeVirtualKeyRequest, SetLimitsRequest, SetModelPriceRequest, SetModelTimeoutsRequest,
    SetOrgTimeZoneRequest, UsageReportRequest,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::timestamp::now_unix_ms;

use crate::cli::{
    Cli, Command, EdgesCommand, JoinTokensCommand, KeysCommand, LimitMetricArgs, LimitsCommand,
    ModelsCommand, OrgsCommand, OutputFormat, ProjectsCommand, ProvidersCommand, ScopeArgs,
    TeamsCommand, TimeoutArgs, UsageGroupBy, UsersCommand,
};

/// How long to wait for the TCP/HTTP2 connection to the control plane.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one admin call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Adds the admin token to every call.
#[derive(Clone)]
struct AdminAuth {
    authorization: MetadataValue<Ascii>,
}

impl Interceptor for AdminAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        Ok(request)
    }
}

type AdminClient = AdminServiceClient<InterceptedService<Channel, AdminAuth>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let admin_token = cli
        .admin_token
        .filter(|token| !token.trim().is_empty())
        .ok_or_else(|| {
            anyhow!("an admin token is required: pass --admin-token or set TOLLGATE_ADMIN_TOKEN")
        })?;
    let mut client = connect(&cli.control_plane, cli.ca_cert.as_deref(), &admin_token).await?;
    let client = &mut client;
    let format = cli.output;
    match cli.command {
        Command::Orgs { command } => orgs(client, format, command).await,
        Command::Teams { command } => teams(client, format, command).await,
        Command::Projects { command } => projects(client, format, command).await,
        Command::Users { command } => users(client, format, command).await,
        Command::Keys { command } => keys(client, format, command).await,
        Command::Providers { command } => providers(client, format, command).await,
        Command::Models { command } => models(client, format, command).await,
        Command::JoinTokens { command } => join_tokens(client, format, command).await,
        Command::Edges { command } => {
            edges(client, format, command.unwrap_or(EdgesCommand::List)).await
        }
        Command::Limits { command } => limits(client, format, command).await,
        Command::Usage {
            group_by,
            since,
            until,
            org,
        } => usage(client, format, group_by, since, until, org).await,
    }
}

/// The admin token travels on this link: an https:// URL needs the CA to verify the plane, and
/// a CA given for an http:// URL is an error rather than silently unused.
async fn connect(
    url: &str,
    ca_cert: Option<&std::path::Path>,
    admin_token: &str,
) -> anyhow::Result<AdminClient> {
    let authorization: MetadataValue<Ascii> = format!("Bearer {admin_token}")
        .parse()
        .map_err(|_| anyhow!("the admin token contains characters not allowed in a gRPC header"))?;
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid control plane URL '{url}'"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    match (url.starts_with("https://"), ca_cert) {
        (true, Some(path)) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem));
            endpoint = endpoint.tls_config(tls)?;
        }
        (true, None) => bail!(
            "{url} is https:// but no CA to trust is configured: pass --ca-cert (or TOLLGATE_CA_CERT)"
        ),
        (false, Some(_)) => bail!("--ca-cert is set but {url} is plain http://; use https://"),
        (false, None) => {}
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach control plane at {url}"))?;
    Ok(AdminServiceClient::with_interceptor(
        channel,
        AdminAuth { authorization },
    ))
}

async fn orgs(
    client: &mut AdminClient,
    format: OutputFormat,
    command: OrgsCommand,
) -> anyhow::Result<()> {
    match command {
        OrgsCommand::Create { name, time_zone } => {
            let request = CreateOrgRequest {
                name,
                time_zone: time_zone.unwrap_or_default(),
            };
            let org = reply(client.create_org(request).await)?;
            emit(format, &org, |org| output::orgs(std::slice::from_ref(org)))
        }
        OrgsCommand::List => {
            let list = reply(client.list_orgs(ListOrgsRequest {}).await)?;
            emit(format, &list, |list| output::orgs(&list.orgs))
        }
        OrgsCommand::SetTimeZone { name, zone } => {
            let request = SetOrgTimeZoneRequest {
                org: name,
                time_zone: zone,
            };
            let org = reply(client.set_org_time_zone(request).await)?;
            emit(format, &org, |org| output::orgs(std::slice::from_ref(org)))
        }
    }
}

async fn teams(
    client: &mut AdminClient,
    format: OutputFormat,
    command: TeamsCommand,
) -> anyhow::Result<()> {
    match command {
        TeamsCommand::Create { org, name } => {
            let team = reply(client.create_team(CreateTeamRequest { org, name }).await)?;
            emit(format, &team, |team| {
                output::teams(std::slice::from_ref(team))
            })
        }
        TeamsCommand::List { org } => {
            let list = reply(client.list_teams(ListTeamsRequest { org }).await)?;
            emit(format, &list, |list| output::teams(&list.teams))
        }
    }
}

async fn projects(
    client: &mut AdminClient,
    format: OutputFormat,
    command: ProjectsCommand,
) -> anyhow::Result<()> {
    match command {
        ProjectsCommand::Create { org, team, name } => {
            let request = CreateProjectRequest { org, team, name };
            let project = reply(client.create_project(request).await)?;
            emit(format, &project, |project| {
                output::projects(std::slice::from_ref(project))
            })
        }
        ProjectsCommand::List { org, team } => {
            let request = ListProjectsRequest {
                org,
                team: team.unwrap_or_default(),
            };
            let list = reply(client.list_projects(request).await)?;
            emit(format, &list, |list| output::projects(&list.projects))
        }
    }
}

async fn users(
    client: &mut AdminClient,
    format: OutputFormat,
    command: UsersCommand,
) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { org, name } => {
            let user = reply(client.create_user(CreateUserRequest { org, name }).await)?;
            emit(format, &user, |user| {
                output::users(std::slice::from_ref(user))
            })
        }
        UsersCommand::List { org } => {
            let list = reply(client.list_users(ListUsersRequest { org }).await)?;
            emit(format, &list, |list| output::users(&list.users))
        }
    }
}

async fn keys(
    client: &mut AdminClient,
    format: OutputFormat,
    command: KeysCommand,
) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            org,
            team,
            project,
            user,
            name,
            models,
            expires_at,
        } => {
            let request = CreateVirtualKeyRequest {
                org,
                team,
                project,
                user: user.unwrap_or_default(),
                name: name.unwrap_or_default(),
                allowed_models: models
                    .into_iter()
                    .map(|model| model.trim().to_owned())
                    .filter(|model| !model.is_empty())
                    .collect(),
                expires_at_unix_ms: expires_at.unwrap_or(0),
            };
            let created = reply(client.create_virtual_key(request).await)?;
            emit(format, &created, output::created_key)
        }
        KeysCommand::List { org } => {
            let request = ListVirtualKeysRequest {
                org: org.unwrap_or_default(),
            };
            let list = reply(client.list_virtual_keys(request).await)?;
            emit(format, &list, |list| output::keys(&list.keys))
        }
        KeysCommand::Revoke { key } => {
            let revoked = reply(
                client
                    .revoke_virtual_key(RevokeVirtualKeyRequest { key })
                    .await,
            )?;
            emit(format, &revoked, |key| {
                output::keys(std::slice::from_ref(key))
            })
        }
    }
}

async fn providers(
    client: &mut AdminClient,
    format: OutputFormat,
    command: ProvidersCommand,
) -> anyhow::Result<()> {
    match command {
        ProvidersCommand::Create {
            name,
            kind,
            base_url,
            api_key,
            api_key_env,
            api_version,
            timeout_ms,
            mock_latency_ms,
            mock_output_tokens,
            mock_chunk_interval_ms,
        } => {
            let api_key = match (api_key, api_key_env) {
                (Some(api_key), _) => api_key,
                (None, Some(var)) => read_api_key_env(&var)?,
                (None, None) => String::new(),
            };
            let mock_given = mock_latency_ms.is_some()
                || mock_output_tokens.is_some()
                || mock_chunk_interval_ms.is_some();
            // Unset means "the server's defaults", so send settings only when some were given.
            let mock = if mock_given {
                Some(MockSettings {
                    latency_ms: mock_latency_ms.unwrap_or(0),
                    output_tokens: mock_output_tokens.unwrap_or(0),
                    chunk_interval_ms: mock_chunk_interval_ms.unwrap_or(0),
                })
            } else {
                None
            };
            let request = CreateProviderRequest {
                name,
                kind,
                base_url: base_url.unwrap_or_default(),
                api_key,
                request_timeout_ms: timeout_ms.unwrap_or(0),
                mock,
                api_version: api_version.unwrap_or_default(),
            };
            let provider = reply(client.create_provider(request).await)?;
            emit(format, &provider, |provider| {
                output::providers(std::slice::from_ref(provider))
            })
        }
        ProvidersCommand::List => {
            let list = reply(client.list_providers(ListProvidersRequest {}).await)?;
            emit(format, &list, |list| output::providers(&list.providers))
        }
    }
}

/// Reads the provider API key from the CLI's own environment, so it never appears in argv.
fn read_api_key_env(var: &str) -> anyhow::Result<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err(anyhow!(
            "environment variable {var} (from --api-key-env) is empty"
        )),
        Err(_) => Err(anyhow!(
            "environment variable {var} (from --api-key-env) is not set or not valid UTF-8"
        )),
    }
}

async fn models(
    client: &mut AdminClient,
    format: OutputFormat,
    command: ModelsCommand,
) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Create {
            name,
            provider,
            upstream_model,
            input_price,
            output_price,
            cached_input_price,
            max_output_tokens,
            timeouts,
        } => {
            let request = CreateModelRequest {
                name,
                provider,
                upstream_model: upstream_model.unwrap_or_default(),
                input_price_micros_per_mtok: input_price,
                output_price_micros_per_mtok: output_price,
                cached_input_price_micros_per_mtok: cached_input_price,
                max_output_tokens: max_output_tokens.unwrap_or(0),
                timeouts: Some(model_timeouts(timeouts)),
            };
            let model = reply(client.create_model(request).await)?;
            emit(format, &model, |model| {
                output::models(std::slice::from_ref(model))
            })
        }
        ModelsCommand::List => {
            let list = reply(client.list_models(ListModelsRequest {}).await)?;
            emit(format, &list, |list| output::models(&list.models))
        }
        ModelsCommand::SetPrice {
            name,
            input_price,
            output_price,
            cached_input_price,
            effective_from,
        } => {
            let request = SetModelPriceRequest {
                model: name,
                input_price_micros_per_mtok: input_price,
                output_price_micros_per_mtok: output_price,
                cached_input_price_micros_per_mtok: cached_input_price,
                effective_from_unix_ms: effective_from.unwrap_or(0),
            };
            let model = reply(client.set_model_price(request).await)?;
            emit(format, &model, |model| {
                output::models(std::slice::from_ref(model))
            })
        }
        ModelsCommand::SetTimeouts { name, timeouts } => {
            let request = SetModelTimeoutsRequest {
                model: name,
                timeouts: Some(model_timeouts(timeouts)),
            };
            let model = reply(client.set_model_timeouts(request).await)?;
            emit(format, &model, |model| {
                output::models(std::slice::from_ref(model))
            })
        }
    }
}

/// The flags as typed; the control plane checks the bounds and names a bad field.
fn model_timeouts(flags: TimeoutArgs) -> ModelTimeouts {
    ModelTimeouts {
        connect_ms: flags.connect_timeout_ms,
        first_token_ms: flags.first_token_timeout_ms,
        idle_ms: flags.idle_timeout_ms,
        total_ms: flags.total_timeout_ms,
    }
}

async fn join_tokens(
    client: &mut AdminClient,
    format: OutputFormat,
    command: JoinTokensCommand,
) -> anyhow::Result<()> {
    match command {
        JoinTokensCommand::Create { name } => {
            let request = CreateJoinTokenRequest {
                name: name.unwrap_or_default(),
            };
            let created = reply(client.create_join_token(request).await)?;
            emit(format, &created, output::created_join_token)
        }
    }
}

async fn edges(
    client: &mut AdminClient,
    format: OutputFormat,
    command: EdgesCommand,
) -> anyhow::Result<()> {
    match command {
        EdgesCommand::List => {
            let list = reply(client.list_edges(ListEdgesRequest {}).await)?;
            emit(format, &list, output::edges)
        }
    }
}

async fn limits(
    client: &mut AdminClient,
    format: OutputFormat,
    command: LimitsCommand,
) -> anyhow::Result<()> {
    match command {
        LimitsCommand::Set { scope, values } => {
            let request = SetLimitsRequest {
                scope: Some(scope_ref(scope)),
                values: Some(LimitValues {
                    requests_per_minute: values.rpm,
                    tokens_per_minute: values.tpm,
                    tokens_per_hour: values.tokens_per_hour,
                    tokens_per_day: values.tokens_per_day,
                    tokens_per_month: values.tokens_per_month,
                    budget_micros_per_month: values.budget_usd_month,
                    max_concurrent_requests: values.max_concurrent,
                }),
                soft_threshold_pct: values.soft_threshold_pct,
                hard_threshold_pct: values.hard_threshold_pct,
            };
            let policy = reply(client.set_limits(request).await)?;
            emit(format, &policy, output::limit_policy)
        }
        LimitsCommand::Get { scope } => {
            let request = GetLimitsRequest {
                scope: Some(scope_ref(scope)),
            };
            let policy = reply(client.get_limits(request).await)?;
            emit(format, &policy, output::limit_policy)
        }
        LimitsCommand::List { org } => {
            let request = ListLimitsRequest {
                org: org.unwrap_or_default(),
            };
            let list = reply(client.list_limits(request).await)?;
            emit(format, &list, |list| output::limit_policies(&list.policies))
        }
        LimitsCommand::Remove { scope, metrics } => {
            let request = RemoveLimitsRequest {
                scope: Some(scope_ref(scope)),
                metrics: metric_list(metrics)
                    .into_iter()
                    .map(|metric| metric as i32)
                    .collect(),
            };
            let policy = reply(client.remove_limits(request).await)?;
            emit(format, &policy, output::limit_policy)
        }
        LimitsCommand::Status { scope } => {
            let request = LimitStatusRequest {
                scope: Some(scope_ref(scope)),
            };
            let status = reply(client.limit_status(request).await)?;
            emit(format, &status, output::limit_status)
        }
        LimitsCommand::Alerts { org, limit } => {
            let request = ListLimitAlertsRequest {
                org: org.unwrap_or_default(),
                limit: limit.unwrap_or(0),
            };
            let list = reply(client.list_limit_alerts(request).await)?;
            emit(format, &list, |list| output::limit_alerts(&list.alerts))
        }
    }
}

fn scope_ref(scope: ScopeArgs) -> LimitScopeRef {
    LimitScopeRef {
        org: scope.org.unwrap_or_default(),
        team: scope.team.unwrap_or_default(),
        project: scope.project.unwrap_or_default(),
        user: scope.user.unwrap_or_default(),
        key: scope.key.unwrap_or_default(),
    }
}

/// The metrics named by `limits remove` flags, in the proto's order.
fn metric_list(flags: LimitMetricArgs) -> Vec<LimitMetric> {
    [
        (flags.rpm, LimitMetric::RequestsPerMinute),
        (flags.tpm, LimitMetric::TokensPerMinute),
        (flags.tokens_per_hour, LimitMetric::TokensPerHour),
        (flags.tokens_per_day, LimitMetric::TokensPerDay),
        (flags.tokens_per_month, LimitMetric::TokensPerMonth),
        (flags.budget, LimitMetric::BudgetMicrosPerMonth),
        (flags.max_concurrent, LimitMetric::ConcurrentRequests),
    ]
    .into_iter()
    .filter_map(|(named, metric)| named.then_some(metric))
    .collect()
}

async fn usage(
    client: &mut AdminClient,
    format: OutputFormat,
    group_by: UsageGroupBy,
    since: Option<i64>,
    until: Option<i64>,
    org: Option<String>,
) -> anyhow::Result<()> {
    let request = UsageReportRequest {
        group_by: group_by.as_wire().to_owned(),
        since_unix_ms: since.unwrap_or_else(|| timestamp::start_of_utc_month(now_unix_ms())),
        until_unix_ms: until.unwrap_or(0),
        org: org.unwrap_or_default(),
    };
    let report = reply(client.usage_report(request).await)?;
    emit(format, &report, |report| {
        output::usage_report(report, group_by.as_wire())
    })
}

/// Unwraps a gRPC reply, turning a failure into `CODE_NAME: message`.
fn reply<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| anyhow!("{}: {}", code_name(status.code()), status.message()))
}

/// Prints a response as JSON (the proto message as is) or as the given table.
fn emit<T: Serialize>(
    format: OutputFormat,
    response: &T,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => {
            let json =
                serde_json::to_string_pretty(response).context("encoding the response as JSON")?;
            println!("{json}");
        }
        OutputFormat::Table => print!("{}", table(response)),
    }
    Ok(())
}

/// The canonical gRPC name of a status code, as other gRPC tools print it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_flags_become_proto_metrics() {
        let flags = LimitMetricArgs {
            rpm: true,
            budget: true,
            max_concurrent: true,
            ..LimitMetricArgs::default()
        };
        assert_eq!(
            metric_list(flags),
            [
                LimitMetric::RequestsPerMinute,
                LimitMetric::BudgetMicrosPerMonth,
                LimitMetric::ConcurrentRequests
            ]
        );
        assert!(metric_list(LimitMetricArgs::default()).is_empty());
    }

    #[test]
    fn status_codes_print_in_screaming_snake_case() {
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
        let status = tonic::Status::already_exists("org 'acme' already exists");
        let err = reply::<()>(Err(status)).err().map(|err| format!("{err:#}"));
        assert_eq!(
            err.as_deref(),
            Some("ALREADY_EXISTS: org 'acme' already exists")
        );
    }
}
