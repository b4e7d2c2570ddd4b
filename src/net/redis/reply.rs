//! Reading the replies of the commands the log sends: typed values or a clear complaint.

use super::codec::Frame;
use super::id::StreamId;
use bytes::Bytes;
use thiserror::Error;

/// The field of a stream entry that holds the payload (`XADD key * p PAYLOAD`).
pub(super) const PAYLOAD_FIELD: &[u8] = b"p";

/// A reply that is not what the command returns.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// Redis answered with an error reply.
    #[error("Redis refused {command}: {message}")]
    Refused {
        /// The command.
        command: &'static str,
        /// Redis' own words.
        message: String,
    },
    /// A reply of a shape the command does not return.
    #[error("Redis answered {command} with {reply}, which is not what the command returns")]
    Unexpected {
        /// The command.
        command: &'static str,
        /// The reply, abridged.
        reply: String,
    },
}

impl ReplyError {
    fn unexpected(command: &'static str, frame: &Frame) -> ReplyError {
        let mut reply = format!("{frame:?}");
        if reply.len() > 200 {
            reply.truncate(reply.floor_char_boundary(200));
            reply.push_str("...");
        }
        ReplyError::Unexpected { command, reply }
    }
}

/// The error reply, if `frame` is one.
pub(super) fn refused(command: &'static str, frame: &Frame) -> Result<(), ReplyError> {
    match frame {
        Frame::Error(message) => Err(ReplyError::Refused {
            command,
            message: message.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A bulk or simple string.
pub(super) fn string(command: &'static str, frame: Frame) -> Result<Bytes, ReplyError> {
    refused(command, &frame)?;
    match frame {
        Frame::BulkString(b) | Frame::SimpleString(b) => Ok(b),
        other => Err(ReplyError::unexpected(command, &other)),
    }
}

/// A bulk string, or `None` for nil.
pub(super) fn optional_string(
    command: &'static str,
    frame: Frame,
) -> Result<Option<Bytes>, ReplyError> {
    match frame {
        Frame::Null => Ok(None),
        other => string(command, other).map(Some),
    }
}

/// An integer reply.
pub(super) fn integer(command: &'static str, frame: Frame) -> Result<i64, ReplyError> {
    refused(command, &frame)?;
    match frame {
        Frame::Integer(n) => Ok(n),
        other => Err(ReplyError::unexpected(command, &other)),
    }
}

/// A stream id given as a string (the reply of XADD).
pub(super) fn stream_id(command: &'static str, frame: Frame) -> Result<StreamId, ReplyError> {
    let text = string(command, frame)?;
    StreamId::from_bytes(&text)
        .map_err(|_| ReplyError::unexpected(command, &Frame::BulkString(text)))
}

/// The entries of an `XREAD ... STREAMS key id` reply for one key, in log order; nil (the
/// blocking read timed out) is no entries. An entry without a payload field (not written by
/// natter) has `None`.
pub(super) fn xread_entries(frame: Frame) -> Result<Vec<(StreamId, Option<Bytes>)>, ReplyError> {
    const CMD: &str = "XREAD";
    refused(CMD, &frame)?;
    let streams = match frame {
        Frame::Null => return Ok(Vec::new()),
        Frame::Array(streams) => streams,
        other => return Err(ReplyError::unexpected(CMD, &other)),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Frame::Array(mut key_and_entries) = stream else {
            return Err(ReplyError::unexpected(CMD, &stream));
        };
        let Some(Frame::Array(entries)) = key_and_entries.pop() else {
            return Err(ReplyError::unexpected(CMD, &Frame::Array(key_and_entries)));
        };
        for entry in entries {
            out.push(xread_entry(entry)?);
        }
    }
    Ok(out)
}

/// `[id, [field, value, ...]]` (the fields are nil for an entry deleted meanwhile).
fn xread_entry(entry: Frame) -> Result<(StreamId, Option<Bytes>), ReplyError> {
    const CMD: &str = "XREAD";
    let Frame::Array(parts) = entry else {
        return Err(ReplyError::unexpected(CMD, &entry));
    };
    let (id, fields) = match <[Frame; 2]>::try_from(parts) {
        Ok([Frame::BulkString(id), fields]) => (id, fields),
        Ok(parts) => return Err(ReplyError::unexpected(CMD, &Frame::Array(parts.into()))),
        Err(parts) => return Err(ReplyError::unexpected(CMD, &Frame::Array(parts))),
    };
    let id = StreamId::from_bytes(&id)
        .map_err(|_| ReplyError::unexpected(CMD, &Frame::BulkString(id.clone())))?;
    let payload = match fields {
        Frame::Array(fields) => payload_field(fields),
        _ => None,
    };
    Ok((id, payload))
}

fn payload_field(fields: Vec<Frame>) -> Option<Bytes> {
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if let (Frame::BulkString(name), Frame::BulkString(value)) = (name, value)
            && name == PAYLOAD_FIELD
        {
            return Some(value);
        }
    }
    None
}

/// `HMGET snapshot ms seq blob`: the id and blob of the stored snapshot, `None` when there is
/// none.
pub(super) fn snapshot(frame: Frame) -> Result<Option<(StreamId, Bytes)>, ReplyError> {
    const CMD: &str = "HMGET";
    refused(CMD, &frame)?;
    let Frame::Array(parts) = frame else {
        return Err(ReplyError::unexpected(CMD, &frame));
    };
    match <[Frame; 3]>::try_from(parts) {
        Ok([Frame::Null, Frame::Null, Frame::Null]) => Ok(None),
        Ok(
            [
                Frame::BulkString(ms),
                Frame::BulkString(seq),
                Frame::BulkString(blob),
            ],
        ) => match (decimal(&ms), decimal(&seq)) {
            (Some(ms), Some(seq)) => Ok(Some((StreamId { ms, seq }, blob))),
            _ => Err(ReplyError::Unexpected {
                command: CMD,
                reply: format!("a snapshot id {ms:?}-{seq:?}"),
            }),
        },
        Ok(parts) => Err(ReplyError::unexpected(CMD, &Frame::Array(parts.into()))),
        Err(parts) => Err(ReplyError::unexpected(CMD, &Frame::Array(parts))),
    }
}

/// `TIME`: the Redis server's clock in milliseconds.
pub(super) fn time_ms(frame: Frame) -> Result<u64, ReplyError> {
    const CMD: &str = "TIME";
    refused(CMD, &frame)?;
    if let Frame::Array(parts) = &frame
        && let [Frame::BulkString(secs), Frame::BulkString(micros)] = &parts[..]
        && let (Some(secs), Some(micros)) = (decimal(secs), decimal(micros))
    {
        return Ok(secs * 1000 + micros / 1000);
    }
    Err(ReplyError::unexpected(CMD, &frame))
}

/// A number Redis sent as a bulk string.
fn decimal(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::redis::codec::decode_reply;
    use bytes::BytesMut;

    fn frame(bytes: &[u8]) -> Frame {
        decode_reply(&mut BytesMut::from(bytes)).unwrap().unwrap()
    }

    #[test]
    fn xread_entries_come_out_in_order_with_their_payloads() {
        let reply = frame(
            b"*1\r\n*2\r\n$3\r\nlog\r\n*3\r\n\
              *2\r\n$3\r\n1-0\r\n*2\r\n$1\r\np\r\n$2\r\nhi\r\n\
              *2\r\n$3\r\n1-1\r\n*4\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\np\r\n$0\r\n\r\n\
              *2\r\n$3\r\n2-0\r\n*2\r\n$1\r\nq\r\n$1\r\nz\r\n",
        );
        let entries = xread_entries(reply).unwrap();
        assert_eq!(
            entries,
            vec![
                (StreamId { ms: 1, seq: 0 }, Some(Bytes::from_static(b"hi"))),
                (StreamId { ms: 1, seq: 1 }, Some(Bytes::new())),
                (StreamId { ms: 2, seq: 0 }, None),
            ]
        );
    }

    #[test]
    fn a_timed_out_xread_is_no_entries_and_errors_are_named() {
        assert!(xread_entries(frame(b"*-1\r\n")).unwrap().is_empty());
        assert_eq!(
            xread_entries(frame(b"-WRONGTYPE Operation against a key\r\n")),
            Err(ReplyError::Refused {
                command: "XREAD",
                message: "WRONGTYPE Operation against a key".into()
            })
        );
        assert!(matches!(
            xread_entries(frame(b":1\r\n")),
            Err(ReplyError::Unexpected { .. })
        ));
        assert!(matches!(
            xread_entries(frame(
                b"*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$2\r\nxx\r\n*0\r\n"
            )),
            Err(ReplyError::Unexpected { .. })
        ));
    }

    #[test]
    fn snapshots_time_and_scalars_parse() {
        assert_eq!(
            snapshot(frame(b"*3\r\n$-1\r\n$-1\r\n$-1\r\n")).unwrap(),
            None
        );
        assert_eq!(
            snapshot(frame(b"*3\r\n$2\r\n12\r\n$1\r\n3\r\n$3\r\nabc\r\n")).unwrap(),
            Some((StreamId { ms: 12, seq: 3 }, Bytes::from_static(b"abc")))
        );
        assert!(snapshot(frame(b"*3\r\n$2\r\nxx\r\n$1\r\n3\r\n$3\r\nabc\r\n")).is_err());
        assert_eq!(
            time_ms(frame(b"*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n")).unwrap(),
            1_700_000_000_123
        );
        assert_eq!(integer("INCR", frame(b":7\r\n")).unwrap(), 7);
        assert_eq!(optional_string("GET", frame(b"$-1\r\n")).unwrap(), None);
        assert_eq!(
            stream_id("XADD", frame(b"$3\r\n5-6\r\n")).unwrap(),
            StreamId { ms: 5, seq: 6 }
        );
        assert!(stream_id("XADD", frame(b"-OOM no memory\r\n")).is_err());
    }
}
