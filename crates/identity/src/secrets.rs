//! Random secrets: six-digit e-mail codes and opaque refresh tokens. Both are stored only as
//! SHA-256 hashes (they are random enough that a slow hash adds nothing).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// A six-digit verification code.
pub fn code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000))
}

/// An opaque token of 256 random bits, URL-safe.
pub fn token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The hash a secret is stored as.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_have_their_shape_and_differ() {
        let c = super::code();
        assert_eq!(c.len(), 6);
        assert!(c.chars().all(|ch| ch.is_ascii_digit()));
        let (a, b) = (super::token(), super::token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(super::digest(&a).len(), 64);
    }
}
