//! Descriptors through a real socket pair: batches, metadata, close-on-exec, truncation.

use super::{connections, fd_count_lock, open_fds, raise_fd_limit};
use crate::net::upgrade::UpgradeError;
use crate::net::upgrade::channel::{Inbox, Outbox, Recv};
use crate::net::upgrade::protocol::{FdTag, MAX_FDS_PER_MESSAGE, ToNew};
use rustix::io::{FdFlags, fcntl_getfd};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Connection keys as a slab might hand them out: not 0..n.
fn key(i: usize) -> u64 {
    1000 + 7 * i as u64
}

/// Receives messages until `End`: each batch's tags with its descriptors, and the End count.
fn receive_all(inbox: &mut Inbox, sock: BorrowedFd<'_>) -> (Vec<Vec<(FdTag, OwnedFd)>>, u64) {
    let mut batches = Vec::new();
    loop {
        match inbox.message::<ToNew>().unwrap() {
            Some(ToNew::Fds(tags)) => {
                let fds = inbox.take_fds(tags.len()).unwrap();
                batches.push(tags.into_iter().zip(fds).collect());
            }
            Some(ToNew::End { fds }) => return (batches, fds),
            Some(other) => panic!("unexpected {other:?}"),
            None => assert!(matches!(inbox.fill(sock).unwrap(), Recv::Data(_))),
        }
    }
}

#[test]
fn passes_450_descriptors_in_batches_that_work_on_the_other_side() {
    let _lock = fd_count_lock();
    raise_fd_limit();
    let before = open_fds();
    {
        let (listener, servers, mut clients) = connections(449);
        let (old, new) = UnixStream::pair().unwrap();
        let mut tags = vec![FdTag::Listener(0)];
        tags.extend((0..servers.len()).map(|i| FdTag::Conn(key(i))));

        let mut outbox = Outbox::default();
        for batch in tags.chunks(MAX_FDS_PER_MESSAGE) {
            outbox
                .push_with_fds(&ToNew::Fds(batch.to_vec()), batch.to_vec())
                .unwrap();
        }
        outbox.push(&ToNew::End { fds: 450 }).unwrap();
        let mut resolve = |tag| match tag {
            FdTag::Listener(0) => Some(listener.as_fd()),
            FdTag::Conn(k) => servers.get(((k - 1000) / 7) as usize).map(|s| s.as_fd()),
            FdTag::Listener(_) => None,
        };
        assert!(outbox.flush(old.as_fd(), &mut resolve).unwrap());

        let mut inbox = Inbox::default();
        let (batches, announced) = receive_all(&mut inbox, new.as_fd());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [200, 200, 50]);
        assert_eq!(announced, 450);
        assert_eq!(inbox.pending_fds(), 0);
        let received: Vec<(FdTag, OwnedFd)> = batches.into_iter().flatten().collect();
        let got_tags: Vec<FdTag> = received.iter().map(|(tag, _)| *tag).collect();
        assert_eq!(got_tags, tags);
        for (tag, fd) in &received {
            let flags = fcntl_getfd(fd).unwrap();
            assert!(flags.contains(FdFlags::CLOEXEC), "{tag:?} lacks FD_CLOEXEC");
        }

        let mut received = received.into_iter();
        let (_, listener_fd) = received.next().unwrap();
        for ((_, fd), client) in received.zip(&mut clients) {
            check_conn(TcpStream::from(fd), client);
        }
        check_listener(TcpListener::from(listener_fd), &listener);
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
}

/// Bytes written by the client arrive on the received socket, and the other way round.
fn check_conn(received: TcpStream, client: &mut TcpStream) {
    let port = client.local_addr().unwrap().port();
    client
        .write_all(format!("ping {port}\n").as_bytes())
        .unwrap();
    assert_eq!(read_line(&received), format!("ping {port}\n"));
    (&received).write_all(b"pong\n").unwrap();
    assert_eq!(read_line(client), "pong\n");
}

/// A new connection to the original address is accepted on the received listener.
fn check_listener(received: TcpListener, original: &TcpListener) {
    let client = TcpStream::connect(original.local_addr().unwrap()).unwrap();
    let (accepted, from) = received.accept().unwrap();
    assert_eq!(from, client.local_addr().unwrap());
    drop(accepted);
}

fn read_line(stream: &TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn cut_off_descriptors_are_an_error_and_those_that_arrived_are_closed() {
    let _lock = fd_count_lock();
    let (old, new) = UnixStream::pair().unwrap();
    let files: Vec<std::fs::File> = (0..10)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let tags: Vec<FdTag> = (0..10).map(FdTag::Conn).collect();
    let mut outbox = Outbox::default();
    outbox
        .push_with_fds(&ToNew::Fds(tags.clone()), tags)
        .unwrap();
    let mut resolve = |tag| match tag {
        FdTag::Conn(i) => files.get(i as usize).map(|f| f.as_fd()),
        FdTag::Listener(_) => None,
    };
    assert!(outbox.flush(old.as_fd(), &mut resolve).unwrap());

    let before = open_fds();
    let mut inbox = Inbox::with_fd_room(2);
    let result = inbox.fill(new.as_fd());
    assert!(matches!(result, Err(UpgradeError::Truncated)), "{result:?}");
    assert_eq!(inbox.pending_fds(), 0);
    assert_eq!(
        open_fds(),
        before,
        "the descriptors that arrived were not closed"
    );
}

#[test]
fn a_descriptor_the_loop_cannot_name_fails_the_send() {
    let _lock = fd_count_lock();
    let (old, _new) = UnixStream::pair().unwrap();
    let mut outbox = Outbox::default();
    let tags = vec![FdTag::Conn(3)];
    outbox
        .push_with_fds(&ToNew::Fds(tags.clone()), tags)
        .unwrap();
    let result = outbox.flush(old.as_fd(), &mut |_| None);
    assert!(matches!(
        result,
        Err(UpgradeError::MissingFd(FdTag::Conn(3)))
    ));
}
