//! Device API keys: how a station's sensor proves who it is when it sends readings.
//!
//! A key looks like `ech_<prefix>_<secret>`: the 12-character prefix is public and finds the
//! stored key; the 40-character secret (238 random bits) is kept only as a SHA-256 hash — a
//! random secret needs no slow hash — and compared in constant time. The store ties a key to
//! one station; the Cedar policies let a device write that station's readings and nothing else.

use rand::Rng;
use subtle::ConstantTimeEq;

use crate::secrets::digest;

const KEY_PREFIX: &str = "ech_";
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A freshly made key: `plain` is shown once; `prefix` and `secret_hash` are stored.
#[derive(Debug, Clone)]
pub struct NewDeviceKey {
    pub plain: String,
    pub prefix: String,
    pub secret_hash: String,
}

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Makes a new key.
pub fn generate() -> NewDeviceKey {
    let prefix = random_string(12);
    let secret = random_string(40);
    NewDeviceKey {
        plain: format!("{KEY_PREFIX}{prefix}_{secret}"),
        prefix,
        secret_hash: digest(&secret),
    }
}

/// Splits a presented key into its prefix and secret; `None` if it is not shaped like a key.
pub fn parse(plain: &str) -> Option<(&str, &str)> {
    plain.strip_prefix(KEY_PREFIX)?.split_once('_')
}

/// Does the secret match the stored hash (constant time)?
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    digest(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape_and_only_their_secret_matches() {
        let k = generate();
        assert!(k.plain.starts_with("ech_"));
        assert_eq!(k.plain.len(), 4 + 12 + 1 + 40);
        let (prefix, secret) = parse(&k.plain).unwrap();
        assert_eq!(prefix, k.prefix);
        assert!(secret_matches(secret, &k.secret_hash));
        assert!(!k.secret_hash.contains(secret));
        assert!(!secret_matches("x", &k.secret_hash));
        assert_ne!(k.plain, generate().plain);
        assert_eq!(parse("not-a-key"), None);
        assert_eq!(parse("ech_nounderscore"), None);
    }
}
