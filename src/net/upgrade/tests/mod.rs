//! Tests of the hand-over: descriptors through a real socket pair, the messages and versions,
//! and whole upgrades with a real child process (this test binary started again).

mod fds;
mod messages;
mod process;

use std::net::{TcpListener, TcpStream};
use std::sync::RwLockWriteGuard;

/// Every test here counts this process's open descriptors, so it runs alone (see
/// [`crate::net::test_fds`]).
fn fd_count_lock() -> RwLockWriteGuard<'static, ()> {
    crate::net::test_fds::counting()
}

/// How many descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Room for a few hundred sockets at once, whatever the shell's soft limit is.
fn raise_fd_limit() {
    let limit = rlimit::increase_nofile_limit(4096).unwrap();
    assert!(limit >= 2048, "the open-file limit is only {limit}");
}

/// A loopback listener with `n` accepted connections: (listener, server ends, client ends).
fn connections(n: usize) -> (TcpListener, Vec<TcpStream>, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(TcpStream::connect(addr).unwrap());
        servers.push(listener.accept().unwrap().0);
    }
    (listener, servers, clients)
}
