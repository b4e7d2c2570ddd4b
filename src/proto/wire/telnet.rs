//! Telnet command decoding: strips every telnet command from the input stream and tells the
//! caller what to do about it, keeping its state across reads.
//!
//! natter starts no negotiation and keeps every option off (RFC 1143): each `WILL x` is refused
//! with `DONT x`, each `DO x` with `WONT x`, and `WONT`/`DONT` are never answered, so no loop can
//! start. Subnegotiations (`SB ... SE`) are skipped whole and nothing of them is stored.

/// Interpret As Command: starts every telnet command.
pub const IAC: u8 = 255;
/// Refuse or stop an option on the peer's side.
pub const DONT: u8 = 254;
/// Ask the peer to enable an option.
pub const DO: u8 = 253;
/// Refuse or stop an option on our side.
pub const WONT: u8 = 252;
/// Offer to enable an option.
pub const WILL: u8 = 251;
/// Start of a subnegotiation.
pub const SB: u8 = 250;
/// Erase Line.
pub const EL: u8 = 248;
/// Erase Character.
pub const EC: u8 = 247;
/// Are You There.
pub const AYT: u8 = 246;
/// Interrupt Process (Ctrl-C in a telnet client).
pub const IP: u8 = 244;
/// End of a subnegotiation.
pub const SE: u8 = 240;

/// What one input byte turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TelnetEvent {
    /// A data byte for the line assembler (`IAC IAC` yields 0xFF).
    Data(u8),
    /// Three bytes to send back to the peer (an option refusal).
    Reply([u8; 3]),
    /// `IAC IP`: the user pressed Ctrl-C.
    Interrupt,
    /// `IAC AYT`: the peer asks whether we are still there.
    AreYouThere,
    /// `IAC EC`: erase the previous character of the pending line.
    EraseChar,
    /// `IAC EL`: erase the whole pending line.
    EraseLine,
}

/// Where the decoder is inside a telnet command; one byte of state per connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TelnetDecoder {
    /// Plain data.
    #[default]
    Data,
    /// After `IAC`.
    Iac,
    /// After `IAC WILL/WONT/DO/DONT`; holds the verb, waiting for the option byte.
    Option(u8),
    /// Inside `IAC SB ...`, skipping.
    Sub,
    /// Inside a subnegotiation, after an `IAC`.
    SubIac,
}

impl TelnetDecoder {
    /// Feeds one byte; returns what it means, or `None` when it was swallowed.
    pub fn step(&mut self, byte: u8) -> Option<TelnetEvent> {
        match *self {
            TelnetDecoder::Data => {
                if byte == IAC {
                    *self = TelnetDecoder::Iac;
                    None
                } else {
                    Some(TelnetEvent::Data(byte))
                }
            }
            TelnetDecoder::Iac => {
                *self = TelnetDecoder::Data;
                match byte {
                    IAC => Some(TelnetEvent::Data(IAC)),
                    WILL | WONT | DO | DONT => {
                        *self = TelnetDecoder::Option(byte);
                        None
                    }
                    SB => {
                        *self = TelnetDecoder::Sub;
                        None
                    }
                    IP => Some(TelnetEvent::Interrupt),
                    AYT => Some(TelnetEvent::AreYouThere),
                    EC => Some(TelnetEvent::EraseChar),
                    EL => Some(TelnetEvent::EraseLine),
                    _ => None,
                }
            }
            TelnetDecoder::Option(verb) => {
                *self = TelnetDecoder::Data;
                match verb {
                    WILL => Some(TelnetEvent::Reply([IAC, DONT, byte])),
                    DO => Some(TelnetEvent::Reply([IAC, WONT, byte])),
                    _ => None,
                }
            }
            TelnetDecoder::Sub => {
                if byte == IAC {
                    *self = TelnetDecoder::SubIac;
                }
                None
            }
            TelnetDecoder::SubIac => {
                // `IAC SE` ends the subnegotiation; `IAC IAC` is an escaped data byte inside it.
                *self = if byte == SE {
                    TelnetDecoder::Data
                } else {
                    TelnetDecoder::Sub
                };
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> Vec<TelnetEvent> {
        let mut d = TelnetDecoder::default();
        input.iter().filter_map(|&b| d.step(b)).collect()
    }

    fn data(bytes: &[u8]) -> Vec<TelnetEvent> {
        bytes.iter().map(|&b| TelnetEvent::Data(b)).collect()
    }

    #[test]
    fn plain_data_passes_through() {
        assert_eq!(decode(b"hi\r\n"), data(b"hi\r\n"));
    }

    #[test]
    fn iac_iac_is_a_data_byte() {
        assert_eq!(decode(&[b'a', IAC, IAC, b'b']), data(&[b'a', 0xFF, b'b']));
    }

    #[test]
    fn will_and_do_are_refused_wont_and_dont_ignored() {
        assert_eq!(
            decode(&[IAC, WILL, 31, IAC, DO, 1, IAC, WONT, 5, IAC, DONT, 6]),
            vec![
                TelnetEvent::Reply([IAC, DONT, 31]),
                TelnetEvent::Reply([IAC, WONT, 1]),
            ]
        );
    }

    #[test]
    fn subnegotiation_is_skipped_whole() {
        let mut input = vec![b'x', IAC, SB, 31, 0, 80, IAC, IAC, 0, 24];
        input.extend(std::iter::repeat_n(b'z', 10_000));
        input.extend([IAC, SE, b'y']);
        assert_eq!(decode(&input), data(b"xy"));
    }

    #[test]
    fn two_byte_commands() {
        assert_eq!(
            decode(&[IAC, IP, IAC, AYT, IAC, EC, IAC, EL, IAC, 241, b'q']),
            vec![
                TelnetEvent::Interrupt,
                TelnetEvent::AreYouThere,
                TelnetEvent::EraseChar,
                TelnetEvent::EraseLine,
                TelnetEvent::Data(b'q'),
            ]
        );
    }

    #[test]
    fn state_survives_any_split() {
        let input = [b'a', IAC, WILL, 24, IAC, SB, 1, 2, IAC, SE, IAC, IAC, b'b'];
        let whole = decode(&input);
        for split in 0..=input.len() {
            let mut d = TelnetDecoder::default();
            let (a, b) = input.split_at(split);
            let mut got: Vec<_> = a.iter().filter_map(|&x| d.step(x)).collect();
            got.extend(b.iter().filter_map(|&x| d.step(x)));
            assert_eq!(got, whole, "split at {split}");
        }
    }
}
