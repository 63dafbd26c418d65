//! The guard against server-side request forgery for webhook and push URLs: https outside
//! loopback, and never an address inside the network (private, link-local, loopback, unique
//! local, carrier-grade NAT, the cloud metadata service, multicast, unspecified), unless
//! loopback is explicitly allowed (tests and local use). The URL is checked when it is
//! subscribed, and every connection is checked again at send time by [`GuardedResolver`], which
//! resolves names itself and hands the HTTP client only allowed addresses (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::Url;

/// Why a destination URL is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL: {0}")]
    Invalid(String),
    #[error("the URL must use https (http only on loopback when allowed), not {0}")]
    Scheme(String),
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("the host {host} resolves to {addr}, an address inside the network")]
    Forbidden { host: String, addr: IpAddr },
    #[error("the host {0} does not resolve")]
    Unresolved(String),
}

/// Whether an address is one no outside destination may be: loopback, private, link-local
/// (with the metadata service 169.254.169.254), CGNAT, unique local, multicast, unspecified,
/// documentation and benchmarking ranges, and IPv4 addresses wrapped in IPv6.
pub fn is_internal(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 reaches IPv4 space
                || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0) // IPv4-compatible
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS metadata (IPv6)
        }
    }
}

fn internal_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240 // reserved
}

fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// Whether a resolved address may be connected to.
pub fn allowed(addr: IpAddr, allow_loopback: bool) -> bool {
    (allow_loopback && is_loopback(addr)) || !is_internal(addr)
}

/// The host a URL names, without IPv6 brackets.
fn host_of(url: &Url) -> Result<String, UrlError> {
    let host = url.host_str().ok_or(UrlError::NoHost)?;
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string())
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost")
}

/// Checks a URL's form: https (or http to a loopback host when `allow_loopback`), no
/// credentials, a host, and no internal IP literal. Names are checked by [`check_url`].
pub fn check_form(text: &str, allow_loopback: bool) -> Result<Url, UrlError> {
    let url = Url::parse(text).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = host_of(&url)?;
    let literal: Option<IpAddr> = host.parse().ok();
    let loopback_host = literal.map_or(is_loopback_name(&host), is_loopback);
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback && loopback_host => {}
        other => return Err(UrlError::Scheme(other.to_string())),
    }
    if let Some(addr) = literal {
        if !allowed(addr, allow_loopback) {
            return Err(UrlError::Forbidden { host, addr });
        }
    } else if loopback_host && !allow_loopback {
        return Err(UrlError::Forbidden {
            host,
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        });
    }
    Ok(url)
}

/// [`check_form`] and then every address the host resolves to (at subscribe time).
pub async fn check_url(text: &str, allow_loopback: bool) -> Result<Url, UrlError> {
    let url = check_form(text, allow_loopback)?;
    let host = host_of(&url)?;
    if host.parse::<IpAddr>().is_err() {
        let addrs = resolve(&host).await?;
        if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip(), allow_loopback)) {
            return Err(UrlError::Forbidden {
                host,
                addr: bad.ip(),
            });
        }
    }
    Ok(url)
}

async fn resolve(host: &str) -> Result<Vec<SocketAddr>, UrlError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| UrlError::Unresolved(host.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(UrlError::Unresolved(host.to_string()));
    }
    Ok(addrs)
}

/// The HTTP client's resolver: the system's answers, less every address not [`allowed`]. A
/// name that resolves only to such addresses fails to connect.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve(&host).await?;
            let good: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allowed(a.ip(), allow_loopback))
                .collect();
            if good.is_empty() {
                let addr = addrs[0].ip();
                return Err(Box::new(UrlError::Forbidden { host, addr })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(good.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal inside a client error, when the guarded resolver refused the host.
pub fn refusal(e: &reqwest::Error) -> Option<&UrlError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<UrlError>() {
            return Some(refused);
        }
        source = s.source();
    }
    None
}

/// An HTTP client for outside destinations: the guarded resolver, no redirects (a redirect
/// could point inside), no proxy, and a timeout.
pub fn guarded_client(
    allow_loopback: bool,
    timeout: std::time::Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_loopback }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .pool_max_idle_per_host(64)
        .user_agent("EcoCityHub-Webhooks/1")
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
            "198.18.0.1",
            "192.0.0.8",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn forms_outside_loopback_must_be_https_and_public() {
        assert!(check_form("https://hooks.example.com/x", false).is_ok());
        assert!(matches!(
            check_form("http://hooks.example.com/x", false),
            Err(UrlError::Scheme(_))
        ));
        assert!(
            matches!(
                check_form("http://hooks.example.com/x", true),
                Err(UrlError::Scheme(_))
            ),
            "allowing loopback does not allow plain http elsewhere"
        );
        assert!(matches!(
            check_form("ftp://x.example/", false),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_form("https://169.254.169.254/latest/meta-data", false),
            Err(UrlError::Forbidden { .. })
        ));
        assert!(matches!(
            check_form("https://[::ffff:192.168.0.1]/", false),
            Err(UrlError::Forbidden { .. })
        ));
        assert!(matches!(
            check_form("https://user:pw@hooks.example.com/", false),
            Err(UrlError::Credentials)
        ));
        assert!(matches!(
            check_form("not a url", false),
            Err(UrlError::Invalid(_))
        ));
        assert!(matches!(
            check_form("https://localhost/x", false),
            Err(UrlError::Forbidden { .. })
        ));
        assert!(matches!(
            check_form("http://127.0.0.1:9/x", false),
            Err(UrlError::Scheme(_))
        ));
        assert!(check_form("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_form("http://localhost:9/x", true).is_ok());
        assert!(check_form("http://[::1]:9/x", true).is_ok());
        assert!(matches!(
            check_form("http://10.0.0.1/x", true),
            Err(UrlError::Scheme(_))
        ));
        assert!(
            matches!(
                check_form("https://10.0.0.1/x", true),
                Err(UrlError::Forbidden { .. })
            ),
            "loopback allowed, private still refused"
        );
    }

    #[tokio::test]
    async fn names_are_resolved_and_checked() {
        // localhost resolves to loopback: refused unless allowed.
        assert!(matches!(
            check_url("https://localhost/x", false).await,
            Err(UrlError::Forbidden { .. })
        ));
        assert!(check_url("http://localhost:1/x", true).await.is_ok());
        assert!(matches!(
            check_url("https://no-such-host.invalid/x", false).await,
            Err(UrlError::Unresolved(_))
        ));
    }

    #[tokio::test]
    async fn the_client_refuses_to_connect_inside_at_send_time() {
        // A name that passed the form check but resolves inside (as after DNS rebinding).
        let client = guarded_client(false, std::time::Duration::from_secs(2)).unwrap();
        let err = client.get("https://localhost:1/").send().await.unwrap_err();
        assert!(
            matches!(refusal(&err), Some(UrlError::Forbidden { .. })),
            "{err:?}"
        );
        // With loopback allowed the same name is let through (and the connection refused).
        let open = guarded_client(true, std::time::Duration::from_secs(2)).unwrap();
        let err = open.get("http://localhost:1/").send().await.unwrap_err();
        assert!(refusal(&err).is_none(), "{err:?}");
    }
}
