//! Framing, version negotiation, and the new side against a scripted old side.

use super::fd_count_lock;
use crate::net::upgrade::UpgradeError;
use crate::net::upgrade::channel::{Inbox, Outbox, Recv};
use crate::net::upgrade::protocol::{
    CHANNEL_VERSION, FdTag, Hello, MAX_FRAME, ToNew, ToOld, decode, encode, negotiate,
};
use crate::net::upgrade::{Received, Takeover};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::thread;

/// What a new program whose own state version is 5 says.
fn hello_reading(reads: &[u32]) -> Hello {
    Hello {
        channel: CHANNEL_VERSION,
        program: "natter 9.9".into(),
        reads: reads.to_vec(),
    }
}

#[test]
fn the_new_program_reads_its_own_state_version_and_the_one_before_and_no_other() {
    let hello = hello_reading(&[5, 4]);
    assert_eq!(negotiate(5, &hello).unwrap(), 5);
    assert_eq!(negotiate(4, &hello).unwrap(), 4);
    for refused in [3, 6, 0] {
        let err = negotiate(refused, &hello).unwrap_err();
        assert!(
            matches!(&err, UpgradeError::StateVersion { offered, reads, .. }
                if *offered == refused && reads == &[5, 4]),
            "{err:?}"
        );
    }
    let err = negotiate(3, &hello).unwrap_err().to_string();
    assert_eq!(
        err,
        "the new program (natter 9.9) cannot read state version 3 (it reads [5, 4])"
    );
}

#[test]
fn another_channel_protocol_is_refused_before_the_state_versions() {
    let mut hello = hello_reading(&[5]);
    hello.channel = CHANNEL_VERSION + 1;
    let err = negotiate(5, &hello).unwrap_err();
    assert!(
        matches!(err, UpgradeError::ChannelVersion { theirs, .. } if theirs == CHANNEL_VERSION + 1)
    );
}

#[test]
fn a_frame_decodes_only_once_it_is_whole_and_then_exactly() {
    let msg = ToNew::Fds(vec![FdTag::Listener(2), FdTag::Conn(u64::MAX)]);
    let mut bytes = encode(&msg).unwrap();
    let whole = bytes.len();
    bytes.extend(encode(&ToNew::Commit).unwrap());
    for cut in 0..whole {
        assert!(
            decode::<ToNew>(&bytes[..cut]).unwrap().is_none(),
            "cut at {cut}"
        );
    }
    assert_eq!(decode::<ToNew>(&bytes).unwrap(), Some((msg, whole)));
    assert_eq!(
        decode::<ToNew>(&bytes[whole..]).unwrap().map(|(m, _)| m),
        Some(ToNew::Commit)
    );
}

#[test]
fn an_overlong_frame_is_refused_without_waiting_for_it() {
    let prefix = ((MAX_FRAME + 1) as u32).to_le_bytes();
    assert!(matches!(
        decode::<ToOld>(&prefix),
        Err(UpgradeError::Protocol(_))
    ));
    let huge = ToOld::Abort("x".repeat(MAX_FRAME + 1));
    assert!(matches!(encode(&huge), Err(UpgradeError::Protocol(_))));
}

/// Runs `old` as the old process's side in a thread, and `receive` + `confirm` as the new
/// side; returns both results.
fn against_scripted_old(
    reads: &'static [u32],
    old: impl FnOnce(&mut Outbox, &mut Inbox, &UnixStream) + Send + 'static,
) -> (
    Result<Received, UpgradeError>,
    Option<Result<(), UpgradeError>>,
) {
    let _lock = fd_count_lock();
    let (old_end, new_end) = UnixStream::pair().unwrap();
    let script = thread::spawn(move || {
        let mut inbox = Inbox::default();
        let hello = next_to_old(&mut inbox, &old_end);
        assert!(matches!(hello, ToOld::Hello(h) if h.reads == reads));
        old(&mut Outbox::default(), &mut inbox, &old_end);
    });
    let mut takeover = Takeover::new(new_end, None);
    let received = takeover.receive("natter test", reads);
    let confirmed = received.is_ok().then(|| takeover.confirm());
    script.join().unwrap();
    (received, confirmed)
}

fn next_to_old(inbox: &mut Inbox, sock: &UnixStream) -> ToOld {
    loop {
        if let Some(msg) = inbox.message().unwrap() {
            return msg;
        }
        assert!(matches!(inbox.fill(sock.as_fd()).unwrap(), Recv::Data(_)));
    }
}

fn send(outbox: &mut Outbox, sock: &UnixStream, msg: &ToNew, raw: &[u8]) {
    outbox.push(msg).unwrap();
    outbox.push_raw(raw.to_vec(), Vec::new());
    assert!(outbox.flush(sock.as_fd(), &mut |_| None).unwrap());
}

fn state(version: u32, len: usize) -> ToNew {
    ToNew::State {
        version,
        len: len as u64,
        confirm_within_ms: 5_000,
    }
}

#[test]
fn the_new_side_refuses_a_state_version_it_did_not_ask_for() {
    let (received, _) = against_scripted_old(&[5, 4], |out, _, sock| {
        send(out, sock, &state(3, 0), b"");
    });
    let err = received.unwrap_err();
    assert!(
        matches!(err, UpgradeError::StateVersion { offered: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn the_new_side_gets_the_state_and_serves_only_after_commit() {
    let (received, confirmed) = against_scripted_old(&[5, 4], |out, inbox, sock| {
        send(out, sock, &state(4, 3), b"abc");
        send(out, sock, &ToNew::End { fds: 0 }, b"");
        assert_eq!(next_to_old(inbox, sock), ToOld::Confirm);
        send(out, sock, &ToNew::Commit, b"");
    });
    let received = received.unwrap();
    assert_eq!(
        (received.state_version, received.state.as_slice()),
        (4, &b"abc"[..])
    );
    assert!(confirmed.unwrap().is_ok());
}

#[test]
fn the_new_side_fails_if_the_channel_ends_after_confirm_without_commit() {
    let (received, confirmed) = against_scripted_old(&[5], |out, inbox, sock| {
        send(out, sock, &state(5, 0), b"");
        send(out, sock, &ToNew::End { fds: 0 }, b"");
        assert_eq!(next_to_old(inbox, sock), ToOld::Confirm);
    });
    assert!(received.is_ok());
    assert!(
        matches!(confirmed, Some(Err(UpgradeError::Closed))),
        "{confirmed:?}"
    );
}

#[test]
fn the_new_side_checks_the_descriptor_count() {
    let (received, _) = against_scripted_old(&[5], |out, _, sock| {
        send(out, sock, &state(5, 0), b"");
        send(out, sock, &ToNew::End { fds: 2 }, b"");
    });
    assert!(
        matches!(received, Err(UpgradeError::Protocol(_))),
        "{received:?}"
    );
}
