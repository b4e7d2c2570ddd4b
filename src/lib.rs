//! natter: a chat server for telnet and netcat users, built for many idle connections on a
//! small machine.
//!
//! # Architecture
//! - [`proto`] is the pure core. [`proto::wire`] turns bytes into telnet events and lines,
//!   [`proto::command`] turns a line into a typed command (names already parsed),
//!   [`proto::reply`] holds every word the server says, and [`proto::chat::Chat`] is the state
//!   machine, split by job: a connection's input pipeline and lifecycle (`session`, `input`),
//!   the shared directory of nicknames and rooms (`directory`), one function per command
//!   (`commands`), output queues (`outbox`), admission, timers, the one close path, and the
//!   snapshot. It performs no I/O and never reads the clock: time is an argument.
//! - [`net`] is the shell: one single-threaded `mio` poll loop, a slab of sockets, and nothing
//!   else. It reads into one shared scratch buffer, hands bytes to the core, and carries out
//!   what the core asks for.
//! - [`sim`] is the model shell: the same drain rule over a fake clock and fake sockets, used
//!   by every test, fuzz target and benchmark of the core.
//! - [`config`] turns flags into a [`config::Config`], which gives the core its own
//!   [`proto::chat::Settings`].
//!
//! # The ordered-event seam
//! The shared directory (nicknames, rooms and their members, the guest counter) changes only
//! by applying an [`proto::chat::event::Event`]: "K logs in as N", "K joins R", "K says T",
//! "K leaves". An event carries a request, and its outcome (is the nickname free? who is in
//! the room?) is decided when it is applied, so the core is deterministic given the order of
//! events. Standalone, an event is applied as soon as it is made; a cluster node publishes it
//! to a shared log (a Redis stream) and applies it, like every other node, when it reads it
//! back ([`proto::chat::cluster`]); each user's lines keep their order (the log keeps it, and a
//! reply given at once waits behind the user's events on their way). Telnet, framing, flood
//! control and output queues stay per connection and per node; each node writes only to its own
//! connections.
//!
//! # Snapshot
//! [`proto::chat::Chat::export`] turns the whole core into a versioned blob at a turn boundary
//! (every session with its partial line, decoder states, held input, unsent output, flood budget
//! and timers; the directory; the counters) and [`proto::chat::Chat::import`] rebuilds it. An
//! upgrade (SIGUSR2) hands it, with every socket, to a fresh start of the program file
//! (`net::handover`, over the channel of `net::upgrade`).
//!
//! # Drain rule
//! The shell hands the core what happened (`handle_connect`, `handle_input`,
//! `handle_disconnect`, `handle_writable`, `handle_timeout`, ...), then calls
//! [`proto::chat::Chat::poll_output`] until it returns `Timeout`, doing what each output says:
//! - `Write(id)`: gather `id`'s output ([`proto::chat::Chat::gather`]), make ONE vectored
//!   write, and report it with `handle_written(id, taken, blocked)` before polling again. The
//!   shell, not the core, says whether the socket refused bytes (`blocked`): a TLS layer may
//!   take plaintext it has not written yet. A blocked socket gets WRITABLE interest, and
//!   `handle_writable(id)` when it fires.
//! - `Close(closed)`: write `final_output` once, then close the socket gracefully.
//! - `Resume(id)`: read from `id` again now (its held input was released; epoll will not say
//!   so, the bytes are in the kernel already).
//! - Cluster mode only: `Publish(entry)`: append the entry to the shared log, in the order
//!   given; `StoreSnapshot { at, blob }`: store the directory snapshot taken after entry `at`
//!   (and trim the log below it); `Resync`: connect to the log afresh and hand what it says to
//!   `handle_cluster_start`. Entries read from the log go to `handle_entry`, in log order, and
//!   the log's stalls to `handle_log_stalled`/`handle_log_resumed`.
//! - `Timeout(deadline)`: nothing more now; block in the poll until I/O or `deadline`, then call
//!   `handle_timeout`. With no deadline the poll blocks without a timeout: an idle server uses
//!   no CPU. (A cluster node always has one: its heartbeat, once a second.)
//!
//! The shell drains at the end of every loop turn, and also in the middle of one whenever
//! `wants_flush()` is set: that bounds the output one busy turn can pile up. Closes requested
//! while a broadcast runs are only marked; they are carried out at the end of the `handle_*`
//! call, never in the middle of a loop over a room.
//!
//! # Memory model
//! An idle connection owns no heap buffer: its session (40 bytes) and output queue (24 bytes)
//! live in slot tables reserved up front (untouched pages cost nothing), plus 16 bytes in the
//! shell's slab (about 80 bytes measured at the prompt); a logged-in user adds a directory entry
//! (48 bytes), 4 bytes in its room's member list, 4 in the local-user index and a
//! nickname-table entry (under 200 bytes measured). Everything said in one drain cycle is
//! rendered once into a shared arena; a recipient's queue is a few ranges of it, so a line to
//! 10,000 members costs one render and no allocation per member. Only what the kernel refuses
//! is copied into the connection's own buffer, which is freed once empty; unfinished lines and
//! held input likewise. A TLS connection adds about 3.5 KB: its adapter (boxed, in a side table
//! of the shell's, so a plain connection's slab entry stays 16 bytes) and rustls's keys; its
//! own buffers are empty while idle ([`net::tls`]). For comparison, the kernel spends about
//! 3.9 KB per TCP socket.
//!
//! # Limits
//! Every untrusted size is bounded: input lines (`--max-line`), telnet subnegotiations (skipped,
//! never stored), unsent output (`--sendq`, judged after each write attempt; then the client is
//! dropped as too slow), output rendered in one drain cycle (1 MiB of arena or 256 Ki queue
//! entries, or half a `--sendq` for one reader: then the senders' remaining input is held until
//! the shell has written), held input (one read), nicknames (24) and room names (32). Flood
//! control and output backpressure hold input instead of dropping it: TCP keeps the rest.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod net;
pub mod proto;
pub mod sim;
