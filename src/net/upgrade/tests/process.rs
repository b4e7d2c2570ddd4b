//! Whole upgrades with a real new process: this test binary, started again to run only
//! [`new_process`], takes the channel from its stdin like the server will.

use super::{connections, fd_count_lock, open_fds, raise_fd_limit};
use crate::net::upgrade::{
    ENV_MARKER, FAULT_ENV, FAULT_EXIT_CODE, FdTag, Handover, Progress, Takeover, UpgradeError,
};
use mio::{Events, Interest, Poll, Token};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The state version the stand-in new process reads (and the one before it).
const READS: [u32; 2] = [5, 4];
/// Long enough for a loaded machine; the hang tests use a short one.
const GENEROUS: Duration = Duration::from_secs(20);

/// The new process's part, run in a child started by the tests below (never on its own: it
/// returns at once when not started for an upgrade). It checks the state, confirms, and once
/// committed greets every connection and accepts one connection on the listener.
#[test]
#[ignore = "the new process of the upgrade tests; they run it"]
fn new_process() {
    let Some(mut takeover) = Takeover::detect().unwrap() else {
        return;
    };
    let received = takeover.receive("natter test child", &READS).unwrap();
    let stdin = std::fs::read_link("/proc/self/fd/0").unwrap();
    let checked = match stdin.to_str() {
        Some("/dev/null") => check_state(&received.state, received.conns.len()),
        _ => Err(format!("stdin is {stdin:?}, not /dev/null")),
    };
    if let Err(reason) = checked {
        takeover.fail(&reason);
        std::process::exit(1);
    }
    takeover.confirm().unwrap();
    for (key, fd) in received.conns {
        (&TcpStream::from(fd))
            .write_all(format!("new process has {key}\n").as_bytes())
            .unwrap();
    }
    let (index, listener) = received.listeners.into_iter().next().unwrap();
    assert_eq!(index, 0);
    let timeout = rustix::net::sockopt::Timeout::Recv;
    rustix::net::sockopt::set_socket_timeout(&listener, timeout, Some(GENEROUS)).unwrap();
    let (mut accepted, _) = TcpListener::from(listener).accept().unwrap();
    accepted
        .write_all(b"accepted by the new process\n")
        .unwrap();
}

/// A state the new process can check: its connection count, then a pattern.
fn make_state(conns: usize, len: usize) -> Vec<u8> {
    let mut state = (conns as u64).to_le_bytes().to_vec();
    state.extend((0..len).map(|i| (i % 251) as u8));
    state
}

fn check_state(state: &[u8], conns: usize) -> Result<(), String> {
    let (count, pattern) = state.split_first_chunk::<8>().ok_or("state too short")?;
    if u64::from_le_bytes(*count) != conns as u64 {
        return Err(format!(
            "state names {count:?} connections, {conns} arrived"
        ));
    }
    match pattern
        .iter()
        .enumerate()
        .find(|&(i, &b)| b != (i % 251) as u8)
    {
        Some((i, _)) => Err(format!("state byte {i} is wrong")),
        None => Ok(()),
    }
}

/// This test binary, set to run only [`new_process`], with `fault` in its environment.
fn stand_in(fault: Option<&str>) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "net::upgrade::tests::process::new_process"])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::null());
    match fault {
        Some(fault) => command.env(FAULT_ENV, fault),
        None => command.env_remove(FAULT_ENV),
    };
    command
}

/// The old process's part, as the server loop will do it: serve until Accepted, then send the
/// state and the descriptors, then wait for the outcome, blocking only in `Poll::poll`.
fn drive(
    handover: &mut Handover,
    state: Vec<u8>,
    listener: &TcpListener,
    servers: &[TcpStream],
) -> Result<Progress, UpgradeError> {
    let mut poll = Poll::new().unwrap();
    let both = Interest::READABLE | Interest::WRITABLE;
    poll.registry()
        .register(handover.channel(), Token(0), both)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut tags = vec![FdTag::Listener(0)];
    tags.extend((0..servers.len() as u64).map(FdTag::Conn));
    let mut resolve = |tag| match tag {
        FdTag::Listener(0) => Some(listener.as_fd()),
        FdTag::Listener(_) => None,
        FdTag::Conn(key) => servers.get(key as usize).map(AsFd::as_fd),
    };
    let mut state = Some(state);
    loop {
        let now = Instant::now();
        let mut progress = handover.poll(now, &mut resolve)?;
        if let Progress::Accepted { state_version, .. } = progress {
            assert_eq!(state_version, 5);
            let state = state.take().expect("accepted twice");
            progress = handover.send_state(state, &tags, now, &mut resolve)?;
        }
        if progress == Progress::Committed {
            return Ok(progress);
        }
        let wait = handover
            .deadline()
            .saturating_duration_since(Instant::now());
        poll.poll(&mut events, Some(wait)).unwrap();
    }
}

fn read_line(stream: &TcpStream) -> String {
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn a_marker_that_names_another_process_is_ignored() {
    let _lock = fd_count_lock();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = stand_in(None)
        .env(ENV_MARKER, "1")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let mut said = Vec::new();
    (&ours).read_to_end(&mut said).unwrap();
    assert!(said.is_empty(), "the child said hello: {said:?}");
}

fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_new_process_takes_over_the_listener_the_connections_and_the_state() {
    let _lock = fd_count_lock();
    raise_fd_limit();
    let before = open_fds();
    {
        let (listener, servers, clients) = connections(250);
        let addr = listener.local_addr().unwrap();
        // Larger than the socket buffers, so the state goes out over many writable events.
        let state = make_state(servers.len(), 3 << 20);
        let mut handover =
            Handover::start_command(stand_in(None), 5, GENEROUS, Instant::now()).unwrap();
        let progress = drive(&mut handover, state, &listener, &servers);
        assert_eq!(progress.unwrap(), Progress::Committed);
        // The old process exits here: it closes its copies and nothing else.
        drop((listener, servers));
        for (key, client) in clients.iter().enumerate() {
            assert_eq!(read_line(client), format!("new process has {key}\n"));
        }
        let late = TcpStream::connect(addr).unwrap();
        assert_eq!(read_line(&late), "accepted by the new process\n");
        assert!(handover.wait_committed().unwrap().success());
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
}

/// Starts an upgrade with `fault` injected into the new process and drives it to its failure;
/// checks that the old process can go on (the input sent before is still there to read, none
/// of it taken by the new process), that the child is reaped and that nothing leaked.
fn failed_upgrade(
    fault: &str,
    timeout: Duration,
    state_len: usize,
) -> (UpgradeError, std::process::ExitStatus, Duration) {
    let _lock = fd_count_lock();
    raise_fd_limit();
    let before = open_fds();
    let (listener, servers, mut clients) = connections(3);
    for client in &mut clients {
        client.write_all(b"typed before the upgrade\n").unwrap();
    }
    let started = Instant::now();
    let mut handover = Handover::start_command(stand_in(Some(fault)), 5, timeout, started).unwrap();
    let pid = handover.pid();
    let state = make_state(servers.len(), state_len);
    let err = drive(&mut handover, state, &listener, &servers).unwrap_err();
    let took = started.elapsed();
    let status = handover.abandon().expect("the child was reaped");
    assert!(gone(pid), "the new process {pid} is still there");
    for server in &servers {
        assert_eq!(read_line(server), "typed before the upgrade\n");
    }
    for client in &mut clients {
        client.set_nonblocking(true).unwrap();
        let nothing = client.read(&mut [0; 1]).unwrap_err();
        assert_eq!(
            nothing.kind(),
            std::io::ErrorKind::WouldBlock,
            "the new process wrote"
        );
    }
    let late = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, from) = listener.accept().unwrap();
    assert_eq!(from, late.local_addr().unwrap());
    drop((listener, servers, clients, accepted, late));
    assert_eq!(open_fds(), before, "descriptors leaked");
    (err, status, took)
}

#[test]
fn a_new_process_that_cannot_read_our_state_version_is_refused_and_ended() {
    let (err, status, _) = failed_upgrade("refuse-version", GENEROUS, 10);
    assert!(
        matches!(&err, UpgradeError::StateVersion { offered: 5, reads, .. } if reads.is_empty()),
        "{err:?}"
    );
    assert_eq!(status.signal(), Some(9), "{status:?}");
}

#[test]
fn a_new_process_that_exits_before_confirming_is_reaped() {
    let (err, status, _) = failed_upgrade("crash-before-confirm", GENEROUS, 10);
    assert!(matches!(err, UpgradeError::Closed), "{err:?}");
    assert_eq!(status.code(), Some(FAULT_EXIT_CODE), "{status:?}");
}

#[test]
fn a_new_process_that_never_confirms_is_killed_at_the_deadline() {
    let timeout = Duration::from_millis(1500);
    let (err, status, took) = failed_upgrade("hang", timeout, 10);
    assert!(
        matches!(err, UpgradeError::Timeout(t) if t == timeout),
        "{err:?}"
    );
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(took >= timeout, "gave up after {took:?}");
}

#[test]
fn a_new_process_that_stops_reading_does_not_block_the_old_one() {
    // 8 MiB cannot fit in the socket buffers: the old side must wait for writable events, and
    // still give up on time.
    let timeout = Duration::from_millis(1500);
    let (err, status, took) = failed_upgrade("hang-before-reading", timeout, 8 << 20);
    assert!(matches!(err, UpgradeError::Timeout(_)), "{err:?}");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(
        took < timeout + Duration::from_secs(2),
        "blocked for {took:?}"
    );
}
