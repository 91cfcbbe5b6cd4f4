//! The client's address, as the refusal summaries and their rate limit count it: the TCP peer,
//! or, when the peer is a trusted reverse proxy (`server.trusted_proxies`), the right-most
//! address of the `Forwarded` header (RFC 7239) that is not itself a trusted proxy.
//!
//! Must never: believe a `Forwarded` header from a peer that is not a trusted proxy (anyone
//! could then pick the address it is counted against), or read `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::header::FORWARDED;
use axum::http::request::Parts;
use ipnet::IpNet;

/// The client address of a request (`None` when the transport did not say).
pub fn client_address(parts: &Parts, proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    let forwarded: Vec<&str> = parts
        .headers
        .get_all(FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(behind_proxies(peer, &forwarded.join(","), proxies))
}

/// `peer`, or the right-most `for=` address of `forwarded` that no trusted proxy holds.
pub fn behind_proxies(peer: IpAddr, forwarded: &str, proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(ip));
    // SECURITY: only a trusted proxy may say who its client is.
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded
        .split(',')
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| node_address(value))?
            })
        })
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !trusted(ip))
        .unwrap_or(peer)
}

/// The address of a `for=` node (`192.0.2.43`, `"192.0.2.43:80"`, `"[2001:db8::1]:4711"`);
/// `None` for `unknown` and obfuscated identifiers.
fn node_address(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    value.parse().ok().or_else(|| {
        value
            .rsplit_once(':')
            .and_then(|(host, _)| host.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_proxy_may_name_the_client() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let outsider: IpAddr = "198.51.100.9".parse().unwrap();
        // From a trusted proxy: the right-most address it does not hold.
        assert_eq!(
            behind_proxies(proxy, "for=192.0.2.43, for=10.9.9.9", &proxies),
            "192.0.2.43".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            behind_proxies(
                proxy,
                r#"for="[2001:db8:cafe::17]:4711";proto=https"#,
                &proxies
            ),
            "2001:db8:cafe::17".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            behind_proxies(proxy, r#"For="192.0.2.60:8080";by=10.1.2.3"#, &proxies),
            "192.0.2.60".parse::<IpAddr>().unwrap()
        );
        // A spoofed left-most hop does not win over the real client the proxy appended.
        assert_eq!(
            behind_proxies(proxy, "for=203.0.113.1, for=192.0.2.43", &proxies),
            "192.0.2.43".parse::<IpAddr>().unwrap()
        );
        // Nothing usable: the proxy itself.
        assert_eq!(behind_proxies(proxy, "for=unknown", &proxies), proxy);
        assert_eq!(behind_proxies(proxy, "", &proxies), proxy);
        // SECURITY: anyone else's header is ignored.
        assert_eq!(
            behind_proxies(outsider, "for=192.0.2.43", &proxies),
            outsider
        );
        assert_eq!(behind_proxies(outsider, "for=192.0.2.43", &[]), outsider);
    }
}
