//! The `fanout` scenario: R receivers over TLS, S senders, every delivery checked, and the
//! server's CPU per delivery.

use super::*;
use mio::{Events, Interest, Poll, Token};
use std::io::ErrorKind;

/// R receivers and S senders in one room; every message must reach every receiver once, in
/// order.
pub(crate) fn fanout(args: &Args, config: Arc<ClientConfig>) -> Result<()> {
    let f = &args.fanout;
    let deadline = Instant::now() + f.timeout;
    if f.receivers == 0 || f.senders == 0 || f.messages == 0 || f.window == 0 {
        return Err("fanout: -r, -s, -m and --window must be at least 1".into());
    }
    let sockets = f.receivers + f.senders;
    let soft = rlimit::increase_nofile_limit(u64::MAX)?;
    if sockets as u64 + 64 > soft {
        return Err(
            format!("fanout: {sockets} sockets do not fit the open-file limit {soft}").into(),
        );
    }
    let sender_addr = match (f.tls_senders, f.plain_addr) {
        (true, _) => None,
        (false, Some(a)) => Some(a),
        (false, None) => return Err("fanout: give --plain-addr or --tls-senders".into()),
    };
    let mut net = Net::new(log_in_all(args, &config, sender_addr, deadline)?)?;
    net.until_quiet(f.quiet, deadline)?;
    let (_, ns0) = cpu(args.pid)?;
    let mut run = send_and_check(&mut net, f, deadline)?;
    let (_, ns1) = cpu(args.pid)?;
    drop(net);
    let t = &run.tally;
    run.latencies.sort_unstable();
    let lat = &run.latencies;
    let pct = |p: usize| lat.get(lat.len() * p / 100).map_or(0, |ns| ns / 1000);
    println!(
        "tls-load-result scenario=fanout receivers={} senders={} tls_senders={} messages={} \
         window={} expected={} delivered={} lost={} out_of_order={} duplicates={} garbled={} \
         other_lines={} secs={:.3} deliveries_per_s={:.0} p50_us={} p99_us={} max_us={} \
         cpu_ns={} cpu_ns_per_delivery={:.0}",
        f.receivers,
        f.senders,
        f.tls_senders,
        f.messages,
        f.window,
        t.expected(),
        t.delivered,
        t.expected() - t.delivered,
        t.out_of_order,
        t.duplicates,
        t.garbled,
        run.other_lines,
        run.secs,
        t.delivered as f64 / run.secs.max(1e-9),
        pct(50),
        pct(99),
        lat.last().map_or(0, |ns| ns / 1000),
        ns1 - ns0,
        (ns1 - ns0) as f64 / t.delivered.max(1) as f64,
    );
    if run.stalled {
        return Err(format!("fanout: no delivery for {} s", STALL.as_secs()).into());
    }
    if t.delivered < t.expected() || t.out_of_order + t.duplicates + t.garbled > 0 {
        return Err("fanout: deliveries were lost, reordered, duplicated or garbled".into());
    }
    Ok(())
}

/// What the sending window saw.
struct FanoutRun {
    tally: Tally,
    /// Send-to-receive time of every delivery, in ns.
    latencies: Vec<u128>,
    /// Lines to receivers that are neither notices nor load messages.
    other_lines: u64,
    /// From the first message sent to the last delivery.
    secs: f64,
    stalled: bool,
}

/// The senders (the last peers) send, each keeping at most `--window` messages not yet at
/// every receiver; the receivers' lines are checked until all has arrived or nothing has for
/// [`STALL`].
fn send_and_check(net: &mut Net, f: &FanoutArgs, deadline: Instant) -> Result<FanoutRun> {
    let (r, s) = (f.receivers, f.senders);
    let mut run = FanoutRun {
        tally: Tally::new(r, s, f.messages),
        latencies: Vec::with_capacity(r * s * f.messages as usize),
        other_lines: 0,
        secs: 0.0,
        stalled: false,
    };
    let mut sent = vec![0u32; s];
    let mut batch = String::new();
    let start = Instant::now();
    let mut last_delivery = start;
    while run.tally.delivered < run.tally.expected() {
        for (i, sent) in sent.iter_mut().enumerate() {
            batch.clear();
            while *sent < f.messages && *sent - run.tally.acked[i] < f.window {
                let ns = start.elapsed().as_nanos();
                batch.push_str(&format!("nl {i} {sent} {ns}\r\n"));
                *sent += 1;
            }
            if !batch.is_empty() {
                net.peers[r + i].send(batch.as_bytes())?;
            }
        }
        if last_delivery.elapsed() > STALL {
            run.stalled = true;
            break;
        }
        if Instant::now() > deadline {
            let (d, e) = (run.tally.delivered, run.tally.expected());
            return Err(format!("fanout: timed out with {d} of {e} deliveries").into());
        }
        net.turn(TICK, &mut |peer, line| {
            if peer >= r || line.starts_with(b"*** ") {
                return;
            }
            match Stamp::parse(line) {
                Some(st) if st.sender < s && st.seq < f.messages => {
                    last_delivery = Instant::now();
                    let ns = last_delivery.duration_since(start).as_nanos();
                    run.latencies.push(ns.saturating_sub(st.sent_ns));
                    run.tally.record(peer, st.sender, st.seq);
                }
                Some(_) => run.tally.garbled += 1,
                None => run.other_lines += 1,
            }
        })?;
    }
    run.secs = last_delivery.duration_since(start).as_secs_f64();
    Ok(run)
}

/// Logs the receivers (`tr0`...) in over TLS and the senders (`ts0`...) over TLS or plain TCP
/// to `sender_addr`, all into the room, on `--threads` threads; returns them in that order.
fn log_in_all(
    args: &Args,
    config: &Arc<ClientConfig>,
    sender_addr: Option<SocketAddr>,
    deadline: Instant,
) -> Result<Vec<Peer>> {
    let (r, total) = (
        args.fanout.receivers,
        args.fanout.receivers + args.fanout.senders,
    );
    let per_thread = total.div_ceil(args.threads.max(1));
    let workers: Vec<_> = (0..total)
        .step_by(per_thread)
        .map(|first| {
            let (config, room) = (config.clone(), args.fanout.room.clone());
            let tls_addr = args.addr;
            std::thread::spawn(move || -> Result<Vec<Peer>> {
                let mut peers = Vec::new();
                for i in first..(first + per_thread).min(total) {
                    if Instant::now() > deadline {
                        return Err("fanout: timed out logging in".into());
                    }
                    let plain = sender_addr.filter(|_| i >= r);
                    let nick = if i < r {
                        format!("tr{i}")
                    } else {
                        format!("ts{}", i - r)
                    };
                    peers.push(match plain {
                        Some(addr) => {
                            let mut sock = connect_plain(addr)?;
                            let seen = log_in(&mut sock, &nick, Some(&room))?;
                            Peer::new(sock, None, seen)?
                        }
                        None => {
                            let (mut sock, mut tls) = connect(tls_addr, &config)?;
                            let mut stream = rustls::Stream::new(&mut tls, &mut sock);
                            let seen = log_in(&mut stream, &nick, Some(&room))?;
                            Peer::new(sock, Some(tls), seen)?
                        }
                    });
                }
                Ok(peers)
            })
        })
        .collect();
    let mut peers = Vec::with_capacity(total);
    for w in workers {
        peers.extend(w.join().map_err(|_| "a login thread panicked")??);
    }
    Ok(peers)
}

/// One load message as received: `<tsSENDER> nl SENDER SEQ NS`.
struct Stamp {
    sender: usize,
    seq: u32,
    sent_ns: u128,
}

impl Stamp {
    /// `None` for a line that is not a load message; a message whose nickname does not match
    /// its sender index gets an impossible sender, so it counts as garbled.
    fn parse(line: &[u8]) -> Option<Stamp> {
        let line = std::str::from_utf8(line).ok()?;
        let (nick, text) = line.strip_prefix("<ts")?.split_once("> nl ")?;
        let mut parts = text.split(' ');
        let mut st = Stamp {
            sender: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            sent_ns: parts.next()?.parse().ok()?,
        };
        if parts.next().is_some() || nick.parse() != Ok(st.sender) {
            st.sender = usize::MAX;
        }
        Some(st)
    }
}

/// Who got what: per (receiver, sender) the next sequence number expected, a bit per
/// (receiver, sender, seq) seen, and per sender how many receivers have each message.
struct Tally {
    receivers: usize,
    senders: usize,
    messages: usize,
    next: Vec<u32>,
    seen: Vec<u64>,
    have: Vec<u32>,
    /// Per sender: every message below this has reached every receiver.
    acked: Vec<u32>,
    delivered: u64,
    out_of_order: u64,
    duplicates: u64,
    garbled: u64,
}

impl Tally {
    fn new(receivers: usize, senders: usize, messages: u32) -> Tally {
        let m = messages as usize;
        Tally {
            receivers,
            senders,
            messages: m,
            next: vec![0; receivers * senders],
            seen: vec![0; (receivers * senders * m).div_ceil(64)],
            have: vec![0; senders * m],
            acked: vec![0; senders],
            delivered: 0,
            out_of_order: 0,
            duplicates: 0,
            garbled: 0,
        }
    }

    fn expected(&self) -> u64 {
        (self.receivers * self.senders * self.messages) as u64
    }

    /// Records that `receiver` got message `seq` of `sender` (both in range).
    fn record(&mut self, receiver: usize, sender: usize, seq: u32) {
        let pair = receiver * self.senders + sender;
        let bit = pair * self.messages + seq as usize;
        if self.seen[bit / 64] & (1 << (bit % 64)) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[bit / 64] |= 1 << (bit % 64);
        self.delivered += 1;
        if seq != self.next[pair] {
            self.out_of_order += 1;
        }
        self.next[pair] = self.next[pair].max(seq + 1);
        let base = sender * self.messages;
        self.have[base + seq as usize] += 1;
        let acked = &mut self.acked[sender];
        while (*acked as usize) < self.messages
            && self.have[base + *acked as usize] as usize == self.receivers
        {
            *acked += 1;
        }
    }
}

/// The fan-out connections on one edge-triggered poll, token = index.
struct Net {
    poll: Poll,
    events: Events,
    peers: Vec<Peer>,
    scratch: Vec<u8>,
}

impl Net {
    fn new(mut peers: Vec<Peer>) -> Result<Net> {
        let poll = Poll::new()?;
        for (i, p) in peers.iter_mut().enumerate() {
            let interest = Interest::READABLE | Interest::WRITABLE;
            poll.registry().register(&mut p.sock, Token(i), interest)?;
        }
        Ok(Net {
            poll,
            events: Events::with_capacity(1024),
            peers,
            scratch: vec![0; 64 * 1024],
        })
    }

    /// Reads and drops everything until no byte has arrived for `quiet`. Every peer is read
    /// once first: the login may have left records inside rustls that no event announces.
    fn until_quiet(&mut self, quiet: Duration, deadline: Instant) -> Result<()> {
        for p in &mut self.peers {
            p.receive(&mut self.scratch, &mut |_| {})?;
        }
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            if Instant::now() > deadline {
                return Err("fanout: timed out waiting for the server to go quiet".into());
            }
            if self.turn(quiet.saturating_sub(last.elapsed()), &mut |_, _| {})? > 0 {
                last = Instant::now();
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for events, flushes and reads the peers that have them, and hands
    /// each complete line to `on_line` with its peer's index. Returns the bytes read.
    fn turn(&mut self, timeout: Duration, on_line: &mut impl FnMut(usize, &[u8])) -> Result<usize> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(0),
            other => other?,
        }
        let mut bytes = 0;
        for ev in self.events.iter() {
            let i = ev.token().0;
            let peer = &mut self.peers[i];
            if ev.is_writable() {
                peer.flush()?;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                bytes += peer.receive(&mut self.scratch, &mut |line| on_line(i, line))?;
            }
        }
        Ok(bytes)
    }
}

/// One fan-out connection: TLS or plain, its unfinished line, and for a plain socket the bytes
/// the kernel has not taken yet (rustls keeps its own).
struct Peer {
    sock: mio::net::TcpStream,
    tls: Option<ClientConnection>,
    partial: Vec<u8>,
    out: Vec<u8>,
}

impl Peer {
    /// Wraps a logged-in socket; `seen` is what the login read past its last line.
    fn new(sock: TcpStream, tls: Option<ClientConnection>, seen: Vec<u8>) -> Result<Peer> {
        sock.set_nonblocking(true)?;
        let mut peer = Peer {
            sock: mio::net::TcpStream::from_std(sock),
            tls,
            partial: Vec::new(),
            out: Vec::new(),
        };
        split_lines(&mut peer.partial, &seen, &mut |_| {})?;
        Ok(peer)
    }

    /// Reads (and decrypts) all that is there, calling `on_line` for each complete line.
    /// Returns the bytes read from the socket; the server closing is an error.
    fn receive(&mut self, scratch: &mut [u8], on_line: &mut impl FnMut(&[u8])) -> Result<usize> {
        let mut bytes = 0;
        loop {
            if let Some(tls) = &mut self.tls {
                loop {
                    match tls.reader().read(scratch) {
                        Ok(0) => return Err("the server closed a connection".into()),
                        Ok(n) => split_lines(&mut self.partial, &scratch[..n], on_line)?,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let read = match &mut self.tls {
                Some(tls) => tls.read_tls(&mut self.sock),
                None => self.sock.read(scratch),
            };
            let n = match read {
                Ok(0) => return Err("the server closed a connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            bytes += n;
            match &mut self.tls {
                Some(tls) => {
                    tls.process_new_packets()?;
                }
                None => split_lines(&mut self.partial, &scratch[..n], on_line)?,
            }
        }
        self.flush()?;
        Ok(bytes)
    }

    /// Queues `data` (encrypted, for TLS) and writes what the kernel takes.
    fn send(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.tls {
            Some(tls) => tls.writer().write_all(data)?,
            None => self.out.extend_from_slice(data),
        }
        self.flush()
    }

    /// Writes queued bytes until done or the kernel refuses more.
    fn flush(&mut self) -> Result<()> {
        loop {
            let written = match &mut self.tls {
                Some(tls) if tls.wants_write() => tls.write_tls(&mut self.sock),
                None if !self.out.is_empty() => self.sock.write(&self.out),
                _ => return Ok(()),
            };
            match written {
                Ok(0) => return Err("a socket took no bytes".into()),
                Ok(n) if self.tls.is_none() => {
                    self.out.drain(..n);
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_loss_reorder_duplicates_and_moves_the_window() {
        let mut t = Tally::new(2, 2, 3);
        for seq in 0..3 {
            t.record(0, 0, seq);
            assert_eq!(t.acked[0], seq, "one receiver of two has it");
            t.record(1, 0, seq);
            assert_eq!(t.acked[0], seq + 1);
        }
        t.record(0, 1, 1); // 0 skipped
        t.record(0, 1, 0); // late
        t.record(0, 1, 0); // again
        assert_eq!((t.delivered, t.out_of_order, t.duplicates), (8, 2, 1));
        assert_eq!(t.acked[1], 0);
        assert_eq!(t.expected() - t.delivered, 4);
    }

    #[test]
    fn stamp_parse_checks_the_nickname() {
        let st = Stamp::parse(b"<ts3> nl 3 17 123456789").expect("a load message");
        assert_eq!((st.sender, st.seq, st.sent_ns), (3, 17, 123_456_789));
        assert_eq!(
            Stamp::parse(b"<ts2> nl 3 17 1").map(|s| s.sender),
            Some(usize::MAX)
        );
        assert_eq!(
            Stamp::parse(b"<ts3> nl 3 17 1 x").map(|s| s.sender),
            Some(usize::MAX)
        );
        assert!(Stamp::parse(b"<tr3> nl 3 17 1").is_none());
        assert!(Stamp::parse(b"*** ts3 joined #r").is_none());
        assert!(Stamp::parse(b"<ts3> nl 3 x 1").is_none());
    }
}
