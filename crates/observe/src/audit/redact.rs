//! Secrets never reach the audit trail: [`redact`] replaces, anywhere in a JSON value, the
//! value of every key that names a secret (password, secret, token, key, code, authorization,
//! cookie…) and every string that looks like one (a device key, a JWT, a bearer header, a
//! webhook secret, a PEM block), with CloudTrail's `HIDDEN_DUE_TO_SECURITY_REASONS`.

use serde_json::Value;

/// What a hidden value becomes.
pub const HIDDEN: &str = "HIDDEN_DUE_TO_SECURITY_REASONS";

/// Keys whose value is hidden whatever it is, compared lower-case without `_` and `-`.
const SECRET_KEYS: &[&str] = &[
    "key",
    "apikey",
    "code",
    "codeverifier",
    "otp",
    "authorization",
    "cookie",
    "setcookie",
    "session",
    "sessionid",
    "csrf",
    "csrftoken",
    "privatekey",
    "privatepem",
    "signature",
];
/// Parts that make any key secret (`newPassword`, `client_secret`, `refresh_token`…).
const SECRET_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "passphrase",
];

fn normalise(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Does this key name a secret?
pub fn is_secret_key(key: &str) -> bool {
    let k = normalise(key);
    SECRET_KEYS.contains(&k.as_str()) || SECRET_PARTS.iter().any(|p| k.contains(p))
}

/// Does this string look like a secret whatever its key?
pub fn looks_secret(s: &str) -> bool {
    let s = s.trim();
    let jwt = {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 3
            && s.starts_with("eyJ")
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    jwt || s.starts_with("ech_")
        || s.starts_with("whsec_")
        || s.len() > 7 && s[..7].eq_ignore_ascii_case("bearer ")
        || s.contains("-----BEGIN")
}

/// Hides every secret in `value`, in place.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && !v.is_null() {
                    *v = Value::String(HIDDEN.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) if looks_secret(s) => *s = HIDDEN.into(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_hidden_by_key_anywhere_in_the_value() {
        let mut v = json!({
            "email": "a@example.org",
            "password": "Str0ng-passphrase!",
            "newPassword": "x",
            "client_secret": "s",
            "refresh_token": "r",
            "Authorization": "Basic abc",
            "code": "123456",
            "code_verifier": "v",
            "nested": [{"apiKey": "k", "label": "front door"}, {"deep": {"id_token": "t"}}],
            "roles": ["operator"],
            "remember": null,
            "count": 3,
        });
        redact(&mut v);
        for path in [
            "/password",
            "/newPassword",
            "/client_secret",
            "/refresh_token",
            "/Authorization",
            "/code",
            "/code_verifier",
            "/nested/0/apiKey",
            "/nested/1/deep/id_token",
        ] {
            assert_eq!(v.pointer(path).unwrap(), HIDDEN, "{path}");
        }
        assert_eq!(v["email"], "a@example.org");
        assert_eq!(v["nested"][0]["label"], "front door");
        assert_eq!(v["roles"][0], "operator");
        assert_eq!(v["remember"], Value::Null, "a null stays null");
        assert_eq!(v["count"], 3);
    }

    #[test]
    fn strings_shaped_like_secrets_are_hidden_under_any_key() {
        let mut v = json!({
            "note": "ech_abcd1234_secretpart",
            "hook": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "header": "Bearer eyJhbGciOi",
            "jwt": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl",
            "pem": "-----BEGIN PRIVATE KEY-----\nMIG...",
            "list": ["plain", "ech_x_y"],
            "prefix": "ech_abcd1234",
            "sentence": "a.b.c",
        });
        redact(&mut v);
        for key in ["note", "hook", "header", "jwt", "pem", "prefix"] {
            assert_eq!(v[key], HIDDEN, "{key}");
        }
        assert_eq!(v["list"], json!(["plain", HIDDEN]));
        assert_eq!(v["sentence"], "a.b.c");
    }

    #[test]
    fn key_names_are_compared_loosely() {
        assert!(is_secret_key("Client-Secret"));
        assert!(is_secret_key("ACCESS_TOKEN"));
        assert!(is_secret_key("key"));
        assert!(!is_secret_key("keys_rotated"));
        assert!(!is_secret_key("email"));
        assert!(!is_secret_key("station"));
    }
}
