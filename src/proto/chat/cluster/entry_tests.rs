//! Tests of the entry format.

use super::*;
use crate::proto::names::parse_room;

fn who() -> Origin {
    Origin {
        node: 4,
        conn: ConnId {
            index: 3,
            generation: 900,
        },
    }
}

fn round_trip(event: Event<'_>) {
    let header = Header {
        epoch: 0xdead_beef,
        node: 4,
        seq: 77,
    };
    let body = event_body(&event);
    let bytes = encode(header, &[&body, &body]);
    let (h, rest) = decode_header(&bytes).unwrap();
    assert_eq!(h, header);
    assert!(!starts_with_rejoin(rest));
    let got: Vec<_> = bodies(4, rest).collect();
    assert_eq!(got.len(), 2);
    for b in got {
        match b.unwrap() {
            Body::Event(e) => assert_eq!(e, event),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn every_event_round_trips() {
    let who = who();
    let nick = parse_nick("Alice").unwrap();
    let room = parse_room("Rust").unwrap();
    round_trip(Event::Login { who, nick: None });
    round_trip(Event::Login {
        who,
        nick: Some(nick),
    });
    round_trip(Event::Rename { who, nick });
    round_trip(Event::Join { who, room });
    round_trip(Event::Say {
        who, text: "héllo"
    });
    round_trip(Event::Act { who, text: "waves" });
    round_trip(Event::Whisper {
        who,
        to: nick,
        text: "psst",
    });
    round_trip(Event::Who { who });
    round_trip(Event::Rooms { who });
    round_trip(Event::Quit { who, reason: "" });
    for note in [
        LeaveNote::Closed,
        LeaveNote::TooSlow,
        LeaveNote::IdleTimeout,
        LeaveNote::ServerUpgrade,
    ] {
        round_trip(Event::Leave { who, note });
    }
}

#[test]
fn heartbeats_and_rejoins_round_trip() {
    let applied = LogPos { ms: 17, seq: 2 };
    let body = heartbeat_body(applied);
    assert!(matches!(decode_body(1, &body), Ok(Body::Heartbeat { applied: a }) if a == applied));
    let rejoin = Rejoin {
        previous: Some(2),
        guests: 9,
        users: vec![RejoinUser {
            conn: who().conn,
            nick: parse_nick("bob").unwrap(),
            room: parse_room("den").unwrap(),
        }],
    };
    let body = rejoin_body(&rejoin);
    assert!(matches!(decode_body(1, &body), Ok(Body::Rejoin(r)) if r == rejoin));
    let header = Header {
        epoch: 1,
        node: 1,
        seq: 1,
    };
    let bytes = encode(header, &[&body, &heartbeat_body(applied)]);
    let (_, rest) = decode_header(&bytes).unwrap();
    assert!(starts_with_rejoin(rest));
}

#[test]
fn a_chat_line_costs_a_few_bytes_more_than_its_text() {
    let text = "hello world, this is a line of chat";
    let header = Header {
        epoch: u32::MAX,
        node: 3,
        seq: 1_000_000,
    };
    let bytes = encode(header, &[&event_body(&Event::Say { who: who(), text })]);
    assert!(bytes.len() <= text.len() + 20, "{} bytes", bytes.len());
}

#[test]
fn bad_entries_are_errors() {
    assert!(matches!(decode_header(&[]), Err(EntryError::Empty)));
    assert!(matches!(
        decode_header(&[9, 0]),
        Err(EntryError::Version(9))
    ));
    assert!(decode_header(&[ENTRY_VERSION]).is_err());
    let body = to_vec(&BodyV1::Rename {
        conn: conn_v1(who().conn),
        nick: "9bad",
    });
    assert!(matches!(
        decode_body(1, &body),
        Err(EntryError::Invalid("nickname"))
    ));
    assert!(decode_body(1, &[200]).is_err());
    let header = Header {
        epoch: 1,
        node: 1,
        seq: 1,
    };
    let bytes = encode(header, &[&heartbeat_body(LogPos::ZERO), &[200], &[0]]);
    let (_, rest) = decode_header(&bytes).unwrap();
    let got: Vec<bool> = bodies(1, rest).map(|b| b.is_ok()).collect();
    assert_eq!(
        got,
        [true, false],
        "nothing after a body that does not decode"
    );
}
