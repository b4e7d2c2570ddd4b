//! Stream entry ids: `ms-seq`, where `ms` is the Redis server's clock when the entry was added.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The id Redis gave a log entry. Ids grow strictly in log order; `ms` is the Redis server's
/// time in milliseconds when the entry was added (the same clock for every node, which is why
/// node liveness is judged by it and not by local clocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds of the Redis server's clock.
    pub ms: u64,
    /// Sequence number among the entries of the same millisecond.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Text that is not a stream id `MS-SEQ`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a stream id (MS-SEQ): {0:?}")]
pub struct BadStreamId(pub String);

impl FromStr for StreamId {
    type Err = BadStreamId;

    fn from_str(s: &str) -> Result<StreamId, BadStreamId> {
        let bad = || BadStreamId(s.to_owned());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let number = |part: &str| {
            // u64's parser accepts a leading '+'; Redis never writes one.
            if part.starts_with('+') {
                return Err(bad());
            }
            part.parse::<u64>().map_err(|_| bad())
        };
        Ok(StreamId {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

impl StreamId {
    /// Parses the bytes of an id as Redis sends them.
    pub fn from_bytes(bytes: &[u8]) -> Result<StreamId, BadStreamId> {
        std::str::from_utf8(bytes)
            .map_err(|_| BadStreamId(String::from_utf8_lossy(bytes).into_owned()))?
            .parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order_by_ms_then_seq() {
        let id: StreamId = "1700000000123-7".parse().unwrap();
        assert_eq!(
            id,
            StreamId {
                ms: 1_700_000_000_123,
                seq: 7
            }
        );
        assert_eq!(id.to_string(), "1700000000123-7");
        assert_eq!(
            StreamId::from_bytes(b"1-0").unwrap(),
            StreamId { ms: 1, seq: 0 }
        );
        assert!(StreamId { ms: 1, seq: 9 } < StreamId { ms: 2, seq: 0 });
        assert!(StreamId { ms: 2, seq: 0 } < StreamId { ms: 2, seq: 1 });
        assert_eq!(StreamId::ZERO.to_string(), "0-0");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "", "12", "1-", "-1", "a-1", "1-b", "+1-2", "1-+2", "1-2-3", " 1-2",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
        assert!(StreamId::from_bytes(b"\xff-1").is_err());
    }
}
