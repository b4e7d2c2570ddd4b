//! The `--help` text: every scenario and flag.

/// The `--help` text.
pub const HELP: &str = "\
natter-load: load generator for the natter chat server (and any server speaking its line protocol,
or IRC for a same-run comparison)

USAGE:
    natter-load SCENARIO [FLAGS]
    natter-load --help

Start the server for benchmarks with rate limiting and the per-address cap off, e.g.
    natter --listen 127.0.0.1:7001 --rate 0 --max-per-ip 0
otherwise the default flood control (5 lines/s) throttles the senders and logins.
For an IRC server see benches/ngircd.conf (ngircd -n -f FILE).

SCENARIOS:
    idle -n N [--rooms K] [--idle-secs S] [--concurrency C] [--at-prompt]
        Log N users in (spread over K fresh rooms with /join; K=1 keeps them in the default
        room), wait until quiet, hold them. With --pid: the server's VmRSS and RssAnon before
        and after, per connection ((after-before)/N), and its CPU time over an idle window of
        S seconds (default 10): utime+stime in clock ticks and ns from schedstat. Then two
        fresh clients log in, one chats, and the other must receive the message.
        N above what one process may open (RLIMIT_NOFILE, 20000 here, minus a reserve) is
        split over worker processes (natter-load re-executes itself).
        --at-prompt       connect, read the banner and the `Your nickname: ` prompt, and stay
                          silent: the figures are then per connection at the prompt (natter
                          only; the probe at the end still logs two fresh clients in)
        --concurrency C   logins in progress at once, over all workers (default 64; keep it
                          below the server's listen backlog, see LIMITS)
        With --proto irc every client joins a channel (#TAGr0 .. with K rooms; IRC has no
        default room), so each join is announced to the channel's members.
        Memory figures are only meaningful on a freshly started server: memory freed by an
        earlier run is usually kept by the server's allocator.

    fanout [-r R] [-s S] [-m M] [--room NAME] [--rate PER_SEC] [--window W]
           [--upgrades N [--upgrade-gap-ms G]] [--irc-oper NAME:PASSWORD]
        R receivers (default 100) and S senders (default 4) join one room; each sender sends M
        messages (default 100) as fast as the server accepts them. Each message carries the
        sender index, a sequence number and a send timestamp. Reports deliveries/s, latency
        p50/p99/max, the time until the last receiver had a message (last_delivery_us: p50
        over messages; last_delivery_max_us: the slowest), lost and out-of-order deliveries
        (any is a failure: exit 1), and with --pid the server's CPU ns per delivery.
        The time until the last of 10,000 members has one broadcast:
            fanout -r 10000 -s 1 -m 1 --room default     (then last_delivery_us)
        --room NAME    room to use (default: a fresh name; `default` = stay in the default
                       room, natter only)
        --rate N       messages per second per sender (default 0 = as fast as possible)
        --window W     at most W messages per sender not yet received by every receiver
                       (default 64), so the server's per-client send queue is never blown
        --upgrades N   while the senders run, send the server (one --pid) SIGUSR2 N times, each
                       once every receiver has seen the `*** Server upgraded.` line of the
                       previous one and G ms (--upgrade-gap-ms, default 200) have passed. The
                       new process (same program file and arguments) is found in /proc and
                       its CPU is added to the old one's. Reports upgrades done and the freeze
                       (longest wait of any receiver for a delivery across an upgrade); every
                       line that is neither a delivery nor the one notice per upgrade, and
                       every lost, duplicated or reordered delivery, is a failure. natter only.
        --irc-oper NAME:PASSWORD
                       with --proto irc: the senders become IRC operators (OPER) and set user
                       mode +F, ngircd's relaxed flood protection (10 commands per loop turn
                       instead of 3); see benches/ngircd.conf
        R + S must fit in one process (see limits).

    churn -n N [--concurrency C] [--rss-slack KIB] [--settle-secs S]
        Connect, log in, chat, /quit; N times, C at once (default 50). With --pid: the
        server's RSS and open fds (/proc/PID/fd) before and after. The fd count must return
        to baseline (waits up to S seconds, default 5) and RSS may grow by at most KIB
        (default 4096): otherwise exit 1. natter only, one --addr.

COMMON FLAGS:
    --addr HOST:PORT  server address, loopback only (default 127.0.0.1:6677). Give it several
                      times (or a comma list) for several servers, e.g. the nodes of a
                      cluster: clients are spread round-robin over them (fanout: receivers
                      and senders each; idle: over all workers' clients)
    --pid PID         the server's process id, for the /proc figures (same user or root); with
                      several --addr, one --pid per address in the same order: memory and CPU
                      are then reported per node (node1_..., nodeK_...) and summed
    --proto P         natter (default) or irc: NICK/USER, wait for 001, JOIN #room,
                      PRIVMSG #room :text, PONG to every PING (idle and fanout)
    --timeout SECS    bound on the whole run (default 120); when it runs out natter-load
                      prints what it was waiting for and exits 1 instead of hanging
    --sources K       bind client sockets to source addresses 127.0.0.1 ..= 127.0.0.K
                      round-robin (1..8; default: let the kernel choose), so repeated runs
                      do not exhaust the ~28000 ephemeral ports of one address
    --quiet-ms MS     \"quiet\" means no byte received for MS ms (default 500)
    --help            this text

OUTPUT:
    A human table, then one line `natter-load-result scenario=NAME key=value ...`.
    Exit 0 on success, 1 on a failed check, timeout or error, 2 on a usage error.

LIMITS:
    Nicknames are l{worker}x{index} (the server must not have them taken). natter-load raises
    its soft RLIMIT_NOFILE to the hard limit; one process holds at most that minus 64 clients,
    so idle splits bigger N over workers; fanout and churn fail with a clear message instead.
    The server itself needs one fd per client: with a 20000 limit it holds about 19990.
    Logins in progress are bounded (--concurrency) because a burst of connects beyond the
    server's listen backlog overflows its accept queue; with SYN cookies on, some clients then
    believe they are connected but never receive anything, and the run times out saying
    so. churn --concurrency should also stay below the backlog.
";
