//! A lease call in domain terms, and its conversion from and to the wire: the one place where a
//! `LeaseRequest` is validated (enums known, ids parsed, figures not negative), so the store only
//! ever sees well-formed claims.

use super::grant::ClaimFigures;
use super::{Level, Metric};
use crate::error::AdminError;
use std::collections::HashSet;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

/// Longest edge or session id accepted; both are stored per lease row.
pub const MAX_ID_LEN: usize = 200;
/// More claims than any edge has limits for; bounds the work one call can ask for.
pub const MAX_CLAIMS: usize = 100_000;

/// Which limit a claim or grant is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitKey {
    pub scope: Level,
    pub scope_id: Uuid,
    pub metric: Metric,
}

/// One edge session's figures for one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaim {
    pub key: LimitKey,
    /// Start of the calendar period the figures belong to; 0 before the first grant and for
    /// sliding windows and concurrency.
    pub period_start_ms: i64,
    pub figures: ClaimFigures,
}

/// A validated `LeaseRequest`: claims have distinct keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    pub edge_id: String,
    pub session_id: String,
    pub claims: Vec<LeaseClaim>,
}

/// The plane's answer to one claim whose key has a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    pub key: LimitKey,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub next_period_end_ms: i64,
    pub granted_total: i64,
    pub limit: i64,
    pub used: i64,
    pub reset_ms: i64,
}

impl TryFrom<pb::LimitKey> for LimitKey {
    type Error = AdminError;
    fn try_from(key: pb::LimitKey) -> Result<Self, Self::Error> {
        let scope = pb::LimitScope::try_from(key.scope)
            .ok()
            .and_then(|scope| Level::try_from(scope).ok())
            .ok_or_else(|| {
                AdminError::invalid("key.scope", format!("unknown limit scope {}", key.scope))
            })?;
        let metric = pb::LimitMetric::try_from(key.metric)
            .ok()
            .and_then(|metric| Metric::try_from(metric).ok())
            .ok_or_else(|| {
                AdminError::invalid("key.metric", format!("unknown limit metric {}", key.metric))
            })?;
        let scope_id = Uuid::parse_str(&key.scope_id).map_err(|_| {
            AdminError::invalid("key.scope_id", format!("'{}' is not a UUID", key.scope_id))
        })?;
        Ok(Self {
            scope,
            scope_id,
            metric,
        })
    }
}

impl From<LimitKey> for pb::LimitKey {
    fn from(key: LimitKey) -> Self {
        Self {
            scope: pb::LimitScope::from(key.scope).into(),
            scope_id: key.scope_id.to_string(),
            metric: pb::LimitMetric::from(key.metric).into(),
        }
    }
}

/// Far above any real limit (a quadrillion tokens or a billion dollars), far below where sums
/// of a few thousand figures could overflow an i64.
const MAX_FIGURE: i64 = 1_000_000_000_000_000;

fn not_negative(field: &'static str, value: i64) -> Result<i64, AdminError> {
    if value < 0 {
        Err(AdminError::invalid(field, format!("{value} is negative")))
    } else if value > MAX_FIGURE {
        Err(AdminError::invalid(
            field,
            format!("{value} is above {MAX_FIGURE}"),
        ))
    } else {
        Ok(value)
    }
}

impl TryFrom<pb::LeaseClaim> for LeaseClaim {
    type Error = AdminError;
    fn try_from(claim: pb::LeaseClaim) -> Result<Self, Self::Error> {
        let key = claim
            .key
            .ok_or_else(|| AdminError::invalid("key", "missing"))?
            .try_into()?;
        Ok(Self {
            key,
            period_start_ms: not_negative("period_start_unix_ms", claim.period_start_unix_ms)?,
            figures: ClaimFigures {
                granted_total: not_negative("granted_total", claim.granted_total)?,
                consumed_total: not_negative("consumed_total", claim.consumed_total)?,
                reserved: not_negative("reserved", claim.reserved)?,
                want_available: not_negative("want_available", claim.want_available)?,
            },
        })
    }
}

fn session_text(field: &'static str, value: String) -> Result<String, AdminError> {
    if value.trim().is_empty() {
        return Err(AdminError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(AdminError::invalid(
            field,
            format!("longer than {MAX_ID_LEN} bytes"),
        ));
    }
    Ok(value)
}

impl TryFrom<pb::LeaseRequest> for LeaseRequest {
    type Error = AdminError;
    /// Errors name the field as `claims.<field>` and say which claim (by index) was bad.
    fn try_from(request: pb::LeaseRequest) -> Result<Self, Self::Error> {
        let edge_id = session_text("edge_id", request.edge_id)?;
        let session_id = session_text("session_id", request.session_id)?;
        if request.claims.len() > MAX_CLAIMS {
            return Err(AdminError::invalid(
                "claims",
                format!("more than {MAX_CLAIMS} claims"),
            ));
        }
        let mut seen = HashSet::with_capacity(request.claims.len());
        let mut claims = Vec::with_capacity(request.claims.len());
        for (index, claim) in request.claims.into_iter().enumerate() {
            let claim = LeaseClaim::try_from(claim).map_err(|err| match err {
                AdminError::InvalidArgument { field, reason } => AdminError::InvalidArgument {
                    field: claim_field(field),
                    reason: format!("claim {index}: {reason}"),
                },
                other => other,
            })?;
            if !seen.insert(claim.key) {
                return Err(AdminError::invalid(
                    "claims.key",
                    format!("claim {index}: the same key is claimed twice"),
                ));
            }
            claims.push(claim);
        }
        Ok(Self {
            edge_id,
            session_id,
            claims,
        })
    }
}

/// The full path of a claim field, for INVALID_ARGUMENT messages.
fn claim_field(field: &'static str) -> &'static str {
    match field {
        "key" => "claims.key",
        "key.scope" => "claims.key.scope",
        "key.metric" => "claims.key.metric",
        "key.scope_id" => "claims.key.scope_id",
        "period_start_unix_ms" => "claims.period_start_unix_ms",
        "granted_total" => "claims.granted_total",
        "consumed_total" => "claims.consumed_total",
        "reserved" => "claims.reserved",
        "want_available" => "claims.want_available",
        _ => "claims",
    }
}

impl From<LeaseGrant> for pb::LeaseGrant {
    fn from(grant: LeaseGrant) -> Self {
        Self {
            key: Some(grant.key.into()),
            period_start_unix_ms: grant.period_start_ms,
            period_end_unix_ms: grant.period_end_ms,
            next_period_end_unix_ms: grant.next_period_end_ms,
            granted_total: grant.granted_total,
            limit: grant.limit,
            used: grant.used,
            reset_ms: grant.reset_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wire_claim() -> pb::LeaseClaim {
        pb::LeaseClaim {
            key: Some(pb::LimitKey {
                scope: pb::LimitScope::Team.into(),
                scope_id: "6f1c1f9e-2d7e-4a53-9a43-5b1f0c0e8a11".into(),
                metric: pb::LimitMetric::TokensPerDay.into(),
            }),
            period_start_unix_ms: 0,
            granted_total: 10,
            consumed_total: 5,
            reserved: 1,
            want_available: 20,
        }
    }

    fn request(claims: Vec<pb::LeaseClaim>) -> pb::LeaseRequest {
        pb::LeaseRequest {
            edge_id: "edge-1".into(),
            session_id: "s-1".into(),
            claims,
        }
    }

    fn field_of(result: Result<LeaseRequest, AdminError>) -> (&'static str, String) {
        match result.unwrap_err() {
            AdminError::InvalidArgument { field, reason } => (field, reason),
            other => panic!("not invalid argument: {other}"),
        }
    }

    #[test]
    fn a_valid_request_converts_and_a_key_round_trips() {
        let request = LeaseRequest::try_from(request(vec![wire_claim()])).unwrap();
        assert_eq!(request.claims.len(), 1);
        let claim = &request.claims[0];
        assert_eq!(claim.key.scope, Level::Team);
        assert_eq!(claim.key.metric, Metric::TokensPerDay);
        assert_eq!(claim.figures.want_available, 20);
        assert_eq!(
            pb::LimitKey::from(claim.key),
            wire_claim().key.unwrap(),
            "the grant names the key exactly as claimed"
        );
    }

    #[test]
    fn bad_claims_name_the_field_and_the_claim() {
        let mut unknown_metric = wire_claim();
        unknown_metric.key.as_mut().unwrap().metric = 99;
        let (field, reason) = field_of(request(vec![wire_claim(), unknown_metric]).try_into());
        assert_eq!(field, "claims.key.metric");
        assert!(reason.starts_with("claim 1:"), "{reason}");

        let mut unspecified = wire_claim();
        unspecified.key.as_mut().unwrap().scope = 0;
        assert_eq!(
            field_of(request(vec![unspecified]).try_into()).0,
            "claims.key.scope"
        );

        let mut bad_uuid = wire_claim();
        bad_uuid.key.as_mut().unwrap().scope_id = "team-1".into();
        assert_eq!(
            field_of(request(vec![bad_uuid]).try_into()).0,
            "claims.key.scope_id"
        );

        let mut negative = wire_claim();
        negative.consumed_total = -1;
        assert_eq!(
            field_of(request(vec![negative]).try_into()).0,
            "claims.consumed_total"
        );

        let mut no_key = wire_claim();
        no_key.key = None;
        assert_eq!(field_of(request(vec![no_key]).try_into()).0, "claims.key");

        assert_eq!(
            field_of(request(vec![wire_claim(), wire_claim()]).try_into()).0,
            "claims.key"
        );
    }

    #[test]
    fn edge_and_session_ids_are_required() {
        let mut no_session = request(vec![]);
        no_session.session_id = " ".into();
        assert_eq!(field_of(no_session.try_into()).0, "session_id");
        let mut long_edge = request(vec![]);
        long_edge.edge_id = "e".repeat(MAX_ID_LEN + 1);
        assert_eq!(field_of(long_edge.try_into()).0, "edge_id");
    }
}
