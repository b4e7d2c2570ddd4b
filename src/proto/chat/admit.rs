//! Admission: `--max-clients` and `--max-per-ip`, counted on a peer key the shell derives from
//! the socket address (the core knows nothing of `std::net`).

use std::collections::HashMap;

/// What a per-address limit counts: an IPv4 address, or the /64 prefix of an IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

/// Where a connection comes from, as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The key the per-address limit counts.
    pub key: PeerKey,
    /// Whether the address is a loopback address (exempt unless `--limit-loopback`).
    pub loopback: bool,
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    Full,
    TooManyFromAddress,
}

pub(super) struct Admission {
    max_clients: usize,
    max_per_ip: usize,
    limit_loopback: bool,
    per_ip: HashMap<PeerKey, u32>,
}

impl Admission {
    pub(super) fn new(max_clients: usize, max_per_ip: usize, limit_loopback: bool) -> Admission {
        Admission {
            max_clients,
            max_per_ip,
            limit_loopback,
            per_ip: HashMap::new(),
        }
    }

    /// Admits a connection from `peer` while `live` others are open; returns the key it counts
    /// against (to [`Admission::release`] when it closes), if any.
    pub(super) fn admit(&mut self, peer: Peer, live: usize) -> Result<Option<PeerKey>, Refusal> {
        if live >= self.max_clients {
            return Err(Refusal::Full);
        }
        let counted = self.max_per_ip > 0 && (self.limit_loopback || !peer.loopback);
        if !counted {
            return Ok(None);
        }
        let n = self.per_ip.entry(peer.key).or_insert(0);
        if *n as usize >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *n += 1;
        Ok(Some(peer.key))
    }

    /// Counts a connection again (restored from a snapshot).
    pub(super) fn recount(&mut self, key: PeerKey) {
        *self.per_ip.entry(key).or_insert(0) += 1;
    }

    /// A connection admitted with `counted` has closed.
    pub(super) fn release(&mut self, counted: Option<PeerKey>) {
        if let Some(key) = counted
            && let Some(n) = self.per_ip.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&key);
            }
        }
    }

    /// Number of addresses with a count (for invariant checks).
    pub(super) fn addresses(&self) -> usize {
        self.per_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(last: u8, loopback: bool) -> Peer {
        Peer {
            key: PeerKey::V4([10, 0, 0, last]),
            loopback,
        }
    }

    #[test]
    fn per_address_limit_counts_and_releases() {
        let mut a = Admission::new(100, 2, false);
        let k1 = a.admit(peer(1, false), 0).unwrap();
        let k2 = a.admit(peer(1, false), 1).unwrap();
        assert_eq!(a.admit(peer(1, false), 2), Err(Refusal::TooManyFromAddress));
        assert!(a.admit(peer(2, false), 2).is_ok(), "another address");
        a.release(k1);
        assert!(a.admit(peer(1, false), 2).is_ok());
        a.release(k2);
        assert_eq!(a.addresses(), 2);
    }

    #[test]
    fn loopback_is_exempt_unless_limited_and_the_server_can_be_full() {
        let mut a = Admission::new(3, 1, false);
        assert_eq!(a.admit(peer(1, true), 0), Ok(None));
        assert_eq!(a.admit(peer(1, true), 1), Ok(None));
        assert_eq!(a.admit(peer(1, true), 3), Err(Refusal::Full));
        let mut strict = Admission::new(3, 1, true);
        assert!(strict.admit(peer(1, true), 0).unwrap().is_some());
        assert_eq!(
            strict.admit(peer(1, true), 1),
            Err(Refusal::TooManyFromAddress)
        );
    }
}
