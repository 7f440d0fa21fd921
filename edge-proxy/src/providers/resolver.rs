//! DNS resolution for upstream calls that applies the contract's address policy to every
//! address a name resolves to. The admin API checks a base URL as written; this catches a name
//! that resolves to a link-local or metadata address (or is re-pointed there later), so a
//! provider entry cannot be used to read instance credentials.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;

use tollgate_contract::address::is_forbidden_ip;

/// The resolved addresses minus forbidden ones; an error when none is left.
fn allowed(
    host: &str,
    addresses: impl Iterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, String> {
    let allowed: Vec<SocketAddr> = addresses
        .filter(|address| !is_forbidden_ip(address.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(format!(
            "'{host}' resolves to no address the gateway may call (link-local and cloud metadata addresses are refused)"
        ));
    }
    Ok(allowed)
}

#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host.as_str(), 0)).await?;
            match allowed(&host, addresses) {
                Ok(addresses) => Ok(Box::new(addresses.into_iter()) as Addrs),
                Err(reason) => {
                    tracing::warn!(%host, "refused to call an upstream: {reason}");
                    Err(reason.into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 443)
    }

    #[test]
    fn forbidden_addresses_are_dropped_and_alone_refused() {
        let mixed = allowed(
            "api.example",
            [at("169.254.169.254"), at("104.18.6.192")].into_iter(),
        );
        assert_eq!(mixed.unwrap(), vec![at("104.18.6.192")]);
        let only_metadata = allowed(
            "evil.example",
            [at("169.254.169.254"), at("::ffff:a9fe:a9fe")].into_iter(),
        );
        assert!(only_metadata.unwrap_err().contains("evil.example"));
    }

    #[tokio::test]
    async fn local_names_still_resolve() {
        let addresses: Vec<SocketAddr> = GuardedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(
            addresses.iter().all(|address| address.ip().is_loopback()),
            "{addresses:?}"
        );
        assert!(!addresses.is_empty());
    }
}
