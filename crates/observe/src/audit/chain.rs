//! The hash chain. Each record's text is its canonical JSON (keys sorted at every level, no
//! spaces), and its hash is
//!
//! `hex(SHA-256("ecocityhub-audit-v1\n" ‖ previous hash (hex) ‖ "\n" ‖ sequence ‖ "\n" ‖ text))`
//!
//! so a record's content, its place and everything before it are bound together.

use ecocityhub_store::observe::{AuditHead, AuditRow};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AuditRecord;

const DOMAIN: &[u8] = b"ecocityhub-audit-v1\n";

/// The canonical text of a JSON value: object keys sorted, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("strings serialise"));
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash of the record at `seq` with text `record` after `prev_hash`.
pub fn record_hash(prev_hash: &str, seq: i64, record: &str) -> String {
    hex::encode(digest(prev_hash, seq, record))
}

/// Whether `hash` is [`record_hash`]`(prev_hash, seq, record)`, without allocating (the
/// verifier asks this of every record).
pub fn record_hash_is(prev_hash: &str, seq: i64, record: &str, hash: &str) -> bool {
    let mut text = [0u8; 64];
    hex::encode_to_slice(digest(prev_hash, seq, record), &mut text)
        .expect("a SHA-256 digest is 64 hex digits");
    hash.as_bytes() == text
}

fn digest(prev_hash: &str, seq: i64, record: &str) -> [u8; 32] {
    // `seq` in decimal, as `to_string` writes it, on the stack (i64::MIN takes 20 bytes).
    let mut digits = [0u8; 20];
    let mut rest = &mut digits[..];
    std::io::Write::write_fmt(&mut rest, format_args!("{seq}")).expect("20 bytes suffice");
    let len = 20 - rest.len();
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(&digits[..len]);
    h.update(b"\n");
    h.update(record.as_bytes());
    h.finalize().into()
}

/// The stored row of `record` at `seq` after `prev_hash`.
pub fn seal(record: &AuditRecord, seq: i64, prev_hash: &str) -> AuditRow {
    let text = canonical_json(&serde_json::to_value(record).expect("records serialise"));
    let e = &record.event;
    AuditRow {
        seq,
        event_id: record.event_id.clone(),
        event_time: e.event_time.timestamp_millis(),
        event_source: e.event_source.clone(),
        event_name: e.event_name.clone(),
        user_type: type_name(e.user_identity.kind).into(),
        user_id: e.user_identity.id.clone(),
        error_code: e.error_code.clone(),
        read_only: e.read_only,
        request_id: e.request_id.clone(),
        hash: record_hash(prev_hash, seq, &text),
        record: text,
        prev_hash: prev_hash.to_string(),
    }
}

/// Rows for `records` continuing the chain at `head`.
pub fn seal_all(records: &[AuditRecord], head: &AuditHead) -> Vec<AuditRow> {
    let mut prev = head.hash.clone();
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let row = seal(r, head.seq + 1 + i as i64, &prev);
            prev = row.hash.clone();
            row
        })
        .collect()
}

pub(crate) fn type_name(kind: super::IdentityType) -> &'static str {
    match kind {
        super::IdentityType::User => "User",
        super::IdentityType::Device => "Device",
        super::IdentityType::Anonymous => "Anonymous",
        super::IdentityType::Cli => "Cli",
        super::IdentityType::System => "System",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": null, "y": "é\n"}], "c": true}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":true,"d":[1,{"y":"é\n","z":null}]},"b":1}"#
        );
        let reparsed: Value = serde_json::from_str(&canonical_json(&a)).unwrap();
        assert_eq!(canonical_json(&reparsed), canonical_json(&a));
    }

    #[test]
    fn the_hash_binds_content_place_and_predecessor() {
        let h = record_hash("00", 1, "{}");
        assert_eq!(h.len(), 64);
        assert_ne!(h, record_hash("01", 1, "{}"));
        assert_ne!(h, record_hash("00", 2, "{}"));
        assert_ne!(h, record_hash("00", 1, "{ }"));
        assert_eq!(h, record_hash("00", 1, "{}"));
    }

    #[test]
    fn record_hash_is_agrees_with_record_hash() {
        for seq in [0, 1, 9, 10, 12_345, -7, i64::MAX, i64::MIN] {
            for (prev, text) in [("", ""), ("ab", "{}"), ("00", r#"{"a":"é\n"}"#)] {
                let h = record_hash(prev, seq, text);
                assert_eq!(h, {
                    let mut s = Sha256::new();
                    s.update(DOMAIN);
                    s.update(format!("{prev}\n{seq}\n{text}").as_bytes());
                    hex::encode(s.finalize())
                });
                assert!(record_hash_is(prev, seq, text, &h));
                assert!(!record_hash_is(prev, seq, text, &h.to_uppercase()));
                assert!(!record_hash_is(prev, seq, text, &h[..63]));
                assert!(!record_hash_is(prev, seq, text, &format!("{h}0")));
                assert!(!record_hash_is(prev, seq.wrapping_add(1), text, &h));
                assert!(!record_hash_is(prev, seq, "x", &h));
            }
        }
    }
}
