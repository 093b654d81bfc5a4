//! What a provider may register as its endpoint.
//!
//! Every provider's endpoint is dialled by strangers: other providers probe it for round-trip
//! times, auditors fetch audit items from it, requesters fetch outputs. An endpoint is therefore
//! exactly `http(s)://HOST[:PORT]` (an optional trailing `/`): no user info, path, query or
//! fragment that could smuggle another target, and HOST a DNS name or an IP literal. Loopback,
//! private, link-local, shared and unspecified addresses (and `localhost` names) would turn
//! every node that dials it into a probe of its own network; they are refused unless the chain
//! allows them (`allow_private_endpoints`, set on devnets, where everything is on 127.0.0.1).
//! A DNS name that resolves to such an address is beyond what the ledger can check: the
//! outbound clients that dial endpoints check the resolved addresses when they connect
//! (`agora_store::http::outbound::Reach`), and follow no redirects.

use agora_core::net::{is_private_v4, is_private_v6};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Checks `endpoint`; the error says what is wrong with it.
pub fn check(endpoint: &str, allow_private: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("endpoint {endpoint:?} {why}; register http(s)://HOST[:PORT]"));
    let Some(rest) = endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://")) else {
        return bad("is not an http(s) URL");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@', '\\'])
        || authority.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("has a path, query, fragment or user info");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, tail)) => {
                (host, tail.strip_prefix(':').map(Some).unwrap_or((!tail.is_empty()).then_some("")))
            }
            None => return bad("has an unclosed IPv6 bracket"),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if let Some(port) = port
        && !(port.len() <= 5
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (1..=65_535).contains(&port.parse::<u32>().unwrap_or(0)))
    {
        return bad("has an invalid port");
    }
    let private = if authority.starts_with('[') {
        let Ok(ip) = host.parse::<Ipv6Addr>() else { return bad("has an invalid IPv6 address") };
        is_private_v6(&ip)
    } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
        is_private_v4(&ip)
    } else if is_dns_name(host) {
        let name = host.to_ascii_lowercase();
        name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local")
    } else {
        return bad("has an invalid host");
    };
    if private && !allow_private {
        return bad("points at a loopback, private or link-local host, which this chain does not allow");
    }
    Ok(())
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // An all-numeric name is an (invalid) address, not a DNS name.
        && !host.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn public_hosts_pass_and_tricks_do_not() {
        for ok in [
            "http://provider.example.com",
            "https://provider.example.com:7700",
            "http://203.0.113.7:7700/",
            "http://[2001:db8::1]:7700",
            "https://a-b.c-d.example",
        ] {
            assert_eq!(check(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://provider.example.com",
            "http://",
            "http://provider.example.com/agent/audit",
            "http://provider.example.com?x=1",
            "http://provider.example.com#f",
            "http://user@provider.example.com",
            "http://provider.example.com:0",
            "http://provider.example.com:65536",
            "http://provider.example.com:",
            "http://-bad.example",
            "http://bad_host.example",
            "http://[2001:db8::1",
            "http://[not-v6]:80",
            "http://999.1.1.1",
            "http://provider.example.com\\@evil",
        ] {
            assert!(check(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_and_loopback_hosts_need_the_chain_to_allow_them() {
        for private in [
            "http://127.0.0.1:7700",
            "http://10.1.2.3",
            "http://172.16.0.1",
            "http://192.168.1.1",
            "http://169.254.169.254",
            "http://100.64.0.1",
            "http://0.0.0.0",
            "http://[::1]:7700",
            "http://[fe80::1]",
            "http://[fd00::1]",
            "http://[::ffff:127.0.0.1]",
            "http://localhost:7700",
            "http://node.local",
        ] {
            assert!(check(private, false).unwrap_err().contains("does not allow"), "{private}");
            assert_eq!(check(private, true), Ok(()), "{private} on a devnet");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_accepts_only_a_bare_authority(s in "\\PC{0,80}") {
            for url in [s.clone(), format!("http://{s}")] {
                if check(&url, true).is_ok() {
                    let rest = url.split_once("://").map(|x| x.1).unwrap_or("");
                    let rest = rest.strip_suffix('/').unwrap_or(rest);
                    prop_assert!(!rest.contains(['/', '?', '#', '@']), "{}", url);
                }
            }
        }
    }
}
