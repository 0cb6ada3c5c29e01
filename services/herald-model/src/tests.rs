//! The model's tests: the contract, the exact-form reader against the parser, the packed form
//! against the contract's form, times and markers.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::error::DecodeError;
use crate::marker::*;
use crate::notification::*;
use crate::packed::*;
use crate::record::*;
use crate::time::*;
use crate::user_id::UserId;
use chrono::SubsecRound;
use proptest::strategy::Strategy;

fn mk_notification() -> Notification {
    let users = seed_users();
    Notification::new(users[0].clone(), users[1].clone(), "hi".into())
}

#[test]
fn round_trip_keeps_every_field() {
    let n = mk_notification();
    let decoded = decode(Some(n.key().as_bytes()), Some(&n.encode())).unwrap();
    // sentAt travels with millisecond precision.
    assert_eq!(decoded.id, n.id);
    assert_eq!(decoded.from, n.from);
    assert_eq!(decoded.to, n.to);
    assert_eq!(decoded.message, n.message);
    assert_eq!(decoded.sent_at.timestamp_millis(), n.sent_at.timestamp_millis());
}

#[test]
fn encoding_follows_the_contract() {
    let n = mk_notification();
    let v: serde_json::Value = serde_json::from_slice(&n.encode()).unwrap();
    assert_eq!(v["from"], serde_json::json!({"id": 1, "name": "Emma"}));
    assert_eq!(v["to"], serde_json::json!({"id": 2, "name": "Bruno"}));
    assert_eq!(v["message"], "hi");
    assert_eq!(v["id"], n.id.to_string());
    let sent = v["sentAt"].as_str().unwrap();
    assert!(sent.ends_with('Z'), "{sent}");
    assert_eq!(n.key(), "2");
}

#[test]
fn rejects_poison_records() {
    let n = mk_notification();
    let good = n.encode();
    assert_eq!(decode(Some(b"2"), None), Err(DecodeError::MissingValue));
    assert!(matches!(decode(Some(b"2"), Some(b"\xff\x00garbage")), Err(DecodeError::InvalidJson(_))));
    assert!(matches!(decode(Some(b"2"), Some(&good[..good.len() / 2])), Err(DecodeError::InvalidJson(_))));
    assert!(matches!(decode(Some(b"2"), Some(br#"{"id":"x"}"#)), Err(DecodeError::InvalidJson(_))));
    assert!(matches!(decode(Some(b"3"), Some(&good)), Err(DecodeError::KeyMismatch { .. })));
    assert!(matches!(decode(None, Some(&good)), Err(DecodeError::KeyMismatch { .. })));
    assert!(matches!(decode(Some(b"02x"), Some(&good)), Err(DecodeError::KeyMismatch { .. })));
    let mut empty = n.clone();
    empty.message.clear();
    assert_eq!(decode(Some(b"2"), Some(&empty.encode())), Err(DecodeError::EmptyMessage));
    for id in ["1.5", "true", r#""02""#, r#""a b""#, "0"] {
        let wrong = format!(
            r#"{{"id":"6f1c0d5e-8a57-4c1e-9a4e-0d3a1b2c3d4e","from":{{"id":{id},"name":"E"}},"to":{{"id":2,"name":"B"}},"message":"m","sentAt":"2026-01-01T00:00:00Z"}}"#
        );
        assert!(matches!(decode(Some(b"2"), Some(wrong.as_bytes())), Err(DecodeError::InvalidJson(_))), "{id}");
    }
}

#[test]
fn the_producers_record_is_kept_byte_for_byte() {
    let n = mk_notification();
    let value = n.encode();
    let r = decode_record(Some(b"2"), Some(&value)).unwrap();
    assert_eq!((r.id, &r.to), (n.id, &UserId::from(2)));
    assert_eq!(r.sent_at.timestamp_millis(), n.sent_at.timestamp_millis());
    assert_eq!(String::from_utf8(r.canonical()).unwrap(), String::from_utf8(value.clone()).unwrap());
    assert_eq!(String::from_utf8(served(&r)).unwrap(), String::from_utf8(value.clone()).unwrap());
    // Escapes and non-ASCII text survive.
    let mut odd = n.clone();
    odd.message = "line\n\"quoted\" \\ é ✓ \u{1}".into();
    let value = odd.encode();
    let r = decode_record(Some(b"2"), Some(&value)).unwrap();
    assert_eq!(String::from_utf8(r.canonical()).unwrap(), String::from_utf8(value.clone()).unwrap());
    assert_eq!(String::from_utf8(served(&r)).unwrap(), String::from_utf8(value.clone()).unwrap());
    assert_eq!(Packed::new(&r.pack()).id(), n.id);
    // The packed form is about half the record for a short message.
    assert!(r.pack().len() * 2 < value.len() + 80, "{} of {}", r.pack().len(), value.len());
}

/// What a consumer serves from the packed form.
fn served(r: &Record<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    Packed::new(&r.pack()).write_json(r.sent_at.timestamp_millis(), &mut out);
    out
}

fn encoded(id: u128, (from, to): (u64, u64), names: (&str, &str), message: &str, ms: i64) -> Vec<u8> {
    encoded_for(id, (from.into(), to.into()), (Some(names.0), Some(names.1)), message, ms)
}

fn encoded_for(
    id: u128,
    (from, to): (UserId, UserId),
    (sender, recipient): (Option<&str>, Option<&str>),
    message: &str,
    ms: i64,
) -> Vec<u8> {
    let user = |id: UserId, name: Option<&str>| User { id, name: name.map(str::to_string) };
    let sent_at = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
    let (from, to) = (user(from, sender), user(to, recipient));
    Notification { id: Uuid::from_u128(id), sent_at, ..Notification::new(from, to, message.into()) }.encode()
}

#[test]
fn the_producers_records_are_read_without_the_json_parser() {
    let n = mk_notification();
    let value = n.encode();
    let exact = parse_exact(&value).expect("the producer's form");
    assert_eq!(Some(&exact), serde_json::from_slice::<Borrowed<'_>>(&value).ok().as_ref());
    assert_eq!(parse_contract_time(&format_time(&n.sent_at)), Some(n.sent_at.trunc_subsecs(3)));
    // Escapes, whitespace, another order, a leading zero, a big id: the parser's way.
    let escaped = encoded(1, (1, 2), ("E", "B"), "a\"b", 0);
    let spaced = String::from_utf8(value.clone()).unwrap().replacen(":", ": ", 1);
    let zero = String::from_utf8(value.clone()).unwrap().replacen(r#""from":{"id":1"#, r#""from":{"id":01"#, 1);
    let big = encoded(1, (u64::MAX, 2), ("E", "B"), "m", 0);
    for other in [escaped, spaced.into_bytes(), zero.into_bytes(), big] {
        assert!(parse_exact(&other).is_none(), "{}", String::from_utf8_lossy(&other));
    }
    assert!(decode_record(Some(b"2"), Some(&encoded(1, (u64::MAX, 2), ("E", "B"), "m", 0))).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
    /// Whatever the exact reading accepts, the JSON parser reads the same way; checked over
    /// the producer's records and copies with a few bytes changed.
    #[test]
    fn exact_reading_agrees_with_the_parser(
        id in proptest::prelude::any::<u128>(),
        users in proptest::prop_oneof![
            (0u64..100_000, 0u64..100_000).prop_map(|(a, b)| (a.to_string(), b.to_string())),
            proptest::prelude::any::<(u64, u64)>().prop_map(|(a, b)| (a.to_string(), b.to_string())),
            // Text ids, some of them invalid ("02", ".."): those are numbers 0, refused by both.
            ("[A-Za-z0-9._~:@+-]{1,12}", "[A-Za-z0-9._~:@+-]{1,12}")
        ],
        // Printable ASCII (with `"` and `\`), other scripts, a control character.
        names in ("[ -~é✓\u{1}]{0,12}", "[ -~é✓\u{1}]{0,12}"),
        named in proptest::prelude::any::<(bool, bool)>(),
        content in proptest::prelude::any::<(bool, bool)>(),
        message in "[ -~é✓\u{1}]{0,40}",
        ms in -62_000_000_000_000i64..250_000_000_000_000,
        edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..3),
    ) {
        let user = |raw: &str| UserId::parse(raw).unwrap_or(UserId::from(0));
        let names = (named.0.then_some(names.0.as_str()), named.1.then_some(names.1.as_str()));
        let mut value = encoded_for(id, (user(&users.0), user(&users.1)), names, &message, ms);
        if content.0 || content.1 {
            // Structured content: the title and a data object holding the message (its brackets,
            // quotes and escapes are what the exact reader must count right).
            let mut n: Notification = serde_json::from_slice(&value).unwrap_or_else(|_| mk_notification());
            n.title = content.0.then(|| message.clone());
            n.category = content.0.then(|| "orders".to_string());
            n.data = content.1.then(|| {
                crate::content::Data::compact(&serde_json::json!({"m": message, "n": [{"a": "}"}]}).to_string()).unwrap()
            });
            value = n.encode();
        }
        for (at, byte) in edits {
            let i = at.index(value.len());
            value[i] = byte;
        }
        if let Some(exact) = parse_exact(&value) {
            proptest::prop_assert_eq!(Some(exact), serde_json::from_slice::<Borrowed<'_>>(&value).ok());
        }
        let raw = String::from_utf8_lossy(&value[value.len().saturating_sub(26)..value.len().saturating_sub(2)]).into_owned();
        if let Some(t) = parse_contract_time(&raw) {
            proptest::prop_assert_eq!(Some(t), DateTime::parse_from_rfc3339(&raw).ok().map(|t| t.with_timezone(&Utc)));
        }
    }
}

#[test]
fn times_are_written_as_format_time_writes_them() {
    let mut buf = [0; 24];
    for ms in [0, 1, 999, 1_000, 59_999, 1_780_000_000_123, 4_102_444_799_999, -1, -62_135_596_800_000] {
        let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
        match time_text(&t, &mut buf) {
            Some(text) => assert_eq!(text, format_time(&t), "{ms}"),
            None => assert!(!(1000..=9999).contains(&chrono::Datelike::year(&t)), "{ms}"),
        }
    }
    let t = DateTime::<Utc>::from_timestamp_millis(1_780_000_000_123).unwrap();
    assert_eq!(time_text(&t, &mut buf), Some("2026-05-28T20:26:40.123Z"));
}

#[test]
fn text_ids_are_read_exactly_and_packed_and_served_as_strings() {
    let longest = format!("{}@x", "a._-~:+".repeat(18));
    assert_eq!(longest.len(), 128);
    for (from, to) in [("alice", "bob@example.com"), ("7", "u_8f3k2"), (longest.as_str(), "+"), ("a", "2")] {
        let (from, to) = (UserId::parse(from).unwrap(), UserId::parse(to).unwrap());
        let value = encoded_for(5, (from.clone(), to.clone()), (Some("A"), Some("B")), "hi", 1_780_000_000_123);
        let exact = parse_exact(&value).expect("the producer's form, with a text id");
        assert_eq!(Some(&exact), serde_json::from_slice::<Borrowed<'_>>(&value).ok().as_ref());
        let r = decode_record(Some(to.key().as_bytes()), Some(&value)).unwrap();
        assert_eq!(r.to, to);
        assert_eq!(String::from_utf8(served(&r)).unwrap(), String::from_utf8(value.clone()).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(v["to"]["id"].is_number(), to.as_number().is_some());
        // Another key, or the id's number written as a key of another form: not this user's.
        assert!(decode_record(Some(b"alice "), Some(&value)).is_err());
    }
}

#[test]
fn users_without_names_are_written_read_and_served_without_them() {
    let alice = UserId::parse("alice").unwrap();
    let to = User::anonymous(alice.clone());
    for from in [User::anonymous(UserId::from(7)), User { id: UserId::from(7), name: Some("Sam".into()) }] {
        let n = Notification { id: Uuid::from_u128(9), ..Notification::new(from, to.clone(), "hi".into()) };
        let value = n.encode();
        let text = String::from_utf8(value.clone()).unwrap();
        assert!(text.contains(r#""to":{"id":"alice"},"#), "{text}");
        let exact = parse_exact(&value).expect("the producer's form, without a name");
        assert_eq!(Some(&exact), serde_json::from_slice::<Borrowed<'_>>(&value).ok().as_ref());
        let r = decode_record(Some(b"alice"), Some(&value)).unwrap();
        assert_eq!(String::from_utf8(served(&r)).unwrap(), text);
        assert_eq!(
            decode(Some(b"alice"), Some(&value)).unwrap(),
            Notification { sent_at: n.sent_at.trunc_subsecs(3), ..n }
        );
    }
    // A null name is no name; an empty one is kept.
    let null = br#"{"id":"00000000-0000-0000-0000-000000000009","from":{"id":7,"name":null},"to":{"id":"alice","name":""},"message":"hi","sentAt":"2026-01-01T00:00:00.000Z"}"#;
    let r = decode_record(Some(b"alice"), Some(null)).unwrap();
    assert_eq!(
        String::from_utf8(served(&r)).unwrap(),
        r#"{"id":"00000000-0000-0000-0000-000000000009","from":{"id":7},"to":{"id":"alice","name":""},"message":"hi","sentAt":"2026-01-01T00:00:00.000Z"}"#
    );
}

fn structured(title: Option<&str>, url: Option<&str>, category: Option<&str>, data: Option<&str>) -> Notification {
    Notification {
        title: title.map(str::to_string),
        url: url.map(str::to_string),
        category: category.map(str::to_string),
        data: data.map(|d| crate::content::Data::compact(d).unwrap()),
        ..mk_notification()
    }
}

#[test]
fn structured_content_is_read_exactly_kept_and_served_byte_for_byte() {
    let nested = r#"{"order":{"id":42,"lines":[{"sku":"a}b","qty":2}]},"note":"say \"hi\" {","n":1.50e3}"#;
    for n in [
        structured(Some("Your order shipped"), Some("https://shop.example/o/42?x=1#y"), Some("orders"), Some(nested)),
        structured(Some("Only a title"), None, None, None),
        structured(None, Some("/inbox/42"), None, None),
        structured(None, None, Some("billing.invoices"), None),
        structured(None, None, None, Some("{}")),
        structured(Some("é ✓ \"quoted\""), None, None, Some(r#"{"k":[]}"#)),
    ] {
        let value = n.encode();
        let text = String::from_utf8(value.clone()).unwrap();
        // New fields after message and before sentAt, in the contract's order.
        let at = |field: &str| text.find(&format!("\"{field}\":"));
        let order: Vec<usize> =
            ["message", "title", "url", "category", "data", "sentAt"].iter().filter_map(|f| at(f)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        let parsed = serde_json::from_slice::<Borrowed<'_>>(&value).ok();
        // The exact reader takes strings without escapes (data may hold any); others are the
        // parser's.
        if n.title.as_deref().is_none_or(|t| !t.contains('"')) {
            let exact = parse_exact(&value).expect("the producer's form with structured content");
            assert_eq!(Some(&exact), parsed.as_ref(), "{text}");
        } else {
            assert!(parse_exact(&value).is_none());
        }
        let r = decode_record(Some(b"2"), Some(&value)).unwrap();
        assert_eq!(String::from_utf8(served(&r)).unwrap(), text);
        assert_eq!(Packed::new(&r.pack()).category(), n.category.as_deref());
        assert_eq!(
            decode(Some(b"2"), Some(&value)).unwrap(),
            Notification { sent_at: n.sent_at.trunc_subsecs(3), ..n }
        );
    }
    // The shape the consume bench writes (text ids, no names, every field) takes the exact way.
    let shop = User::anonymous(UserId::parse("shop").unwrap());
    let member = User::anonymous(UserId::parse("member-7@example.com").unwrap());
    let mut n = Notification::new(shop, member, "notification number 7 with some text".into());
    n.title = Some("Order 7 shipped".into());
    n.url = Some("/orders/7".into());
    n.category = Some("orders".into());
    n.data = crate::content::Data::compact(r#"{"orderId":7,"items":[{"sku":"a-1","qty":2}]}"#).ok();
    assert!(parse_exact(&n.encode()).is_some(), "{}", String::from_utf8_lossy(&n.encode()));
    // Without them a record keeps today's bytes.
    let plain = String::from_utf8(mk_notification().encode()).unwrap();
    assert!(!plain.contains("title") && !plain.contains("data"), "{plain}");
}

#[test]
fn records_whose_content_breaks_the_rules_are_invalid() {
    let base = String::from_utf8(mk_notification().encode()).unwrap();
    for (field, value) in [
        ("url", r#""javascript:alert(1)""#),
        ("url", r#""//evil.example""#),
        ("category", r#""Not Valid""#),
        ("data", "[1,2]"),
        ("data", r#""text""#),
        ("title", &format!("\"{}\"", "x".repeat(257))),
    ] {
        let value = base.replacen(",\"sentAt\"", &format!(",\"{field}\":{value},\"sentAt\""), 1);
        let got = decode_record(Some(b"2"), Some(value.as_bytes()));
        assert!(matches!(got, Err(DecodeError::InvalidContent(_))), "{field} {value}: {got:?}");
    }
}

#[test]
fn other_shapes_are_kept_in_the_contracts_shape() {
    let n = mk_notification();
    let canonical = String::from_utf8(n.encode()).unwrap();
    let at = n
        .sent_at
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Millis, false);
    for value in [
        // Whitespace and another field order.
        format!(
            "{{ \"sentAt\": \"{}\", \"message\": \"hi\", \"to\": {{\"name\": \"Bruno\", \"id\": 2}}, \"from\": {{\"id\": 1, \"name\": \"Emma\"}}, \"id\": \"{}\" }}\n",
            format_time(&n.sent_at),
            n.id
        ),
        // Another producer's extra fields: dropped, not served.
        format!(
            "{{\"id\":\"{}\",\"from\":{{\"id\":1,\"name\":\"Emma\"}},\"to\":{{\"id\":2,\"name\":\"Bruno\",\"email\":\"b@x\"}},\"message\":\"hi\",\"sentAt\":\"{}\",\"trace\":\"abc\"}}",
            n.id,
            format_time(&n.sent_at)
        ),
        // The same instant in another time zone: kept in UTC.
        format!(
            "{{\"id\":\"{}\",\"from\":{{\"id\":1,\"name\":\"Emma\"}},\"to\":{{\"id\":2,\"name\":\"Bruno\"}},\"message\":\"hi\",\"sentAt\":\"{at}\"}}",
            n.id
        ),
        // Escaped where it need not be.
        format!(
            "{{\"id\":\"{}\",\"from\":{{\"id\":1,\"name\":\"\\u0045mma\"}},\"to\":{{\"id\":2,\"name\":\"Bruno\"}},\"message\":\"h\\u0069\",\"sentAt\":\"{}\"}}",
            n.id,
            format_time(&n.sent_at)
        ),
    ] {
        let r = decode_record(Some(b"2"), Some(value.as_bytes())).unwrap();
        assert_eq!(String::from_utf8(r.canonical()).unwrap(), canonical, "{value}");
        assert_eq!(String::from_utf8(served(&r)).unwrap(), canonical, "{value}");
    }
}

#[test]
fn read_markers_round_trip_and_are_checked() {
    let ids =
        ReadMarker { user: UserId::from(2), ids: vec![Uuid::new_v4(), Uuid::new_v4()], all: false, at: Utc::now() };
    let all = ReadMarker { user: UserId::from(2), ids: vec![], all: true, at: Utc::now() };
    for m in [&ids, &all] {
        let back = decode_marker(Some(b"2"), Some(&m.encode())).unwrap().marker;
        assert_eq!((&back.user, &back.ids, back.all), (&m.user, &m.ids, m.all));
    }
    assert!(matches!(decode_marker(Some(b"3"), Some(&ids.encode())), Err(DecodeError::KeyMismatch { .. })));
    let neither = ReadMarker { ids: vec![], all: false, ..all.clone() };
    let both = ReadMarker { ids: ids.ids.clone(), ..all.clone() };
    let too_many = ReadMarker { ids: (0..501).map(|_| Uuid::new_v4()).collect(), ..ids.clone() };
    for bad in [neither, both, too_many] {
        assert!(matches!(decode_marker(Some(b"2"), Some(&bad.encode())), Err(DecodeError::InvalidJson(_))));
    }
    // A notification is not a marker.
    assert!(decode_marker(Some(b"2"), Some(&mk_notification().encode())).is_err());
}

#[test]
fn decode_record_rejects_what_decode_rejects() {
    let n = mk_notification();
    let good = n.encode();
    assert_eq!(decode_record(Some(b"2"), None).err(), Some(DecodeError::MissingValue));
    assert!(matches!(decode_record(Some(b"2"), Some(b"\xff\x00garbage")), Err(DecodeError::InvalidJson(_))));
    assert!(matches!(decode_record(Some(b"2"), Some(&good[..good.len() / 2])), Err(DecodeError::InvalidJson(_))));
    assert!(matches!(decode_record(Some(b"3"), Some(&good)), Err(DecodeError::KeyMismatch { .. })));
    assert!(matches!(decode_record(None, Some(&good)), Err(DecodeError::KeyMismatch { .. })));
    let mut empty = n.clone();
    empty.message.clear();
    assert_eq!(decode_record(Some(b"2"), Some(&empty.encode())).err(), Some(DecodeError::EmptyMessage));
    let bad_time = String::from_utf8(good.clone()).unwrap().replace(&format_time(&n.sent_at), "yesterday");
    assert!(matches!(decode_record(Some(b"2"), Some(bad_time.as_bytes())), Err(DecodeError::InvalidJson(_))));
    let duplicate = String::from_utf8(good.clone()).unwrap().replacen(
        "\"message\":\"hi\"",
        "\"message\":\"hi\",\"message\":\"x\"",
        1,
    );
    assert!(matches!(decode_record(Some(b"2"), Some(duplicate.as_bytes())), Err(DecodeError::InvalidJson(_))));
}

/// The version rule: fields a newer producer adds are skipped — the record is stored and served
/// as this version knows it — and reported, so the consumer can count them.
#[test]
fn unknown_fields_are_skipped_and_reported() {
    let n = mk_notification();
    let good = String::from_utf8(n.encode()).unwrap();
    let known = decode_record(Some(b"2"), Some(good.as_bytes())).unwrap();
    assert!(!known.unknown_fields);
    let newer = good.replacen("\"message\":\"hi\"", "\"message\":\"hi\",\"priority\":{\"level\":[1,2]}", 1);
    let newer = newer.replacen("\"name\":", "\"avatar\":\"a.png\",\"name\":", 1);
    let r = decode_record(Some(b"2"), Some(newer.as_bytes())).unwrap();
    assert!(r.unknown_fields);
    assert_eq!(String::from_utf8(served(&r)).unwrap(), String::from_utf8(known.canonical()).unwrap());
    let marker = ReadMarker { user: UserId::from(2), ids: vec![], all: true, at: Utc::now() };
    let plain = decode_marker(Some(b"2"), Some(&marker.encode())).unwrap();
    assert!(!plain.unknown_fields);
    let text = String::from_utf8(marker.encode()).unwrap().replacen('{', "{\"category\":\"x\",", 1);
    let newer = decode_marker(Some(b"2"), Some(text.as_bytes())).unwrap();
    assert!(newer.unknown_fields);
    assert_eq!(newer.marker, plain.marker);
}

/// A record keyed `"02"` for user 2 (another producer's key) is not user 2's: it is invalid,
/// not stored where no read of user 2 would find it.
#[test]
fn a_key_with_a_leading_zero_is_not_the_recipients() {
    let value = mk_notification().encode();
    assert!(decode_record(Some(b"2"), Some(&value)).is_ok());
    for key in [&b"02"[..], b"002", b"+2"] {
        assert!(matches!(decode_record(Some(key), Some(&value)), Err(DecodeError::KeyMismatch { .. })), "{key:?}");
    }
    for big in [u64::MAX, 10, 100, 1] {
        let id = UserId::from(big);
        assert!(id.is_key(id.key().as_bytes()), "{big}");
        assert!(!id.is_key(format!("0{big}").as_bytes()), "{big}");
        assert!(!id.is_key(format!("1{big}").as_bytes()), "{big}");
    }
}
