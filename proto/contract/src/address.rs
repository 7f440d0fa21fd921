//! Which upstream addresses the gateway refuses to call: link-local, unspecified and cloud
//! instance-metadata addresses, in every spelling that reaches them (IPv4, IPv4-mapped,
//! IPv4-compatible, NAT64, 6to4 and Teredo IPv6 forms), and the metadata host names. The
//! control plane applies it to a base URL as written; the edge applies it to every address a
//! name resolves to, so a provider entry can never be turned into a way to read instance
//! credentials. Loopback and private ranges stay allowed: local model servers live there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Alibaba Cloud's metadata service (inside 100.64.0.0/10, shared address space).
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
/// Oracle Cloud's legacy metadata address (IETF protocol assignments, never a server).
const ORACLE_METADATA: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 192);
/// AWS's IPv6 instance-metadata endpoint (inside the private fd00::/8 range, so it is named).
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Host names that reach a metadata service on the clouds that define them (compared without a
/// trailing dot and case-insensitively).
const METADATA_HOSTS: [&str; 6] = [
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Whether no upstream may live at `ip`.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6 == AWS_METADATA_V6
                || embedded_ipv4(v6).is_some_and(is_forbidden_v4)
        }
    }
}

fn is_forbidden_v4(v4: Ipv4Addr) -> bool {
    v4.is_link_local() || v4.is_unspecified() || v4 == ALIBABA_METADATA || v4 == ORACLE_METADATA
}

/// The IPv4 address an IPv6 address carries, in the forms that route to it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96` and the local-use
/// `64:ff9b:1::/48`), 6to4 (`2002:AABB:CCDD::/48`) and Teredo (`2001::/32`, client address
/// inverted in the last 32 bits).
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return Some(mapped);
    }
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1) {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(low(!s[6], !s[7]));
    }
    None
}

/// Whether `host` (a DNS name) is one of the cloud metadata names.
pub fn is_metadata_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    METADATA_HOSTS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(host))
}

/// Why a base URL is refused; the message completes "base URL ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("'{url}' is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    #[error("scheme must be http or https")]
    Scheme,
    #[error("must not embed credentials; configure the API key instead")]
    Credentials,
    #[error("must have a host")]
    NoHost,
    #[error("link-local, unspecified and cloud metadata addresses are not allowed")]
    Forbidden,
}

/// Checks an upstream base URL as written: http(s), no credentials, a host that is neither a
/// forbidden address literal nor a metadata name. Names are checked again when resolved.
pub fn check_base_url(text: &str) -> Result<Url, BaseUrlError> {
    let url = Url::parse(text).map_err(|err| BaseUrlError::NotAUrl {
        url: text.to_owned(),
        reason: err.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BaseUrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BaseUrlError::Credentials);
    }
    let forbidden = match url.host() {
        None => return Err(BaseUrlError::NoHost),
        Some(Host::Domain(domain)) => is_metadata_host(domain),
        Some(Host::Ipv4(ip)) => is_forbidden_ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_forbidden_ip(IpAddr::V6(ip)),
    };
    if forbidden {
        return Err(BaseUrlError::Forbidden);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn metadata_and_link_local_addresses_are_refused_in_every_spelling() {
        for ip in [
            "169.254.169.254",
            "169.254.0.23",
            "100.100.100.200",
            "192.0.0.192",
            "0.0.0.0",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "::",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2002:6464:64c8::",
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "::ffff:100.100.100.200",
        ] {
            assert!(is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.8",
            "192.168.1.2",
            "100.100.100.201",
            "::1",
            "fd00::1",
            "104.18.6.192",
            "2606:4700::6812:6c0",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(!is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn teredo_client_addresses_are_read_inverted() {
        // Client 169.254.169.254 = !0x5601 0x5601 in the last two segments.
        let teredo: Ipv6Addr = "2001:0:4136:e378:8000:63bf:5601:5601".parse().unwrap();
        assert_eq!(
            embedded_ipv4(teredo),
            Some(Ipv4Addr::new(169, 254, 169, 254))
        );
    }

    #[test]
    fn base_urls_are_checked_as_written() {
        assert!(check_base_url("https://api.openai.com/v1").is_ok());
        assert!(check_base_url("http://127.0.0.1:11434/v1").is_ok());
        for (url, err) in [
            ("ftp://example.com", BaseUrlError::Scheme),
            ("http://user:pw@example.com", BaseUrlError::Credentials),
            ("http://169.254.169.254/latest", BaseUrlError::Forbidden),
            ("http://[::ffff:a9fe:a9fe]/", BaseUrlError::Forbidden),
            ("http://100.100.100.200/", BaseUrlError::Forbidden),
            ("http://metadata.google.internal./", BaseUrlError::Forbidden),
            ("http://METADATA/computeMetadata", BaseUrlError::Forbidden),
            ("http://[fe80::1]:8080/v1", BaseUrlError::Forbidden),
        ] {
            assert_eq!(check_base_url(url).unwrap_err(), err, "{url}");
        }
        assert!(matches!(
            check_base_url("not a url"),
            Err(BaseUrlError::NotAUrl { .. })
        ));
    }
}
