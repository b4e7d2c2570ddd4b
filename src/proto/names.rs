//! Nicknames and room names: validated once at the edge, stored inline (no heap), compared
//! without regard to ASCII case and shown as typed.

use std::hash::{BuildHasher, Hasher};
use thiserror::Error;

/// Longest nickname, in ASCII characters.
pub const MAX_NICK: usize = 24;
/// Longest room name (without the `#`), in ASCII characters.
pub const MAX_ROOM: usize = 32;

/// Why a name was refused (what the user is told is in [`crate::proto::reply::bad_name`]).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Not a valid nickname.
    #[error("not a valid nickname (1 to 24 letters, digits, _ or -, starting with a letter)")]
    Nick,
    /// Not a valid room name.
    #[error("not a valid room name (1 to 32 letters, digits, _, - or .)")]
    Room,
}

/// An ASCII name of at most `N` bytes, stored inline.
#[derive(Clone, Copy)]
pub struct InlineName<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> InlineName<N> {
    /// The empty name (used for "no nickname yet").
    pub const EMPTY: Self = InlineName {
        bytes: [0; N],
        len: 0,
    };

    fn from_ascii(s: &str) -> Self {
        let mut bytes = [0; N];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        InlineName {
            bytes,
            len: s.len() as u8,
        }
    }

    /// The name as typed.
    pub fn as_str(&self) -> &str {
        // Only validated ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    /// Whether this is the empty name.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `other` names the same thing, ignoring ASCII case.
    pub fn matches(&self, other: &str) -> bool {
        self.as_str().eq_ignore_ascii_case(other)
    }
}

impl<const N: usize> PartialEq for InlineName<N> {
    /// Exact (case-sensitive) equality.
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for InlineName<N> {}

impl<const N: usize> std::fmt::Debug for InlineName<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Display for InlineName<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid nickname: 1 to 24 ASCII characters, a letter first, then letters, digits, `_`, `-`.
pub type Nick = InlineName<MAX_NICK>;
/// A valid room name without its `#`: 1 to 32 ASCII letters, digits, `_`, `-` or `.`.
pub type RoomName = InlineName<MAX_ROOM>;

/// Parses a nickname.
pub fn parse_nick(s: &str) -> Result<Nick, NameError> {
    let b = s.as_bytes();
    let valid = (1..=MAX_NICK).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if valid {
        Ok(Nick::from_ascii(s))
    } else {
        Err(NameError::Nick)
    }
}

/// Parses a room name, typed with or without a leading `#`.
pub fn parse_room(s: &str) -> Result<RoomName, NameError> {
    let s = s.strip_prefix('#').unwrap_or(s);
    let b = s.as_bytes();
    let valid = (1..=MAX_ROOM).contains(&b.len())
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    if valid {
        Ok(RoomName::from_ascii(s))
    } else {
        Err(NameError::Room)
    }
}

/// Hashes a name without regard to ASCII case, so equal-ignoring-case names hash alike.
pub fn folded_hash(hasher: &impl BuildHasher, name: &str) -> u64 {
    let mut h = hasher.build_hasher();
    for b in name.bytes() {
        h.write_u8(b.to_ascii_lowercase());
    }
    h.write_u8(0xFF);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_rules() {
        assert_eq!(
            parse_nick("alice").map(|n| n.to_string()),
            Ok("alice".into())
        );
        assert!(parse_nick("A_b-9").is_ok());
        assert!(parse_nick(&"a".repeat(24)).is_ok());
        assert_eq!(parse_nick(&"a".repeat(25)), Err(NameError::Nick));
        for bad in ["", "9lives", "_x", "a b", "é", "a.b", "-a"] {
            assert_eq!(parse_nick(bad), Err(NameError::Nick), "{bad:?}");
        }
    }

    #[test]
    fn room_rules() {
        assert_eq!(
            parse_room("#Rust.dev").map(|r| r.to_string()),
            Ok("Rust.dev".into())
        );
        assert_eq!(
            parse_room("lobby").map(|r| r.to_string()),
            Ok("lobby".into())
        );
        assert!(parse_room(&"r".repeat(32)).is_ok());
        for bad in ["", "#", "##a", "a b", &"r".repeat(33), "a/b"] {
            assert_eq!(parse_room(bad), Err(NameError::Room), "{bad:?}");
        }
    }

    #[test]
    fn names_compare_and_hash_without_case() {
        let s = std::hash::RandomState::new();
        let n = parse_nick("Alice").unwrap();
        assert!(n.matches("aLICE"));
        assert_eq!(n.as_str(), "Alice");
        assert_eq!(folded_hash(&s, "Alice"), folded_hash(&s, "ALICE"));
    }
}
