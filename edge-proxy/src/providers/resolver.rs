//! DNS resolution for upstream calls that refuses link-local, unspecified and cloud-metadata
//! addresses. The admin API checks a base URL as written; this catches a name that resolves
//! there (or is re-pointed later), so a provider entry cannot be used to read instance
//! credentials. Loopback and private ranges stay allowed: local model servers live there.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// AWS's IPv6 instance-metadata endpoint (inside the private fd00::/8 range, so it is named).
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Addresses no upstream may live at.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4 == Ipv4Addr::UNSPECIFIED,
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::UNSPECIFIED
                || v6 == AWS_METADATA_V6
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// Whether a URL names a forbidden address literally (names are checked when resolved).
pub fn names_forbidden_address(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_forbidden(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_forbidden(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) | None => false,
    }
}

/// The resolved addresses minus forbidden ones; an error when none is left.
fn allowed(
    host: &str,
    addresses: impl Iterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, String> {
    let allowed: Vec<SocketAddr> = addresses
        .filter(|address| !is_forbidden(address.ip()))
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
    fn metadata_and_link_local_addresses_are_dropped_and_alone_refused() {
        for ip in [
            "169.254.169.254",
            "0.0.0.0",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.8",
            "192.168.1.2",
            "::1",
            "fd00::1",
            "104.18.6.192",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        let mixed = allowed(
            "api.example",
            [at("169.254.169.254"), at("104.18.6.192")].into_iter(),
        );
        assert_eq!(mixed.unwrap(), vec![at("104.18.6.192")]);
        let only_metadata = allowed("evil.example", [at("169.254.169.254")].into_iter());
        assert!(only_metadata.unwrap_err().contains("evil.example"));
    }

    #[test]
    fn urls_naming_a_forbidden_address_are_recognised() {
        for (url, forbidden) in [
            ("http://169.254.169.254/latest", true),
            ("http://[fe80::1]:8080/v1", true),
            ("http://127.0.0.1:11434/v1", false),
            ("https://api.openai.com/v1", false),
        ] {
            assert_eq!(
                names_forbidden_address(&url.parse().unwrap()),
                forbidden,
                "{url}"
            );
        }
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
