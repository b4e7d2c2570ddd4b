//! Unit tests of the outbox: rendering once, sharing entries, copying only what the kernel
//! refuses, and judging `--sendq`.

use super::*;
use bytes::BufMut;

fn id(index: u32) -> ConnId {
    ConnId {
        index,
        generation: 7,
    }
}

fn outbox(n: u32) -> Outbox {
    let mut o = Outbox::new(1024, 16);
    for i in 0..n {
        o.open(id(i));
    }
    o
}

fn gathered(o: &Outbox, c: ConnId) -> (usize, Vec<u8>) {
    let mut iov = [IoSlice::new(&[]); 8];
    let n = o.gather(c, &mut iov);
    (n, iov[..n].iter().flat_map(|s| s.iter().copied()).collect())
}

#[test]
fn a_broadcast_is_rendered_once_and_adjacent_lines_share_an_entry() {
    let mut o = outbox(3);
    for line in ["a\r\n", "b\r\n", "c\r\n"] {
        let chunk = o.render(|b| b.put_slice(line.as_bytes()));
        for i in 0..3 {
            o.deliver(id(i), chunk);
        }
    }
    assert_eq!(o.arena.len(), 9, "rendered once");
    assert_eq!(o.entries.len(), 3, "one entry per recipient");
    assert_eq!(gathered(&o, id(1)), (1, b"a\r\nb\r\nc\r\n".to_vec()));
    assert_eq!(o.queued(), 27);
}

#[test]
fn a_skipped_recipient_gets_separate_pieces() {
    let mut o = outbox(2);
    let a = o.render(|b| b.put_slice(b"a"));
    o.deliver(id(0), a);
    let b = o.render(|b| b.put_slice(b"b"));
    o.deliver(id(1), b);
    let c = o.render(|b| b.put_slice(b"c"));
    o.deliver(id(0), c);
    assert_eq!(gathered(&o, id(0)), (2, b"ac".to_vec()));
}

#[test]
fn only_what_the_kernel_refuses_is_copied_and_the_arena_is_reset() {
    let mut o = outbox(2);
    let chunk = o.render(|b| b.put_slice(b"hello world"));
    o.deliver(id(0), chunk);
    o.deliver(id(1), chunk);
    assert_eq!(o.next_dirty(), Some(id(0)));
    o.written(id(0), 11, false);
    assert_eq!(o.next_dirty(), Some(id(1)));
    o.written(id(1), 6, true);
    assert_eq!(o.next_dirty(), None);
    o.end_drain();
    assert!(o.arena.is_empty() && o.entries.is_empty());
    assert_eq!(o.queues[0].backlog, NONE, "nothing kept for a fast reader");
    assert_eq!(o.unsent(id(1)), b"world");
    assert!(o.is_blocked(id(1)));
    // More output for the blocked one goes straight to its backlog, in order.
    let more = o.render(|b| b.put_slice(b"!"));
    o.deliver(id(1), more);
    assert_eq!(o.unsent(id(1)), b"world!");
    o.writable(id(1));
    assert_eq!(o.next_dirty(), Some(id(1)));
    assert_eq!(gathered(&o, id(1)), (1, b"world!".to_vec()));
    o.written(id(1), 6, false);
    assert_eq!((o.pending(id(1)), o.queued()), (0, 0));
    assert_eq!(o.queues[1].backlog, NONE, "buffer given back once empty");
    assert!(o.backlogs.is_empty());
}

#[test]
fn sendq_is_judged_after_a_write_attempt_and_on_delivery_while_blocked() {
    let mut o = outbox(2);
    let big = o.render(|b| b.put_slice(&[b'x'; 1500]));
    o.deliver(id(0), big);
    assert_eq!(o.take_too_slow(), None, "not judged before a write attempt");
    o.written(id(0), 0, true);
    assert_eq!(o.take_too_slow(), Some(id(0)));
    let small = o.render(|b| b.put_slice(&[b'y'; 600]));
    o.deliver(id(1), small);
    o.written(id(1), 0, true);
    assert_eq!(o.take_too_slow(), None);
    o.deliver(id(1), small);
    assert_eq!(
        o.take_too_slow(),
        Some(id(1)),
        "600 + 600 > 1024 while refused"
    );
}

#[test]
fn stale_ids_and_closed_queues_get_nothing() {
    let mut o = outbox(1);
    let stale = ConnId {
        index: 0,
        generation: 8,
    };
    let chunk = o.render(|b| b.put_slice(b"x"));
    o.deliver(stale, chunk);
    assert_eq!(o.queued(), 0);
    o.deliver(id(0), chunk);
    assert_eq!(o.close(id(0)), b"x");
    o.deliver(id(0), chunk);
    assert_eq!(o.queued(), 0);
    assert_eq!(o.next_dirty(), None, "a closed queue is not written");
    o.end_drain();
    assert!(o.arena.is_empty());
}

#[test]
fn an_idle_queue_stays_small() {
    // The memory model in the crate docs counts on this: no heap, 24 bytes.
    assert!(std::mem::size_of::<Queue>() <= 24);
}
