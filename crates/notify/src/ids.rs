//! Random identifiers and secrets: message and subscription ids, confirmation tokens, and their
//! SHA-256 digests as stored.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `prefix` + 16 random bytes in hex: unique ids for messages, subscriptions and rules.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A URL-safe secret token of 32 random bytes (confirmation and unsubscribe links).
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a token: its SHA-256, hex.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_are_distinct_and_shaped() {
        let a = new_id("msg_");
        assert!(a.starts_with("msg_") && a.len() == 4 + 32);
        assert_ne!(a, new_id("msg_"));
        let t = token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, token());
        assert_eq!(digest("abc").len(), 64);
        assert_eq!(digest("abc"), digest("abc"));
    }
}
