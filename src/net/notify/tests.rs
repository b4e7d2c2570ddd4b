//! The throttle on a fake clock, and real datagrams on a notify socket this test binds.
//!
//! `NOTIFY_SOCKET` is process-wide and tests run in threads, so the datagram tests run a
//! scripted notifier in a child process (this test binary, one ignored test) with the variable
//! set only there.

use super::*;
use std::os::unix::net::UnixDatagram;
use std::process::Command;

const SECOND: Duration = Duration::from_secs(1);

fn st(users: usize, rooms: usize) -> Status {
    Status { users, rooms }
}

#[test]
fn status_text_names_users_and_rooms() {
    let _fds = crate::net::test_fds::opening();
    assert_eq!(st(1, 1).to_string(), "1 user in 1 room");
    assert_eq!(st(0, 1).to_string(), "0 users in 1 room");
    assert_eq!(st(12, 3).to_string(), "12 users in 3 rooms");
}

#[test]
fn throttle_sends_at_most_once_a_second_and_only_changes() {
    let _fds = crate::net::test_fds::opening();
    let t0 = Instant::now();
    let mut t = Throttle::default();
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.update(st(0, 1), t0), Some(st(0, 1)));
    assert_eq!(t.update(st(0, 1), t0 + SECOND * 5), None, "no change");
    assert_eq!(t.next_deadline(), None, "idle: no timer");

    let t1 = t0 + SECOND * 10;
    assert_eq!(t.update(st(1, 1), t1), Some(st(1, 1)), "a second passed");
    assert_eq!(t.update(st(2, 1), t1 + SECOND / 10), None);
    assert_eq!(t.update(st(3, 1), t1 + SECOND / 5), None);
    assert_eq!(t.next_deadline(), Some(t1 + SECOND));
    assert_eq!(
        t.update(st(3, 1), t1 + SECOND),
        Some(st(3, 1)),
        "the latest"
    );
    assert_eq!(t.next_deadline(), None);

    let t2 = t1 + SECOND;
    assert_eq!(t.update(st(4, 2), t2 + SECOND / 2), None);
    assert_eq!(
        t.update(st(3, 1), t2 + SECOND / 2),
        None,
        "back to what was sent"
    );
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn without_a_notify_socket_nothing_waits() {
    let _fds = crate::net::test_fds::opening();
    let t0 = Instant::now();
    let mut n = Notifier::new(false);
    n.ready(st(0, 1), t0);
    n.status(st(1, 1), t0);
    n.status(st(2, 1), t0);
    assert_eq!(n.next_deadline(), None);
}

/// Runs one ignored test of this binary in a child process with `NOTIFY_SOCKET` set to
/// `socket` (or unset), and checks that it passed.
fn run_child(test: &str, socket: Option<&std::path::Path>) {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([test, "--exact", "--ignored", "--test-threads=1"])
        .env("NATTER_NOTIFY_CHILD", "1");
    match socket {
        Some(path) => child.env("NOTIFY_SOCKET", path),
        None => child.env_remove("NOTIFY_SOCKET"),
    };
    let out = child.output().unwrap();
    assert!(
        out.status.success(),
        "child {test} failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child {test} did not run"
    );
}

#[test]
fn notifications_reach_the_notify_socket() {
    let _fds = crate::net::test_fds::opening();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    run_child("net::notify::tests::child_sends_a_script", Some(&path));
    // The child has exited: everything it sent is queued here.
    socket.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    assert_eq!(
        got,
        [
            "READY=1\nSTATUS=0 users in 1 room\n",
            "STATUS=2 users in 1 room\n",
            "STATUS=3 users in 2 rooms\n",
            "MAINPID=4242\n",
            "READY=1\nSTATUS=1 user in 1 room\n",
            "STOPPING=1\nSTATUS=Shutting down\n",
        ]
    );
}

#[test]
#[ignore = "run in a child process by notifications_reach_the_notify_socket"]
fn child_sends_a_script() {
    let _fds = crate::net::test_fds::opening();
    if std::env::var_os("NATTER_NOTIFY_CHILD").is_none() {
        return;
    }
    let t0 = Instant::now();
    let mut n = Notifier::from_env();
    assert!(n.is_enabled());
    n.status(st(5, 5), t0); // before READY=1: nothing
    n.ready(st(0, 1), t0);
    n.status(st(0, 1), t0);
    n.status(st(1, 1), t0 + SECOND / 10);
    assert_eq!(n.next_deadline(), Some(t0 + SECOND));
    n.status(st(2, 1), t0 + SECOND / 5);
    n.status(st(2, 1), t0 + SECOND);
    assert_eq!(n.next_deadline(), None);
    n.status(st(2, 2), t0 + SECOND * 3 / 2);
    n.status(st(2, 1), t0 + SECOND * 8 / 5);
    assert_eq!(n.next_deadline(), None);
    n.status(st(3, 2), t0 + SECOND * 5);
    n.main_pid(4242);
    // Handed over: the old process says nothing more, above all not STOPPING=1.
    n.status(st(9, 9), t0 + SECOND * 10);
    n.stopping();
    assert_eq!(n.next_deadline(), None);

    let mut m = Notifier::from_env();
    m.ready(st(1, 1), t0);
    m.stopping();
    m.status(st(2, 2), t0 + SECOND * 5);
}

#[test]
fn without_notify_socket_the_notifier_is_off() {
    let _fds = crate::net::test_fds::opening();
    run_child("net::notify::tests::child_without_notify_socket", None);
}

#[test]
#[ignore = "run in a child process by without_notify_socket_the_notifier_is_off"]
fn child_without_notify_socket() {
    let _fds = crate::net::test_fds::opening();
    if std::env::var_os("NATTER_NOTIFY_CHILD").is_none() {
        return;
    }
    let t0 = Instant::now();
    let mut n = Notifier::from_env();
    assert!(!n.is_enabled());
    n.ready(st(0, 1), t0);
    n.status(st(1, 1), t0);
    assert_eq!(n.next_deadline(), None);
}
