//! Which address a request came from, for the sign-in lockout: the peer's, or the last
//! `X-Forwarded-For` hop when the peer is a reverse proxy the operator named with
//! `--trust-proxy`. Only the last hop is taken: that is the one the trusted proxy itself
//! appended; anything before it is whatever the client chose to send.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;
use ipnet::{IpNet, Ipv6Net};

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(ranges: Vec<IpNet>) -> Self {
        Self(ranges)
    }

    /// The request's source as the lockout counts it. IPv6 sources are counted per /64, the
    /// smallest block an ISP hands out: otherwise one subscriber could lock a user out from
    /// 2^64 "sources" and hit the per-user ceiling for everyone.
    pub fn source(&self, req: &HttpRequest) -> String {
        let Some(peer) = req.peer_addr().map(|a| a.ip().to_canonical()) else {
            return String::new();
        };
        let source = if self.0.iter().any(|net| net.contains(&peer)) {
            last_forwarded(req).unwrap_or(peer)
        } else {
            peer
        };
        bucket(source)
    }
}

fn last_forwarded(req: &HttpRequest) -> Option<IpAddr> {
    let last = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .last()?;
    // Some proxies append the port: `203.0.113.7:51234`, `[2001:db8::7]:51234`.
    last.parse::<IpAddr>()
        .or_else(|_| last.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

fn bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => Ipv6Net::new(v6, 64)
            .map(|net| net.trunc().to_string())
            .unwrap_or_else(|_| v6.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn proxies(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| r.parse().expect("cidr")).collect())
    }

    fn request(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().expect("socket address"));
        for value in forwarded {
            req = req.append_header(("X-Forwarded-For", *value));
        }
        req.to_http_request()
    }

    #[test]
    fn the_peer_counts_unless_it_is_a_trusted_proxy() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.source(&request("192.0.2.1:4000", &["203.0.113.7"])),
            "192.0.2.1",
            "an untrusted peer cannot choose its source"
        );
        assert_eq!(
            trusted.source(&request("10.1.2.3:4000", &["198.51.100.1, 203.0.113.7"])),
            "203.0.113.7",
            "the hop the proxy appended, not the one the client sent"
        );
        assert_eq!(
            trusted.source(&request(
                "10.1.2.3:4000",
                &["198.51.100.1", "203.0.113.8:555"]
            )),
            "203.0.113.8",
            "several headers form one list; a port is dropped"
        );
        assert_eq!(
            trusted.source(&request("10.1.2.3:4000", &["not an address"])),
            "10.1.2.3",
            "an unreadable hop counts as the proxy itself"
        );
        assert_eq!(trusted.source(&request("10.1.2.3:4000", &[])), "10.1.2.3");
    }

    #[test]
    fn ipv6_sources_are_counted_per_slash_64() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.source(&request("[2001:db8:1:2:aaaa::1]:4000", &[])),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            none.source(&request("[::ffff:192.0.2.9]:4000", &[])),
            "192.0.2.9",
            "a v4-mapped peer is its IPv4 address"
        );
    }
}
