//! From a socket address to the peer key the core's admission counts.

use crate::proto::chat::{Peer, PeerKey};
use std::net::{IpAddr, Ipv4Addr};

/// The peer key of `ip`: IPv4 (IPv4-mapped IPv6 included) by address, IPv6 by its /64.
pub fn peer_of(ip: IpAddr) -> Peer {
    match ip {
        IpAddr::V4(v4) => v4_peer(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_peer(v4),
            None => {
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Peer {
                    key: PeerKey::V6(prefix),
                    loopback: v6.is_loopback(),
                }
            }
        },
    }
}

fn v4_peer(v4: Ipv4Addr) -> Peer {
    Peer {
        key: PeerKey::V4(v4.octets()),
        loopback: v4.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_loopback() {
        let p = |s: &str| peer_of(s.parse().unwrap());
        assert_eq!(p("10.0.0.1").key, PeerKey::V4([10, 0, 0, 1]));
        assert_eq!(p("::ffff:10.0.0.1").key, PeerKey::V4([10, 0, 0, 1]));
        assert_eq!(p("2001:db8::1").key, p("2001:db8::ffff").key);
        assert_ne!(p("2001:db8::1").key, p("2001:db8:0:1::1").key);
        assert!(p("127.0.0.1").loopback && p("::1").loopback && p("::ffff:127.0.0.1").loopback);
        assert!(!p("10.0.0.1").loopback);
    }
}
