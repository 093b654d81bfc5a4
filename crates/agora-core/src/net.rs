//! Which network addresses strangers may make a node dial.
//!
//! Providers register endpoints and requesters name sources that other nodes then connect to.
//! An address inside the dialler's own network (loopback, private, link-local such as cloud
//! metadata at 169.254.169.254, carrier-grade NAT, unspecified) would turn every such node into
//! a probe of its own network. This module is the one definition of those addresses: the
//! ledger applies it to registered IP literals, and outbound clients apply it to what a DNS
//! name resolves to at the moment of connecting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is loopback, private, link-local, shared (carrier-grade NAT), broadcast or
/// unspecified: an address a stranger must not make a node dial.
pub fn is_private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(&v4),
        IpAddr::V6(v6) => is_private_v6(&v6),
    }
}

/// [`is_private_ip`] for IPv4.
pub fn is_private_v4(ip: &Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
}

/// [`is_private_ip`] for IPv6, IPv4-mapped addresses judged as their IPv4 address.
pub fn is_private_v6(ip: &Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || ip.to_ipv4_mapped().is_some_and(|v4| is_private_v4(&v4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_addresses_are_private_and_public_ones_are_not() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_private_ip(private.parse().unwrap()), "{private}");
        }
        for public in ["203.0.113.7", "8.8.8.8", "100.128.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!is_private_ip(public.parse().unwrap()), "{public}");
        }
    }
}
