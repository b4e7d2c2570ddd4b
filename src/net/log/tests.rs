//! The log against real pipes and sockets: levels, prefixes, a reader that stops reading.

use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

fn pipe_logger(max: Level, journal: bool) -> (Logger, io::PipeReader) {
    let (reader, writer) = io::pipe().unwrap();
    (
        Logger::new(Target::Owned(writer.into()), max, journal),
        reader,
    )
}

/// Reads from `source` until `buf` holds `want` bytes; panics at the deadline.
fn read_to_len(source: &mut (impl Read + AsFd), want: usize, buf: &mut Vec<u8>) {
    let deadline = Instant::now() + DEADLINE;
    let mut chunk = [0; 16 * 1024];
    while buf.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).unwrap();
        let mut fds = [PollFd::new(&*source, PollFlags::IN)];
        let ready = rustix::event::poll(&mut fds, Some(&timeout)).unwrap();
        assert!(
            ready > 0,
            "only {} of {want} bytes by the deadline",
            buf.len()
        );
        let max = chunk.len().min(want - buf.len());
        let n = source.read(&mut chunk[..max]).unwrap();
        assert!(n > 0, "end of stream after {} of {want} bytes", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Everything `logger` has written so far that `reader` has not yet returned.
fn read_new(logger: &Logger, reader: &mut (impl Read + AsFd), seen: &mut Vec<u8>) -> String {
    let before = seen.len();
    read_to_len(reader, logger.written as usize, seen);
    String::from_utf8(seen[before..].to_vec()).unwrap()
}

#[test]
fn level_names_parse_and_others_are_refused() {
    let _fds = crate::net::test_fds::opening();
    assert_eq!("error".parse(), Ok(Level::Error));
    assert_eq!("warn".parse(), Ok(Level::Warn));
    assert_eq!("info".parse(), Ok(Level::Info));
    assert_eq!("DEBUG".parse(), Ok(Level::Debug));
    let err = "verbose".parse::<Level>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown log level \"verbose\": expected error, warn, info or debug"
    );
}

#[test]
fn levels_filter_lines() {
    let _fds = crate::net::test_fds::opening();
    let (mut logger, mut reader) = pipe_logger(Level::Warn, false);
    logger.log(Level::Debug, format_args!("debug {}", 1));
    logger.log(Level::Info, format_args!("info {}", 2));
    logger.log(Level::Warn, format_args!("warn {}", 3));
    logger.log(Level::Error, format_args!("error {}", 4));
    let mut seen = Vec::new();
    let out = read_new(&logger, &mut reader, &mut seen);
    assert_eq!(out, "natter: warn 3\nnatter: error 4\n");
    assert_eq!(logger.dropped_total(), 0);
}

#[test]
fn journal_lines_start_with_their_syslog_level() {
    let _fds = crate::net::test_fds::opening();
    let (mut logger, mut reader) = pipe_logger(Level::Debug, true);
    logger.log(Level::Error, format_args!("e"));
    logger.log(Level::Warn, format_args!("w"));
    logger.log(Level::Info, format_args!("i"));
    logger.log(Level::Debug, format_args!("d"));
    let mut seen = Vec::new();
    let out = read_new(&logger, &mut reader, &mut seen);
    assert_eq!(
        out,
        "<3>natter: e\n<4>natter: w\n<6>natter: i\n<7>natter: d\n"
    );
}

#[test]
fn control_characters_are_escaped_and_long_lines_cut() {
    let _fds = crate::net::test_fds::opening();
    let (mut logger, mut reader) = pipe_logger(Level::Info, false);
    logger.log(Level::Info, format_args!("a\nb\r\x1b[2Jc\té"));
    let long = "x".repeat(10_000);
    logger.log(Level::Info, format_args!("{long}"));
    let mut seen = Vec::new();
    let out = read_new(&logger, &mut reader, &mut seen);
    let (first, second) = out.split_once('\n').unwrap();
    assert_eq!(first, "natter: a\\nb\\r\\u{1b}[2Jc\\té");
    assert_eq!(second.len(), MAX_LINE);
    assert!(second.starts_with("natter: xxx"));
    assert!(second.ends_with("xx...\n"));
}

#[test]
fn reopening_leaves_the_shared_description_blocking() {
    let _fds = crate::net::test_fds::opening();
    let (_reader, writer) = io::pipe().unwrap();
    let shared = writer.try_clone().unwrap();
    let logger = Logger::new(Target::Owned(writer.into()), Level::Info, false);
    assert_eq!(logger.sink.method, Method::Write);
    let own = rustix::fs::fcntl_getfl(&logger.sink.target).unwrap();
    assert!(own.contains(OFlags::NONBLOCK), "the log's description");
    let theirs = rustix::fs::fcntl_getfl(&shared).unwrap();
    assert!(!theirs.contains(OFlags::NONBLOCK), "the shared description");
}

/// Logs `count` numbered lines of 100 bytes on another thread; panics if that blocks.
fn fill(mut logger: Logger, count: usize) -> Logger {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..count {
            // 100 bytes with the prefix, 101 with the line end.
            logger.log(Level::Info, format_args!("line {i:04} {}", "x".repeat(82)));
        }
        let _ = done.send(logger);
    });
    finished
        .recv_timeout(DEADLINE)
        .expect("the logger blocked on a full pipe")
}

fn check_full_pipe(logger: Logger, mut reader: io::PipeReader) {
    // A pipe holds 64 KiB by default: about 650 of these lines.
    let mut logger = fill(logger, 2000);
    assert!(
        logger.dropped_total() > 0,
        "nothing was dropped: the pipe never filled"
    );
    let mut seen = Vec::new();
    let mut out = read_new(&logger, &mut reader, &mut seen);
    // Drained: the next line reports the drops first, and only once.
    let pending = logger.dropped;
    assert!(pending > 0);
    logger.log(Level::Info, format_args!("back"));
    logger.log(Level::Info, format_args!("again"));
    let tail = read_new(&logger, &mut reader, &mut seen);
    assert_eq!(
        tail,
        format!("natter: log: {pending} lines dropped\nnatter: back\nnatter: again\n")
    );
    out.push_str(&tail);
    assert_eq!(whole_lines_and_reported_drops(&out, 100), 2000 + 2);
    assert_eq!(logger.dropped, 0);
}

/// Checks that every line of `out` is whole (`natter: line NNNN ...` of `len` bytes, numbers
/// rising) or a drop notice, and returns the lines seen plus the drops reported.
fn whole_lines_and_reported_drops(out: &str, len: usize) -> usize {
    let (mut next, mut count) = (0, 0);
    for line in out.lines() {
        let text = line.strip_prefix("natter: ").unwrap();
        if let Some(notice) = text.strip_prefix("log: ") {
            let n = notice.strip_suffix(" lines dropped").unwrap();
            count += n.parse::<usize>().unwrap();
        } else {
            count += 1;
            if let Some(number) = text.strip_prefix("line ") {
                let i: usize = number[..4].parse().unwrap();
                assert!(i >= next, "line {i} after line {next}");
                assert_eq!(line.len(), len, "line {i} is whole");
                next = i + 1;
            }
        }
    }
    count
}

#[test]
fn a_pipe_nobody_reads_never_blocks_and_drops_are_reported() {
    let _fds = crate::net::test_fds::opening();
    let (logger, reader) = pipe_logger(Level::Info, false);
    assert_eq!(logger.sink.method, Method::Write);
    check_full_pipe(logger, reader);
}

#[test]
fn a_pipe_that_cannot_be_reopened_is_polled_before_each_write() {
    let _fds = crate::net::test_fds::opening();
    let (reader, writer) = io::pipe().unwrap();
    let sink = Sink {
        target: Target::Owned(writer.into()),
        method: Method::PollFirst,
    };
    check_full_pipe(Logger::with_sink(sink, Level::Info, false), reader);
}

/// A loopback TCP connection whose sender side has a small send buffer.
fn tcp_pair() -> (OwnedFd, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let reader = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (writer, _) = listener.accept().unwrap();
    socket2::SockRef::from(&writer)
        .set_send_buffer_size(4096)
        .unwrap();
    (writer.into(), reader)
}

#[test]
fn a_partly_written_line_is_finished_before_the_next_line() {
    let _fds = crate::net::test_fds::opening();
    let (writer, mut reader) = tcp_pair();
    let mut logger = Logger::new(Target::Owned(writer), Level::Info, false);
    assert_eq!(logger.sink.method, Method::Send);
    let line = |i: usize| format!("line {i:04} {}", "y".repeat(2990)); // 3000 bytes
    let mut logged = 0;
    while logger.rest.is_empty() {
        assert!(logged < 2000, "no line was ever written in part");
        logger.log(Level::Info, format_args!("{}", line(logged)));
        logged += 1;
    }
    for _ in 0..20 {
        logger.log(Level::Info, format_args!("{}", line(logged)));
        logged += 1;
    }
    let mut seen = Vec::new();
    read_new(&logger, &mut reader, &mut seen);
    logger.log(Level::Info, format_args!("after"));
    read_new(&logger, &mut reader, &mut seen);
    assert!(logger.rest.is_empty() && logger.dropped == 0);

    // Every line is whole and in order; the notices account for every missing one.
    let out = String::from_utf8(seen).unwrap();
    assert!(out.ends_with("natter: after\n"));
    assert_eq!(whole_lines_and_reported_drops(&out, 8 + 3000), logged + 1);
}

#[test]
fn the_macro_writes_through_the_thread_logger() {
    let _fds = crate::net::test_fds::opening();
    let (logger, mut reader) = pipe_logger(Level::Info, false);
    LOGGER.with(|cell| *cell.borrow_mut() = Some(logger));
    assert!(enabled(Level::Info));
    assert!(!enabled(Level::Debug));
    log!(Level::Debug, "hidden {}", 1);
    log!(Level::Info, "shown {}", 2);
    let logger = LOGGER.with(|cell| cell.borrow_mut().take()).unwrap();
    let mut seen = Vec::new();
    assert_eq!(
        read_new(&logger, &mut reader, &mut seen),
        "natter: shown 2\n"
    );
}

#[test]
fn before_init_the_level_is_info() {
    let _fds = crate::net::test_fds::opening();
    std::thread::spawn(|| {
        assert!(enabled(Level::Info));
        assert!(!enabled(Level::Debug));
        assert_eq!(dropped_total(), 0);
    })
    .join()
    .unwrap();
}

#[test]
fn init_sets_the_level_and_keeps_the_logger() {
    let _fds = crate::net::test_fds::opening();
    std::thread::spawn(|| {
        let (mut logger, _reader) = pipe_logger(Level::Info, false);
        logger.drop_line();
        LOGGER.with(|cell| *cell.borrow_mut() = Some(logger));
        init(Level::Warn);
        assert!(enabled(Level::Warn));
        assert!(!enabled(Level::Info));
        assert_eq!(dropped_total(), 1);
        let logger = LOGGER.with(|cell| cell.borrow_mut().take()).unwrap();
        assert_eq!(logger.sink.method, Method::Write, "still the test's pipe");
    })
    .join()
    .unwrap();
}
