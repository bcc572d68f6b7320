//! Who the client is: the TCP peer, or behind trusted proxies the address
//! they recorded in `X-Forwarded-For`.
//!
//! A proxy that appends to `X-Forwarded-For` (nginx's
//! `$proxy_add_x_forwarded_for`, every cloud load balancer) keeps whatever
//! the client sent and adds the address *it* saw on the right. Only the
//! entries added by proxies we trust are facts; anything to their left was
//! written by the client and may be forged. So the client is found by
//! walking the list from the right, past the trusted proxies, to the first
//! address that is not one of them:
//!
//! 1. the TCP peer is not a trusted proxy: it is the client, and the headers
//!    are ignored whatever they say;
//! 2. otherwise each entry from the right: an entry that is not an IP
//!    address ends the walk (it was not written by a trusted proxy) and the
//!    last trusted hop is the client; an address outside the trusted ranges
//!    is the client; a trusted one is the next hop;
//! 3. every entry trusted (a request made by a proxy itself): the leftmost.
//!
//! `X-Real-IP` and `Forwarded` are never read: a proxy that only sets those
//! must be configured to append `X-Forwarded-For` too.
//!
//! Every address is canonical (`::ffff:a.b.c.d` is `a.b.c.d`), before the
//! trust check and in the result, so a dual-stack listener's IPv4 clients are
//! keyed as IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use hyper::header::HeaderMap;
use ipnet::IpNet;

/// The header proxies append the client's address to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// IPv6 limits are counted per /64: one subscriber or host usually holds a
/// whole /64 and may pick any address in it.
const IPV6_KEY_PREFIX: u8 = 64;

/// A `--trusted-proxies` entry that is neither an address nor a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR range: {0:?}")]
pub struct TrustedProxiesError(pub String);

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Trusted ranges (single addresses are /32 or /128).
    nets: Vec<IpNet>,
    /// The deprecated `--trust-forwarded-for`: the TCP peer is trusted as one
    /// proxy hop whatever its address (entries in the header are not).
    trust_peer: bool,
}

impl TrustedProxies {
    /// No proxy is trusted: the TCP peer is always the client.
    pub fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

    /// Parses a comma-separated list of CIDR ranges or addresses
    /// (`10.0.0.0/8, 192.168.1.7, fd00::/8`); blank entries are skipped.
    pub fn parse(list: &str) -> Result<TrustedProxies, TrustedProxiesError> {
        let nets = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                IpNet::from_str(entry)
                    .map(|net| canonical_net(net.trunc()))
                    .or_else(|_| IpAddr::from_str(entry).map(|ip| IpNet::from(ip.to_canonical())))
                    .map_err(|_| TrustedProxiesError(entry.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies {
            nets,
            trust_peer: false,
        })
    }

    /// Also trusts the TCP peer as one proxy hop, whatever its address (the
    /// deprecated `--trust-forwarded-for`: right only when clients cannot
    /// reach the listener except through one appending proxy).
    pub fn with_peer_trusted(mut self) -> TrustedProxies {
        self.trust_peer = true;
        self
    }

    /// True when no header is ever read.
    pub fn is_none(&self) -> bool {
        self.nets.is_empty() && !self.trust_peer
    }

    /// The configured ranges.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` (canonical) is in a trusted range.
    fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    fn from_str(list: &str) -> Result<TrustedProxies, TrustedProxiesError> {
        TrustedProxies::parse(list)
    }
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// One `X-Forwarded-For` entry: an address, optionally bracketed (IPv6)
/// and with a port; anything else is `None`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = SocketAddr::from_str(entry) {
        return Some(socket.ip().to_canonical());
    }
    let bracketed = entry.strip_prefix('[')?.strip_suffix(']')?;
    Ipv6Addr::from_str(bracketed)
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

/// The client's address: `peer` unless it is a trusted proxy, else the
/// rightmost `X-Forwarded-For` entry that is not (see the module doc).
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !(trusted.trust_peer || trusted.contains(peer)) {
        return peer;
    }
    let mut client = peer;
    // Several X-Forwarded-For headers read as one list, in order.
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for entry in value.rsplit(',') {
            match parse_entry(entry) {
                None => return client,
                Some(ip) => {
                    client = ip;
                    if !trusted.contains(ip) {
                        return client;
                    }
                }
            }
        }
    }
    client
}

/// The address a client's limits are counted under: an IPv4 address, or the
/// /64 network of an IPv6 address. Its text form (`203.0.113.7`,
/// `2001:db8:1:2::/64`) names counters in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpNet);

impl ClientKey {
    /// The key of `ip` (canonicalised first).
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey(IpNet::from(IpAddr::V4(v4))),
            IpAddr::V6(v6) => ClientKey(
                IpNet::new(IpAddr::V6(v6), IPV6_KEY_PREFIX)
                    .map(|net| net.trunc())
                    .unwrap_or_else(|_| IpNet::from(IpAddr::V6(v6))),
            ),
        }
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        ClientKey::of(ip)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpNet::V4(v4) => write!(f, "{}", v4.addr()),
            IpNet::V6(v6) => write!(f, "{v6}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn trusted(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            client_ip(&h, ip("10.0.0.9"), &TrustedProxies::none()),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_even_with_trusted_ranges() {
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            client_ip(&h, ip("192.0.2.1"), &trusted("10.0.0.0/8")),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn behind_an_appending_proxy_the_forged_entries_are_ignored() {
        // The client sent "6.6.6.6, 7.7.7.7"; the proxy appended the client's real address.
        let h = xff(&["6.6.6.6, 7.7.7.7, 203.0.113.5"]);
        assert_eq!(
            client_ip(&h, ip("10.0.0.2"), &trusted("10.0.0.0/8")),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn trusted_hops_are_walked_past_across_headers() {
        let h = xff(&["6.6.6.6, 203.0.113.5", "10.1.1.1 ,10.2.2.2"]);
        assert_eq!(
            client_ip(&h, ip("10.0.0.2"), &trusted("10.0.0.0/8")),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let h = xff(&["203.0.113.5, unknown, 10.1.1.1"]);
        assert_eq!(
            client_ip(&h, ip("10.0.0.2"), &trusted("10.0.0.0/8")),
            ip("10.1.1.1")
        );
        let h = xff(&["garbage"]);
        assert_eq!(
            client_ip(&h, ip("10.0.0.2"), &trusted("10.0.0.0/8")),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost_and_no_header_gives_the_peer() {
        let h = xff(&["10.9.9.9, 10.1.1.1"]);
        assert_eq!(
            client_ip(&h, ip("10.0.0.2"), &trusted("10.0.0.0/8")),
            ip("10.9.9.9")
        );
        assert_eq!(
            client_ip(&HeaderMap::new(), ip("10.0.0.2"), &trusted("10.0.0.0/8")),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let t = trusted("10.0.0.0/8");
        let peer = ip("10.0.0.2");
        assert_eq!(
            client_ip(&xff(&["203.0.113.5:4711"]), peer, &t),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(&xff(&["[2001:db8::1]:443"]), peer, &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(&xff(&["[2001:db8::1]"]), peer, &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(&xff(&["::ffff:203.0.113.5"]), peer, &t),
            ip("203.0.113.5")
        );
        // A mapped peer is trusted by its IPv4 range.
        assert_eq!(
            client_ip(&xff(&["203.0.113.5"]), ip("::ffff:10.0.0.2"), &t),
            ip("203.0.113.5")
        );
        // And without trust, a mapped peer is plain IPv4.
        assert_eq!(
            client_ip(
                &HeaderMap::new(),
                ip("::ffff:127.0.0.1"),
                &TrustedProxies::none()
            ),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_deprecated_switch_trusts_exactly_one_hop() {
        let t = TrustedProxies::none().with_peer_trusted();
        let h = xff(&["6.6.6.6, 203.0.113.5"]);
        assert_eq!(client_ip(&h, ip("192.0.2.1"), &t), ip("203.0.113.5"));
        assert_eq!(
            client_ip(&HeaderMap::new(), ip("192.0.2.1"), &t),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn lists_parse_addresses_and_ranges_and_refuse_garbage() {
        let t = trusted(" 10.0.0.0/8, 192.168.1.7 ,, fd00::/8, ::ffff:172.16.0.0/108");
        assert_eq!(t.nets().len(), 4);
        assert!(t.contains(ip("10.200.0.1")));
        assert!(t.contains(ip("192.168.1.7")));
        assert!(!t.contains(ip("192.168.1.8")));
        assert!(t.contains(ip("fd12::1")));
        assert!(t.contains(ip("172.16.3.4")));
        assert!(trusted("").is_none());
        assert!(!TrustedProxies::none().with_peer_trusted().is_none());
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/8, nope").unwrap_err(),
            TrustedProxiesError("nope".into())
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        // Host bits are dropped: 10.1.2.3/8 is 10.0.0.0/8.
        assert!(trusted("10.1.2.3/8").contains(ip("10.9.9.9")));
    }

    #[test]
    fn keys_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(ClientKey::of(ip("203.0.113.5")).to_string(), "203.0.113.5");
        assert_eq!(
            ClientKey::of(ip("::ffff:203.0.113.5")),
            ClientKey::of(ip("203.0.113.5"))
        );
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2:aaaa::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    /// An address outside 10.0.0.0/8 (the trusted range of the properties).
    fn outside_ip() -> impl Strategy<Value = IpAddr> {
        any_ip().prop_filter("not in 10.0.0.0/8", |ip| {
            !trusted("10.0.0.0/8").contains(ip.to_canonical())
        })
    }

    fn inside_ip() -> impl Strategy<Value = IpAddr> {
        any::<[u8; 3]>().prop_map(|b| IpAddr::V4(Ipv4Addr::new(10, b[0], b[1], b[2])))
    }

    /// Anything a client might put in the header: addresses, words, ports.
    fn forged_entry() -> impl Strategy<Value = String> {
        prop_oneof![
            any_ip().prop_map(|ip| ip.to_string()),
            inside_ip().prop_map(|ip| ip.to_string()),
            "[ -~&&[^,]]{0,20}",
        ]
    }

    proptest! {
        /// Whatever the headers say, without trusted proxies the peer is the client.
        #[test]
        fn headers_are_ignored_without_trusted_proxies(
            peer in any_ip(),
            values in proptest::collection::vec("[ -~]{0,60}", 0..4),
        ) {
            let mut h = HeaderMap::new();
            for v in &values {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.append(X_FORWARDED_FOR, v);
                }
            }
            prop_assert_eq!(client_ip(&h, peer, &TrustedProxies::none()), peer.to_canonical());
        }

        /// Behind a chain of trusted proxies that each append the address they saw, the client
        /// is the address the first proxy saw, whatever the client forged before it.
        #[test]
        fn the_address_the_first_trusted_proxy_saw_wins_over_anything_forged(
            forged in proptest::collection::vec(forged_entry(), 0..6),
            client in outside_ip(),
            hops in proptest::collection::vec(inside_ip(), 1..4),
            split_headers in any::<bool>(),
        ) {
            // The first proxy appends the client; each later proxy appends the one before it.
            let mut entries = forged.clone();
            entries.push(client.to_string());
            for hop in &hops[..hops.len() - 1] {
                entries.push(hop.to_string());
            }
            let peer = hops[hops.len() - 1];
            let mut h = HeaderMap::new();
            if split_headers && !forged.is_empty() {
                // The client's own header stays separate; proxies append a second one.
                if let Ok(v) = HeaderValue::from_str(&forged.join(",")) {
                    h.append(X_FORWARDED_FOR, v);
                }
                let ours = entries[forged.len()..].join(", ");
                h.append(X_FORWARDED_FOR, HeaderValue::from_str(&ours).unwrap());
            } else if let Ok(v) = HeaderValue::from_str(&entries.join(", ")) {
                h.append(X_FORWARDED_FOR, v);
            } else {
                return Ok(());
            }
            prop_assert_eq!(client_ip(&h, peer, &trusted("10.0.0.0/8")), client.to_canonical());
        }

        /// The answer is always the peer or an address from the header, never a panic.
        #[test]
        fn the_answer_is_the_peer_or_an_entry(
            peer in inside_ip(),
            raw in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                h.append(X_FORWARDED_FOR, v);
            }
            let got = client_ip(&h, peer, &trusted("10.0.0.0/8"));
            let text = String::from_utf8_lossy(&raw).into_owned();
            let from_header = text.split(',').filter_map(parse_entry).any(|e| e == got);
            prop_assert!(got == peer || from_header);
        }

        /// IPv6 addresses share a key exactly when they share their first 64 bits.
        #[test]
        fn ipv6_keys_are_the_slash_64(a in any::<u128>(), b in any::<u128>()) {
            let (a6, b6) = (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)));
            // Mapped IPv4 addresses are IPv4 keys; leave them to the unit test.
            prop_assume!(a6.to_canonical().is_ipv6() && b6.to_canonical().is_ipv6());
            prop_assert_eq!(ClientKey::of(a6) == ClientKey::of(b6), a >> 64 == b >> 64);
        }
    }
}
