//! RESP2 framing through the sans-I/O `redis-protocol` crate: commands out as arrays of bulk
//! strings, replies in from a byte buffer ("incomplete" until a reply is whole).

use bytes::BytesMut;
use redis_protocol::error::RedisProtocolError;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::BorrowedFrame;
use thiserror::Error;

/// One decoded reply. Its strings are slices of the read buffer (no copy).
pub(super) use redis_protocol::resp2::types::BytesFrame as Frame;

/// Most arguments one command of ours has (XREAD BLOCK ms COUNT n STREAMS key id has 8).
const MAX_ARGS: usize = 16;

/// Bytes Redis sent that are not a RESP2 reply.
#[derive(Debug, Error)]
#[error("not a RESP2 reply: {0}")]
pub struct CodecError(String);

impl From<RedisProtocolError> for CodecError {
    fn from(e: RedisProtocolError) -> CodecError {
        CodecError(e.to_string())
    }
}

/// Appends one command (an array of bulk strings) to `out`.
///
/// # Panics
/// If `args` is empty or longer than [`MAX_ARGS`]: every command is written in this module's
/// callers, so either is a bug, not something Redis or a client can cause.
pub(super) fn encode_command(out: &mut BytesMut, args: &[&[u8]]) {
    assert!(
        !args.is_empty() && args.len() <= MAX_ARGS,
        "a command has 1 to {MAX_ARGS} arguments"
    );
    let mut parts = [const { BorrowedFrame::Null }; MAX_ARGS];
    for (part, arg) in parts.iter_mut().zip(args) {
        *part = BorrowedFrame::BulkString(arg);
    }
    let frame = BorrowedFrame::Array(&parts[..args.len()]);
    // Encoding an array of bulk strings into a growable buffer cannot fail.
    extend_encode_borrowed(out, &frame, false).expect("encode an array of bulk strings");
}

/// Takes one whole reply off the front of `buf`; `Ok(None)` while the reply is incomplete (the
/// buffer is then left as it was).
pub(super) fn decode_reply(buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
    if buf.is_empty() {
        return Ok(None);
    }
    Ok(decode_bytes_mut(buf)?.map(|(frame, _, _)| frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Frame {
        Frame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&mut out, &[b"XADD", b"k", b"*", b"p", b"a\r\nb"]);
        encode_command(&mut out, &[b"GET", b""]);
        assert_eq!(
            &out[..],
            b"*5\r\n$4\r\nXADD\r\n$1\r\nk\r\n$1\r\n*\r\n$1\r\np\r\n$4\r\na\r\nb\r\n\
              *2\r\n$3\r\nGET\r\n$0\r\n\r\n"
        );
    }

    /// An XREAD reply: [[key, [[id, [field, value]], [id, [field, value]]]]].
    const XREAD_REPLY: &[u8] = b"*1\r\n*2\r\n$5\r\nmylog\r\n*2\r\n\
        *2\r\n$3\r\n1-0\r\n*2\r\n$1\r\np\r\n$5\r\nhello\r\n\
        *2\r\n$3\r\n2-5\r\n*2\r\n$1\r\np\r\n$0\r\n\r\n";

    fn xread_frame() -> Frame {
        let entry = |id: &str, payload: &str| {
            Frame::Array(vec![bulk(id), Frame::Array(vec![bulk("p"), bulk(payload)])])
        };
        Frame::Array(vec![Frame::Array(vec![
            bulk("mylog"),
            Frame::Array(vec![entry("1-0", "hello"), entry("2-5", "")]),
        ])])
    }

    #[test]
    fn a_reply_split_at_every_byte_is_incomplete_until_whole() {
        for split in 0..XREAD_REPLY.len() {
            let mut buf = BytesMut::from(&XREAD_REPLY[..split]);
            assert!(
                decode_reply(&mut buf).unwrap().is_none(),
                "split at {split}"
            );
            assert_eq!(buf.len(), split, "an incomplete reply stays in the buffer");
            buf.extend_from_slice(&XREAD_REPLY[split..]);
            assert_eq!(decode_reply(&mut buf).unwrap(), Some(xread_frame()));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_reply_fed_one_byte_at_a_time_decodes_once() {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &b in XREAD_REPLY {
            buf.extend_from_slice(&[b]);
            if let Some(frame) = decode_reply(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![xread_frame()]);
    }

    #[test]
    fn pipelined_replies_decode_in_order() {
        let mut buf = BytesMut::from(
            &b"+OK\r\n$-1\r\n*-1\r\n:42\r\n-ERR wrong number of arguments\r\n$3\r\n1-2\r\n+PA"[..],
        );
        let mut frames = Vec::new();
        while let Some(frame) = decode_reply(&mut buf).unwrap() {
            frames.push(frame);
        }
        assert_eq!(
            frames,
            vec![
                Frame::SimpleString(Bytes::from_static(b"OK")),
                Frame::Null,
                Frame::Null,
                Frame::Integer(42),
                Frame::Error("ERR wrong number of arguments".into()),
                bulk("1-2"),
            ]
        );
        assert_eq!(
            &buf[..],
            b"+PA",
            "the unfinished reply waits for more bytes"
        );
    }

    #[test]
    fn bytes_that_are_not_resp_are_an_error() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 400 Bad Request\r\n"[..]);
        assert!(decode_reply(&mut buf).is_err());
    }
}
