//! The client's address, once per request, for everything after it (rate limits, logs, the
//! API's sign-in throttle).
//!
//! It is the TCP peer (`ConnectInfo<SocketAddr>`, supplied by [`crate::serve`] or axum's
//! `into_make_service_with_connect_info`) or, under Lambda, API Gateway's source IP (feature
//! `lambda`). `CloudFront-Viewer-Address` and `X-Forwarded-For` are believed only when that peer
//! is one of the configured trusted proxies — never by default, so a client cannot choose its
//! own address. When the address is learnt from a proxy or from Lambda, the request's
//! `ConnectInfo<SocketAddr>` is replaced by it, so handlers that read `ConnectInfo` see the
//! real client too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::config::ClientAddrConfig;

/// Where a [`ClientAddr`] was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrSource {
    /// The TCP peer.
    Peer,
    /// A header set by a trusted proxy.
    Forwarded,
    /// API Gateway's request context under Lambda.
    Lambda,
    /// Nothing said (a request not from a server, e.g. a test's `oneshot`).
    Unknown,
}

/// The client of a request: an extension on every request behind [`ClientAddrLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// `None` only when the source is [`AddrSource::Unknown`].
    pub ip: Option<IpAddr>,
    /// The TCP peer, when there is one (a trusted proxy's address when forwarded).
    pub peer: Option<SocketAddr>,
    pub source: AddrSource,
}

/// Decides the client address of requests.
#[derive(Debug, Clone, Default)]
pub struct AddrResolver {
    trusted: Arc<Vec<IpNet>>,
}

impl AddrResolver {
    pub fn new(config: &ClientAddrConfig) -> AddrResolver {
        AddrResolver {
            trusted: Arc::new(config.trusted_proxies.clone()),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client of `request` (not yet stored on it).
    pub fn resolve(&self, request: &Request) -> ClientAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let (ip, source) = match peer {
            Some(p) => (Some(p.ip().to_canonical()), AddrSource::Peer),
            None => match lambda_source_ip(request) {
                Some(ip) => (Some(ip.to_canonical()), AddrSource::Lambda),
                None => (None, AddrSource::Unknown),
            },
        };
        if let Some(hop) = ip.filter(|ip| self.is_trusted(*ip)) {
            if let Some(client) = self.forwarded(request.headers()) {
                return ClientAddr {
                    ip: Some(client),
                    peer,
                    source: AddrSource::Forwarded,
                };
            }
            tracing::trace!(%hop, "a trusted proxy sent no client address");
        }
        ClientAddr { ip, peer, source }
    }

    /// The client a trusted proxy reports: CloudFront's viewer address, else the rightmost
    /// `X-Forwarded-For` entry that is not itself a trusted proxy.
    fn forwarded(&self, headers: &HeaderMap) -> Option<IpAddr> {
        if let Some(ip) = headers
            .get("cloudfront-viewer-address")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_addr)
        {
            return Some(ip);
        }
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            hops.extend(value.to_str().ok()?.split(','));
        }
        let mut leftmost_trusted = None;
        for hop in hops.iter().rev() {
            let ip = parse_addr(hop)?;
            if !self.is_trusted(ip) {
                return Some(ip);
            }
            leftmost_trusted = Some(ip);
        }
        leftmost_trusted
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`, `2001:db8::1` or CloudFront's
/// `2001:db8::1:443` (address and port joined by the last colon).
fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let (ip, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(feature = "lambda")]
fn lambda_source_ip(request: &Request) -> Option<IpAddr> {
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;
    let ip = match request.extensions().request_context_ref()? {
        RequestContext::ApiGatewayV2(c) => c.http.source_ip.as_deref()?,
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.as_deref()?,
        // An ALB puts the client in X-Forwarded-For and has no source IP of its own here.
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    ip.parse().ok()
}

#[cfg(not(feature = "lambda"))]
fn lambda_source_ip(_request: &Request) -> Option<IpAddr> {
    None
}

/// Puts a [`ClientAddr`] on every request.
#[derive(Debug, Clone)]
pub struct ClientAddrLayer {
    resolver: AddrResolver,
}

impl ClientAddrLayer {
    pub fn new(config: &ClientAddrConfig) -> ClientAddrLayer {
        ClientAddrLayer {
            resolver: AddrResolver::new(config),
        }
    }
}

impl<S> Layer<S> for ClientAddrLayer {
    type Service = ClientAddrService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientAddrService {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientAddrService<S> {
    inner: S,
    resolver: AddrResolver,
}

impl<S> Service<Request> for ClientAddrService<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let client = self.resolver.resolve(&request);
        if let (Some(ip), AddrSource::Forwarded | AddrSource::Lambda) = (client.ip, client.source) {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, 0)));
        }
        request.extensions_mut().insert(client);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(peer: Option<&str>, headers: &[(&str, &str)]) -> Request {
        let mut r = Request::builder().uri("/");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let mut r = r.body(Body::empty()).unwrap();
        if let Some(p) = peer {
            r.extensions_mut()
                .insert(ConnectInfo(p.parse::<SocketAddr>().unwrap()));
        }
        r
    }

    fn resolver(trusted: &[&str]) -> AddrResolver {
        AddrResolver::new(&ClientAddrConfig {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
        })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_headers_are_ignored_by_default() {
        let r = request(
            Some("203.0.113.7:5000"),
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("cloudfront-viewer-address", "2.2.2.2:443"),
            ],
        );
        let c = resolver(&[]).resolve(&r);
        assert_eq!(c.ip, ip("203.0.113.7"));
        assert_eq!(c.source, AddrSource::Peer);
    }

    #[test]
    fn a_trusted_proxy_is_believed_and_spoofed_hops_to_its_left_are_not() {
        let r = request(
            Some("10.0.0.5:5000"),
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.9, 10.0.0.4")],
        );
        let c = resolver(&["10.0.0.0/8"]).resolve(&r);
        assert_eq!(c.ip, ip("198.51.100.9"));
        assert_eq!(c.source, AddrSource::Forwarded);
        assert_eq!(c.peer, Some("10.0.0.5:5000".parse().unwrap()));

        let r = request(
            Some("10.0.0.5:5000"),
            &[("cloudfront-viewer-address", "2001:db8::1:46532")],
        );
        assert_eq!(resolver(&["10.0.0.0/8"]).resolve(&r).ip, ip("2001:db8::1"));
        let r = request(
            Some("10.0.0.5:5000"),
            &[("cloudfront-viewer-address", "198.51.100.10:46532")],
        );
        assert_eq!(
            resolver(&["10.0.0.0/8"]).resolve(&r).ip,
            ip("198.51.100.10")
        );
    }

    #[test]
    fn a_malformed_header_leaves_the_peer() {
        let r = request(Some("10.0.0.5:1"), &[("x-forwarded-for", "nonsense")]);
        let c = resolver(&["10.0.0.0/8"]).resolve(&r);
        assert_eq!((c.ip, c.source), (ip("10.0.0.5"), AddrSource::Peer));
    }

    #[test]
    fn mapped_ipv4_peers_are_plain_ipv4_and_no_peer_is_unknown() {
        let r = request(Some("[::ffff:192.0.2.1]:80"), &[]);
        assert_eq!(resolver(&[]).resolve(&r).ip, ip("192.0.2.1"));
        let c = resolver(&[]).resolve(&request(None, &[("x-forwarded-for", "1.1.1.1")]));
        assert_eq!((c.ip, c.source), (None, AddrSource::Unknown));
    }

    #[cfg(feature = "lambda")]
    #[test]
    fn under_lambda_the_source_ip_of_api_gateway_is_the_client() {
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/api/v1/latest",
            "rawQueryString": "", "headers": {"host": "x.execute-api.eu-west-2.amazonaws.com",
                "x-forwarded-for": "6.6.6.6"},
            "requestContext": {"accountId": "1", "apiId": "x", "domainName": "x", "domainPrefix": "x",
                "http": {"method": "GET", "path": "/api/v1/latest", "protocol": "HTTP/1.1",
                    "sourceIp": "198.51.100.23", "userAgent": "t"},
                "requestId": "r", "routeKey": "$default", "stage": "$default",
                "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390u64},
            "isBase64Encoded": false
        });
        let r = lambda_http::request::from_str(&event.to_string()).unwrap();
        let r = r.map(Body::new);
        let c = resolver(&[]).resolve(&r);
        assert_eq!((c.ip, c.source), (ip("198.51.100.23"), AddrSource::Lambda));
    }
}
