//! The input pipeline: bytes through telnet decoding and line assembly, each complete line
//! parsed and either answered here (it needs nothing shared) or turned into an event. Input is
//! held, not dropped, when flood control, output backpressure or an event on its way says so.

use super::commands::Apply;
use super::event::Event;
use super::session::{Hold, Phase};
use super::timers::TimerKind;
use super::{Chat, CloseReason, ConnId};
use crate::proto::command::{self, Command, Input, Usage};
use crate::proto::names::{NameError, Nick, parse_nick};
use crate::proto::reply;
use crate::proto::wire::line::LineAssembler;
use crate::proto::wire::line::{self, LineEvent};
use crate::proto::wire::sanitize::sanitize_into;
use crate::proto::wire::telnet::TelnetEvent;
use bytes::BufMut;

/// What to do after one telnet event.
enum Step {
    /// Go on with the next byte.
    Next,
    /// Go on, unless the reply just queued made the connection too slow.
    Replied,
    /// The connection closed: act on nothing more.
    Stop,
    /// The rest of the input must wait.
    Hold(Hold),
}

impl Chat {
    /// Runs bytes through telnet decoding and line assembly, acting on complete lines, until
    /// the connection closes or is held (the rest of the bytes is then kept).
    pub(super) fn process_input(&mut self, id: ConnId, bytes: &[u8]) {
        if self.log_holds(id) {
            if let Some(s) = self.sessions.open_mut(id) {
                s.hold_input(Hold::Event, bytes);
            }
            return;
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let (mut telnet, mut assembler) = (s.telnet, s.line);
        let mut buf = std::mem::take(&mut self.line_buf);
        s.take_line(&mut buf);
        let mut held = None;
        for (i, &byte) in bytes.iter().enumerate() {
            let Some(event) = telnet.step(byte) else {
                continue;
            };
            match self.on_event(id, event, &mut assembler, &mut buf) {
                Step::Next => {}
                // A reply to the sender itself can make it too slow: then act on nothing more.
                Step::Replied if self.still_open(id) => {}
                Step::Replied | Step::Stop => break,
                Step::Hold(hold) => {
                    held = Some((i + 1, hold));
                    break;
                }
            }
        }
        if let Some(s) = self.sessions.open_mut(id) {
            s.telnet = telnet;
            s.line = assembler;
            s.keep_line(&buf);
            if let Some((from, hold)) = held {
                s.hold_input(hold, &bytes[from..]);
                match hold {
                    Hold::Rate => {
                        let (rate, burst) = (self.settings.rate, self.settings.burst);
                        let at = self.now_ms + s.bucket.wait_ms(rate, burst, self.now_ms);
                        self.timers.push(at, id, TimerKind::Rate);
                    }
                    Hold::Output => self.held_for_output.push(id),
                    Hold::Reading | Hold::Event => {}
                }
            }
        }
        buf.clear();
        self.line_buf = buf;
    }

    /// Acts on one telnet event of `id`'s input.
    fn on_event(
        &mut self,
        id: ConnId,
        event: TelnetEvent,
        assembler: &mut LineAssembler,
        buf: &mut Vec<u8>,
    ) -> Step {
        match event {
            TelnetEvent::Data(b) => match assembler.push(b, buf, self.settings.max_line) {
                None => Step::Next,
                Some(LineEvent::TooLong) => {
                    self.line_too_long(id);
                    Step::Replied
                }
                Some(LineEvent::Line) => {
                    self.counters.lines_received += 1;
                    self.dispatch_line(id, buf);
                    buf.clear();
                    if !self.still_open(id) {
                        return Step::Stop;
                    }
                    self.hold_after_line(id).map_or(Step::Next, Step::Hold)
                }
            },
            TelnetEvent::Reply(refusal) => {
                self.reply_local(id, |b| b.put_slice(&refusal));
                Step::Replied
            }
            TelnetEvent::Interrupt => {
                self.quit(id, "");
                // In a cluster the quit is on its way: the rest waits (and goes with the close).
                if self.still_open(id) && self.log_holds(id) {
                    Step::Hold(Hold::Event)
                } else {
                    Step::Stop
                }
            }
            TelnetEvent::AreYouThere => {
                self.reply_local(id, reply::still_here);
                Step::Replied
            }
            TelnetEvent::EraseChar => {
                line::erase_char(buf);
                Step::Next
            }
            TelnetEvent::EraseLine => {
                buf.clear();
                Step::Next
            }
        }
    }

    /// Unholds `id`, processes the input it held, and tells the shell to read again unless
    /// that input held it once more.
    pub(super) fn release_held_input(&mut self, id: ConnId) {
        if self.cluster.as_ref().is_some_and(|c| c.blocks(id)) {
            // It still waits for the log: the log resumes it (`resume_after_log`).
            if let Some(s) = self.sessions.open_mut(id) {
                s.hold = Hold::Event;
            }
            return;
        }
        let Some(s) = self.sessions.open_mut(id) else {
            return;
        };
        let held = s.release();
        // After shutdown input is ignored, held input included.
        if !held.is_empty() && !self.shutting_down {
            self.process_input(id, &held);
        }
        if self
            .sessions
            .get(id)
            .is_some_and(|s| s.is_open() && s.hold == Hold::Reading)
        {
            self.resumed.push(id);
        }
    }

    /// Hands an event to the log. Standalone, the log is this process: the event is applied
    /// at once; in a cluster it is published and applied when it comes back from the log.
    pub(super) fn submit(&mut self, event: Event<'_>) {
        if self.cluster.is_some() {
            self.publish_event(event);
        } else {
            self.apply(event);
        }
    }

    /// Applies an event to the directory (at its place in the order of events).
    pub(super) fn apply(&mut self, event: Event<'_>) {
        self.applier().apply(event);
    }

    /// Everything applying an event may touch.
    pub(super) fn applier(&mut self) -> Apply<'_> {
        Apply {
            settings: &self.settings,
            dir: &mut self.directory,
            sessions: &mut self.sessions,
            outbox: &mut self.outbox,
            closer: &mut self.closer,
            counters: &mut self.counters,
        }
    }

    /// Whether `id` is still open (a reply may just have made it too slow).
    fn still_open(&mut self, id: ConnId) -> bool {
        while let Some(slow) = self.outbox.take_too_slow() {
            self.request_close(slow, CloseReason::TooSlow);
        }
        self.sessions.is_open(id)
    }

    /// Spends a flood-control token for the line just handled; says why input must now wait,
    /// if it must.
    fn hold_after_line(&mut self, id: ConnId) -> Option<Hold> {
        let (rate, burst, now) = (self.settings.rate, self.settings.burst, self.now_ms);
        let s = self.sessions.get_mut(id)?;
        let emptied = !s.bucket.take(rate, burst, now);
        // An event on its way holds first; flood control is judged again when it is back.
        if self.log_holds(id) {
            return Some(Hold::Event);
        }
        if emptied {
            return Some(Hold::Rate);
        }
        self.outbox.flush_wanted().then_some(Hold::Output)
    }

    /// Acts on one complete input line.
    fn dispatch_line(&mut self, id: ConnId, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let Some(s) = self.sessions.open_mut(id) else {
            return;
        };
        let phase = s.phase;
        if phase == Phase::Greeted {
            s.phase = Phase::Prompt;
            if command::is_http_request_line(&text) {
                self.outbox.send(id, reply::not_a_web_server);
                return self.request_close(id, CloseReason::HttpRequest);
            }
        }
        if phase == Phase::Chatting {
            self.line_after_login(id, &text);
        } else {
            self.line_before_login(id, &text);
        }
    }

    fn line_before_login(&mut self, id: ConnId, text: &str) {
        let prompt_after: fn(&mut bytes::BytesMut) = match command::parse(text) {
            Input::Command(Command::Nick(nick)) => return self.log_in(id, Some(nick)),
            Input::Command(Command::Help) => reply::help,
            Input::Command(Command::Quit(_)) => {
                self.outbox.send(id, |b| reply::bye(b, ""));
                return self.request_close(id, CloseReason::Quit);
            }
            Input::Unknown(word) => {
                return self.with_prompt(id, |b| reply::unknown_command(b, word));
            }
            Input::Usage(Usage::Nick) => |b| reply::usage(b, Usage::Nick.form()),
            Input::BadName(NameError::Nick) => |b| reply::bad_name(b, NameError::Nick),
            _ if text.starts_with('/') && !text.starts_with("//") => reply::choose_first,
            _ if text.trim().is_empty() => return self.log_in(id, None),
            _ => match parse_nick(text.trim()) {
                Ok(nick) => return self.log_in(id, Some(nick)),
                Err(e) => return self.with_prompt(id, |b| reply::bad_name(b, e)),
            },
        };
        self.with_prompt(id, prompt_after);
    }

    fn line_after_login(&mut self, id: ConnId, text: &str) {
        let who = self.origin_of(id);
        match command::parse(text) {
            Input::Empty => {}
            Input::Chat(t) => self.say(id, t, false),
            Input::Command(Command::Me(t)) => self.say(id, t, true),
            Input::Command(Command::Nick(nick)) => self.submit(Event::Rename { who, nick }),
            Input::Command(Command::Join(room)) => self.submit(Event::Join { who, room }),
            Input::Command(Command::Rooms) => self.submit(Event::Rooms { who }),
            Input::Command(Command::Who) => self.submit(Event::Who { who }),
            Input::Command(Command::Whisper { to, text }) => {
                let text = self.clean(text);
                self.submit(Event::Whisper {
                    who,
                    to,
                    text: &text,
                });
                self.text_buf = text;
            }
            Input::Command(Command::Help) => self.reply_local(id, reply::help),
            Input::Command(Command::Quit(reason)) => self.quit(id, reason),
            Input::Usage(usage) => self.reply_local(id, |b| reply::usage(b, usage.form())),
            Input::BadName(e) => self.reply_local(id, |b| reply::bad_name(b, e)),
            Input::NoSuchUser(word) => self.reply_local(id, |b| reply::no_such_user(b, word)),
            Input::Unknown(word) => self.reply_local(id, |b| reply::unknown_command(b, word)),
        }
    }

    fn log_in(&mut self, id: ConnId, nick: Option<Nick>) {
        if let Some(s) = self.sessions.open_mut(id) {
            s.phase = Phase::LoggingIn;
        }
        let who = self.origin_of(id);
        self.submit(Event::Login { who, nick });
    }

    /// Chat text or an action: cleaned here, sent only when something is left.
    fn say(&mut self, id: ConnId, text: &str, action: bool) {
        let who = self.origin_of(id);
        let clean = self.clean(text);
        if !clean.trim().is_empty() {
            let text = clean.as_str();
            self.submit(if action {
                Event::Act { who, text }
            } else {
                Event::Say { who, text }
            });
        }
        self.text_buf = clean;
    }

    /// `/quit` or Ctrl-C: logged in, the room is told; before login, just goodbye.
    fn quit(&mut self, id: ConnId, reason: &str) {
        let Some(phase) = self.sessions.get(id).map(|s| s.phase) else {
            return;
        };
        if phase == Phase::Chatting {
            let who = self.origin_of(id);
            let clean = self.clean(reason);
            self.submit(Event::Quit {
                who,
                reason: clean.trim(),
            });
            self.text_buf = clean;
        } else {
            self.outbox.send(id, |b| reply::bye(b, ""));
            self.request_close(id, CloseReason::Quit);
        }
    }

    /// Answers an overlong line; before login the prompt follows, as after every error there.
    fn line_too_long(&mut self, id: ConnId) {
        let max_line = self.settings.max_line;
        let at_prompt = self
            .sessions
            .get(id)
            .is_some_and(|s| s.phase != Phase::Chatting);
        self.reply_local(id, |b| {
            reply::line_too_long(b, max_line);
            if at_prompt {
                b.put_slice(reply::PROMPT);
            }
        });
    }

    /// Sends an error (or help) followed by the prompt again.
    fn with_prompt(&mut self, id: ConnId, f: impl FnOnce(&mut bytes::BytesMut)) {
        self.outbox.send(id, |b| {
            f(b);
            b.put_slice(reply::PROMPT);
        });
    }

    /// Cleans `text` into the reusable text buffer (the caller gives it back).
    fn clean(&mut self, text: &str) -> String {
        let mut clean = std::mem::take(&mut self.text_buf);
        clean.clear();
        sanitize_into(text, &mut clean);
        clean
    }
}
