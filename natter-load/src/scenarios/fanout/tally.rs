//! Delivery bookkeeping of `fanout`, separate from sockets so it is unit-tested: which
//! receiver has which message, in order or not, once or twice, and which messages every
//! receiver has (the senders' flow-control window).

/// What every receiver got, per sender and sequence number.
#[derive(Debug)]
pub struct Tally {
    senders: usize,
    messages: u32,
    receivers: usize,
    /// Bit per (receiver, sender, seq): delivered at least once.
    seen: Vec<u64>,
    /// Per (receiver, sender): next expected seq.
    next: Vec<u32>,
    /// Per (sender, seq): how many receivers have it.
    have: Vec<u32>,
    /// Per sender: every seq below this is at every receiver.
    acked: Vec<u32>,
    /// Unique deliveries.
    pub delivered: u64,
    /// Deliveries that were not the next expected seq of their (receiver, sender).
    pub out_of_order: u64,
    /// Deliveries of a message the receiver already had.
    pub duplicates: u64,
    /// Lines that looked like load messages but were malformed or out of range.
    pub garbled: u64,
}

impl Tally {
    /// Empty tally for the given shape.
    pub fn new(receivers: usize, senders: usize, messages: u32) -> Tally {
        let m = messages as usize;
        Tally {
            senders,
            messages,
            receivers,
            seen: vec![0; (receivers * senders * m).div_ceil(64)],
            next: vec![0; receivers * senders],
            have: vec![0; senders * m],
            acked: vec![0; senders],
            delivered: 0,
            out_of_order: 0,
            duplicates: 0,
            garbled: 0,
        }
    }

    /// Records that `receiver` got (`sender`, `seq`); returns true when this delivery was the
    /// last receiver's (the message is now at every receiver).
    pub fn record(&mut self, receiver: usize, sender: usize, seq: u32) -> bool {
        if sender >= self.senders || seq >= self.messages || receiver >= self.receivers {
            self.garbled += 1;
            return false;
        }
        let pair = receiver * self.senders + sender;
        let bit = pair * self.messages as usize + seq as usize;
        if self.seen[bit / 64] & (1 << (bit % 64)) != 0 {
            self.duplicates += 1;
            return false;
        }
        self.seen[bit / 64] |= 1 << (bit % 64);
        self.delivered += 1;
        if seq == self.next[pair] {
            self.next[pair] += 1;
        } else {
            self.out_of_order += 1;
            self.next[pair] = self.next[pair].max(seq + 1);
        }
        let h = sender * self.messages as usize + seq as usize;
        self.have[h] += 1;
        let base = sender * self.messages as usize;
        while self.acked[sender] < self.messages
            && self.have[base + self.acked[sender] as usize] == self.receivers as u32
        {
            self.acked[sender] += 1;
        }
        self.have[h] == self.receivers as u32
    }

    /// Messages of `sender` received by every receiver, as a prefix count.
    pub fn acked(&self, sender: usize) -> u32 {
        self.acked[sender]
    }

    /// Deliveries expected in all.
    pub fn expected(&self) -> u64 {
        self.receivers as u64 * self.senders as u64 * u64::from(self.messages)
    }

    /// Expected deliveries that did not arrive.
    pub fn lost(&self) -> u64 {
        self.expected() - self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_in_order() {
        let mut t = Tally::new(2, 1, 3);
        for seq in 0..3 {
            assert!(!t.record(0, 0, seq));
            assert_eq!(t.acked(0), seq);
            assert!(
                t.record(1, 0, seq),
                "the last receiver completes the message"
            );
            assert_eq!(t.acked(0), seq + 1);
        }
        assert_eq!(
            (t.delivered, t.lost(), t.out_of_order, t.duplicates),
            (6, 0, 0, 0)
        );
    }

    #[test]
    fn tally_gap_reorder_duplicate() {
        let mut t = Tally::new(1, 2, 4);
        assert!(t.record(0, 1, 0));
        assert!(t.record(0, 1, 2)); // gap: out of order
        assert!(t.record(0, 1, 1)); // late: out of order
        assert!(!t.record(0, 1, 1)); // duplicate
        assert!(!t.record(0, 5, 0)); // no such sender
        assert_eq!(t.delivered, 3);
        assert_eq!(t.out_of_order, 2);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.garbled, 1);
        assert_eq!(t.acked(1), 3);
        assert_eq!(t.acked(0), 0);
        assert_eq!(t.lost(), 8 - 3);
    }
}
