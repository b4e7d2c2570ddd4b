//! Admission: `--max-clients` and `--max-per-ip`, counted on a peer key the shell derives from
//! the socket address (the core knows nothing of `std::net`).

use slab::Slab;
use std::collections::HashMap;
use std::num::NonZeroU32;

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

/// What a connection counted against `--max-per-ip` holds, to give back when it closes (4
/// bytes in its session, where the address itself would take 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ticket(NonZeroU32);

pub(super) struct Admission {
    max_clients: usize,
    max_per_ip: usize,
    limit_loopback: bool,
    /// Addresses with connections, and how many.
    counts: Slab<(PeerKey, u32)>,
    /// Keys of `counts` by address.
    by_key: HashMap<PeerKey, usize>,
}

impl Admission {
    pub(super) fn new(max_clients: usize, max_per_ip: usize, limit_loopback: bool) -> Admission {
        Admission {
            max_clients,
            max_per_ip,
            limit_loopback,
            counts: Slab::new(),
            by_key: HashMap::new(),
        }
    }

    /// Admits a connection from `peer` while `live` others are open; returns its ticket if it
    /// counts against an address (to [`Admission::release`] when it closes).
    pub(super) fn admit(&mut self, peer: Peer, live: usize) -> Result<Option<Ticket>, Refusal> {
        if live >= self.max_clients {
            return Err(Refusal::Full);
        }
        let counted = self.max_per_ip > 0 && (self.limit_loopback || !peer.loopback);
        if !counted {
            return Ok(None);
        }
        let held = self.by_key.get(&peer.key).map_or(0, |&k| self.counts[k].1);
        if held as usize >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        Ok(Some(self.count(peer.key)))
    }

    /// Counts a connection from `key` (also for one restored from a snapshot).
    pub(super) fn count(&mut self, key: PeerKey) -> Ticket {
        let counts = &mut self.counts;
        let k = *self
            .by_key
            .entry(key)
            .or_insert_with(|| counts.insert((key, 0)));
        self.counts[k].1 += 1;
        Ticket(NonZeroU32::MIN.saturating_add(k as u32))
    }

    /// The address a ticket counts against.
    pub(super) fn key(&self, ticket: Ticket) -> Option<PeerKey> {
        self.counts.get(slot(ticket)).map(|&(key, _)| key)
    }

    /// A connection admitted with `ticket` has closed.
    pub(super) fn release(&mut self, ticket: Option<Ticket>) {
        let Some(k) = ticket.map(slot) else {
            return;
        };
        if let Some((key, n)) = self.counts.get_mut(k) {
            *n -= 1;
            if *n == 0 {
                let key = *key;
                self.counts.remove(k);
                self.by_key.remove(&key);
            }
        }
    }

    /// Number of addresses with a count (for invariant checks).
    pub(super) fn addresses(&self) -> usize {
        self.counts.len()
    }
}

fn slot(ticket: Ticket) -> usize {
    ticket.0.get() as usize - 1
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
        assert_eq!(k1.and_then(|t| a.key(t)), Some(PeerKey::V4([10, 0, 0, 1])));
        assert_eq!(a.admit(peer(1, false), 2), Err(Refusal::TooManyFromAddress));
        assert!(a.admit(peer(2, false), 2).is_ok(), "another address");
        a.release(k1);
        assert!(a.admit(peer(1, false), 2).is_ok());
        a.release(k2);
        assert_eq!(a.addresses(), 2);
        a.release(k2);
        assert_eq!(a.addresses(), 1, "the first address is free again");
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
