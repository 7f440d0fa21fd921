//! The gRPC admin API. Handlers validate, write in one transaction with an audit row and a
//! config version bump, and return domain results that `error.rs` maps to a status.

pub(crate) mod audit;
mod catalog;
mod edges;
mod keys;
mod limits;
mod provider_kind;
mod reports;
mod tenancy;
pub mod validate;

use crate::auth::AdminIdentity;
use crate::crypto::MasterKey;
use crate::error::AdminError;
use sqlx::PgPool;
use tollgate_proto::v1 as pb;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct AdminApi {
    pool: PgPool,
    master_key: MasterKey,
}

impl AdminApi {
    pub fn new(pool: PgPool, master_key: MasterKey) -> Self {
        Self { pool, master_key }
    }
}

fn actor<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<AdminIdentity>()
        .map_or_else(|| "unknown".to_owned(), |identity| identity.actor.clone())
}

fn respond<T>(result: Result<T, AdminError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    async fn create_org(
        &self,
        r: Request<pb::CreateOrgRequest>,
    ) -> Result<Response<pb::Org>, Status> {
        let actor = actor(&r);
        respond(AdminApi::create_org(self, &actor, r.into_inner()).await)
    }

    async fn list_orgs(
        &self,
        _: Request<pb::ListOrgsRequest>,
    ) -> Result<Response<pb::ListOrgsResponse>, Status> {
        respond(AdminApi::list_orgs(self).await)
    }

    async fn create_team(
        &self,
        r: Request<pb::CreateTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let actor = actor(&r);
        respond(AdminApi::create_team(self, &actor, r.into_inner()).await)
    }

    async fn list_teams(
        &self,
        r: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        respond(AdminApi::list_teams(self, r.into_inner()).await)
    }

    async fn create_project(
        &self,
        r: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let actor = actor(&r);
        respond(AdminApi::create_project(self, &actor, r.into_inner()).await)
    }

    async fn list_projects(
        &self,
        r: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        respond(AdminApi::list_projects(self, r.into_inner()).await)
    }

    async fn create_user(
        &self,
        r: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let actor = actor(&r);
        respond(AdminApi::create_user(self, &actor, r.into_inner()).await)
    }

    async fn list_users(
        &self,
        r: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        respond(AdminApi::list_users(self, r.into_inner()).await)
    }

    async fn create_virtual_key(
        &self,
        r: Request<pb::CreateVirtualKeyRequest>,
    ) -> Result<Response<pb::CreateVirtualKeyResponse>, Status> {
        let actor = actor(&r);
        respond(AdminApi::create_virtual_key(self, &actor, r.into_inner()).await)
    }

    async fn list_virtual_keys(
        &self,
        r: Request<pb::ListVirtualKeysRequest>,
    ) -> Result<Response<pb::ListVirtualKeysResponse>, Status> {
        respond(AdminApi::list_virtual_keys(self, r.into_inner()).await)
    }

    async fn revoke_virtual_key(
        &self,
        r: Request<pb::RevokeVirtualKeyRequest>,
    ) -> Result<Response<pb::VirtualKey>, Status> {
        let actor = actor(&r);
        respond(AdminApi::revoke_virtual_key(self, &actor, r.into_inner()).await)
    }

    async fn create_provider(
        &self,
        r: Request<pb::CreateProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let actor = actor(&r);
        respond(AdminApi::create_provider(self, &actor, r.into_inner()).await)
    }

    async fn list_providers(
        &self,
        _: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        respond(AdminApi::list_providers(self).await)
    }

    async fn create_model(
        &self,
        r: Request<pb::CreateModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let actor = actor(&r);
        respond(AdminApi::create_model(self, &actor, r.into_inner()).await)
    }

    async fn list_models(
        &self,
        _: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        respond(AdminApi::list_models(self).await)
    }

    async fn set_model_price(
        &self,
        r: Request<pb::SetModelPriceRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let actor = actor(&r);
        respond(AdminApi::set_model_price(self, &actor, r.into_inner()).await)
    }

    async fn set_model_timeouts(
        &self,
        r: Request<pb::SetModelTimeoutsRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let actor = actor(&r);
        respond(AdminApi::set_model_timeouts(self, &actor, r.into_inner()).await)
    }

    async fn create_join_token(
        &self,
        r: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
        let actor = actor(&r);
        respond(AdminApi::create_join_token(self, &actor, r.into_inner()).await)
    }

    async fn list_edges(
        &self,
        _: Request<pb::ListEdgesRequest>,
    ) -> Result<Response<pb::ListEdgesResponse>, Status> {
        respond(AdminApi::list_edges(self).await)
    }

    async fn usage_report(
        &self,
        r: Request<pb::UsageReportRequest>,
    ) -> Result<Response<pb::UsageReportResponse>, Status> {
        respond(AdminApi::usage_report(self, r.into_inner()).await)
    }

    async fn set_org_time_zone(
        &self,
        r: Request<pb::SetOrgTimeZoneRequest>,
    ) -> Result<Response<pb::Org>, Status> {
        let actor = actor(&r);
        respond(AdminApi::set_org_time_zone(self, &actor, r.into_inner()).await)
    }

    async fn set_limits(
        &self,
        r: Request<pb::SetLimitsRequest>,
    ) -> Result<Response<pb::LimitPolicy>, Status> {
        let actor = actor(&r);
        respond(AdminApi::set_limits(self, &actor, r.into_inner()).await)
    }

    async fn get_limits(
        &self,
        r: Request<pb::GetLimitsRequest>,
    ) -> Result<Response<pb::LimitPolicy>, Status> {
        respond(AdminApi::get_limits(self, r.into_inner()).await)
    }

    async fn list_limits(
        &self,
        r: Request<pb::ListLimitsRequest>,
    ) -> Result<Response<pb::ListLimitsResponse>, Status> {
        respond(AdminApi::list_limits(self, r.into_inner()).await)
    }

    async fn remove_limits(
        &self,
        r: Request<pb::RemoveLimitsRequest>,
    ) -> Result<Response<pb::LimitPolicy>, Status> {
        let actor = actor(&r);
        respond(AdminApi::remove_limits(self, &actor, r.into_inner()).await)
    }

    async fn limit_status(
        &self,
        r: Request<pb::LimitStatusRequest>,
    ) -> Result<Response<pb::LimitStatusResponse>, Status> {
        respond(AdminApi::limit_status(self, r.into_inner()).await)
    }

    async fn list_limit_alerts(
        &self,
        r: Request<pb::ListLimitAlertsRequest>,
    ) -> Result<Response<pb::ListLimitAlertsResponse>, Status> {
        respond(AdminApi::list_limit_alerts(self, r.into_inner()).await)
    }
}
