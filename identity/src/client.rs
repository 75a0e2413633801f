//! The client's address, decided once at the edge. A process takes it from the TCP peer,
//! unless that peer is a proxy it was told to trust (`--trusted-proxies`): then from the
//! `Forwarded` or `X-Forwarded-For` chain, read from the right, skipping trusted hops, so
//! the first hop no trusted proxy vouches for is the client. A client that sends its own
//! `X-Forwarded-For` straight to Gantry is not believed: its peer address is not trusted.
//!
//! The gateway hands the address it decided to every subgraph: in process as
//! [`ClientAddr`] in the [`crate::viewer::Caller`], over HTTP as `X-Forwarded-For: <addr>`.
//! A subgraph believes that header only from peers in its own trusted proxies (the
//! gateways; loopback by default), so the address a login is throttled by is the client's
//! in every shape, and a client talking to a subgraph directly cannot choose it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The client's address, for throttling and rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// The most forwarding hops read from one request; a longer chain is read no further.
const MAX_HOPS: usize = 32;

/// Peers whose forwarding headers are believed: CIDRs such as `10.0.0.0/8`, or single
/// addresses. Empty trusts nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts nobody: the TCP peer is the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts every peer: what `--trust-forwarded-for` meant before trusted proxies could be
    /// named. Only for a process no client can reach except through your own proxy.
    pub fn any() -> Self {
        Self(vec![
            IpNet::new_assert(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpNet::new_assert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        ])
    }

    /// This host (`127.0.0.0/8`, `::1`): where a subgraph's gateway is in the
    /// single-host three-process shape.
    pub fn loopback() -> Self {
        Self(vec![
            IpNet::new_assert(IpAddr::V4(Ipv4Addr::LOCALHOST), 8),
            IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        ])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client behind `peer`: the peer itself unless it is trusted, else the rightmost
    /// forwarded hop that is not a trusted proxy (`Forwarded` when present, else
    /// `X-Forwarded-For`). A hop that is not an address ends the walk at the last address
    /// a trusted proxy vouched for.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            if headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded") {
                warn_untrusted_forwarding(peer);
            }
            return ClientAddr(peer);
        }
        let forwarded: Vec<&str> = headers
            .get_all("forwarded")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let mut client = peer;
        let mut walk = |hop: Option<IpAddr>| match hop {
            Some(addr) if self.contains(addr) => {
                client = addr;
                true
            }
            Some(addr) => {
                client = addr;
                false
            }
            None => false,
        };
        if forwarded.is_empty() {
            let values = headers
                .get_all("x-forwarded-for")
                .iter()
                .rev()
                .filter_map(|value| value.to_str().ok());
            for hop in values.flat_map(|v| v.rsplit(',')).take(MAX_HOPS) {
                if !walk(parse_hop(hop)) {
                    break;
                }
            }
        } else {
            let elements = forwarded.iter().rev().flat_map(|v| v.rsplit(','));
            for element in elements.take(MAX_HOPS) {
                if !walk(forwarded_for(element)) {
                    break;
                }
            }
        }
        ClientAddr(client.to_canonical())
    }
}

impl std::str::FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of CIDRs or addresses; empty trusts nobody.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{part}` is not a CIDR (e.g. 10.0.0.0/8) or an address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// One `X-Forwarded-For` hop: an address, perhaps with a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
}

/// The `for=` parameter of one `Forwarded` element (RFC 7239): `for=192.0.2.60`,
/// `for="[2001:db8::1]:4711"`. Obfuscated identifiers and `unknown` are not addresses.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        let bare = value
            .strip_prefix('[')
            .and_then(|v| v.split_once(']'))
            .map_or(value, |(addr, _)| addr);
        parse_hop(bare)
    })
}

/// Says once per process that forwarding headers arrive from a peer that is not trusted:
/// the usual sign of a proxy in front that `--trusted-proxies` does not name, which makes
/// every client share the proxy's address (and its login and rate limits).
fn warn_untrusted_forwarding(peer: IpAddr) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %peer,
            "forwarding headers from a peer that is not a trusted proxy are ignored; if it is your proxy, add it to GANTRY_TRUSTED_PROXIES"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().expect("header value"));
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn trusted(s: &str) -> TrustedProxies {
        s.parse().expect("trusted proxies")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let forged = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let client = trusted("10.0.0.0/8").client_of(ip("198.51.100.1"), &forged);
        assert_eq!(client.0, ip("198.51.100.1"));
        assert_eq!(
            TrustedProxies::none().client_of(ip("10.0.0.1"), &forged).0,
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_hop_no_trusted_proxy_vouches_for_is_the_client() {
        // The client forged the first hop; the proxy appended the address it saw.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.7")]);
        let client = trusted("10.0.0.0/8").client_of(ip("10.0.0.1"), &chain);
        assert_eq!(client.0, ip("203.0.113.9"));
    }

    #[test]
    fn several_header_lines_read_as_one_chain() {
        let chain = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.0.0.7"),
        ]);
        assert_eq!(
            trusted("10.0.0.0/8").client_of(ip("10.0.0.1"), &chain).0,
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarded_is_read_with_quotes_brackets_and_ports() {
        let chain = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711", for=10.0.0.7"#,
        )]);
        assert_eq!(
            trusted("10.0.0.0/8").client_of(ip("10.0.0.1"), &chain).0,
            ip("2001:db8::1")
        );
    }

    #[test]
    fn a_hop_that_is_not_an_address_stops_at_the_last_trusted_one() {
        let chain = headers(&[("x-forwarded-for", "203.0.113.9, unknown")]);
        assert_eq!(
            trusted("10.0.0.0/8").client_of(ip("10.0.0.1"), &chain).0,
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusting_any_peer_takes_the_first_hop() {
        let chain = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.1")]);
        assert_eq!(
            TrustedProxies::any().client_of(ip("127.0.0.1"), &chain).0,
            ip("203.0.113.7")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_cidrs() {
        let chain = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            TrustedProxies::loopback()
                .client_of(ip("::ffff:127.0.0.1"), &chain)
                .0,
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_bad_cidr_is_refused_with_what_to_write() {
        let error = "10.0.0.0/33"
            .parse::<TrustedProxies>()
            .expect_err("invalid");
        assert!(error.contains("10.0.0.0/8"), "{error}");
        assert_eq!(trusted("").to_string(), "");
        assert_eq!(
            trusted("10.0.0.0/8, 127.0.0.1").to_string(),
            "10.0.0.0/8,127.0.0.1/32"
        );
    }
}
