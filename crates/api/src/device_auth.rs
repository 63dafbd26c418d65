//! Device API keys: how a station's sensor proves who it is when it sends readings.
//!
//! A key looks like `ech_<prefix>_<secret>`: the 12-character prefix is public and finds the
//! stored key; the 40-character secret is kept only as a SHA-256 hash (a random 160-bit secret
//! needs no slow hash) and compared in constant time. A key belongs to one station. Clients
//! send it as `Authorization: Bearer <key>` or `X-Api-Key: <key>`.

use axum::http::HeaderMap;
use chrono::{DateTime, Duration, Utc};
use ecocityhub_domain::StationId;
use ecocityhub_store::{DeviceKey, Store};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ApiResult};

const KEY_PREFIX: &str = "ech_";
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// How often the last-used time of a key is written (not on every request).
const TOUCH_EVERY: Duration = Duration::seconds(60);

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new key for `station`: the plain key to show once, and the record to store.
pub fn generate(
    station: &StationId,
    label: Option<String>,
    now: DateTime<Utc>,
) -> (String, DeviceKey) {
    let prefix = random_string(12);
    let secret = random_string(40);
    let plain = format!("{KEY_PREFIX}{prefix}_{secret}");
    let record = DeviceKey {
        prefix,
        station: station.clone(),
        secret_hash: hash_secret(&secret),
        label,
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    (plain, record)
}

/// The key a request carries, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Checks the presented key and returns it as stored (its station is the one it may write to).
pub async fn authenticate(
    store: &dyn Store,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> ApiResult<DeviceKey> {
    let Some(key) = presented_key(headers) else {
        return Err(ApiError::unauthorized(
            "this endpoint needs a device API key: send `Authorization: Bearer <key>` or `X-Api-Key: <key>` \
             (create one with `ecocityhub device create --station ID`)",
        ));
    };
    let invalid =
        || ApiError::unauthorized("the API key is not valid (unknown, malformed or revoked)");
    let rest = key.strip_prefix(KEY_PREFIX).ok_or_else(invalid)?;
    let (prefix, secret) = rest.split_once('_').ok_or_else(invalid)?;
    let stored = store.device_key(prefix).await?.ok_or_else(invalid)?;
    let matches: bool = hash_secret(secret)
        .as_bytes()
        .ct_eq(stored.secret_hash.as_bytes())
        .into();
    if !matches || stored.revoked_at.is_some() {
        return Err(invalid());
    }
    if stored.last_used_at.is_none_or(|t| now - t > TOUCH_EVERY) {
        store.touch_device_key(prefix, now).await?;
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn generated_keys_have_the_documented_shape_and_hash() {
        let st = StationId::parse("s1").unwrap();
        let (plain, record) = generate(&st, None, Utc::now());
        assert!(plain.starts_with("ech_"));
        assert_eq!(plain.len(), 4 + 12 + 1 + 40);
        let secret = plain.rsplit('_').next().unwrap();
        assert_eq!(record.secret_hash, hash_secret(secret));
        assert!(!record.secret_hash.contains(secret));
        let (other, _) = generate(&st, None, Utc::now());
        assert_ne!(plain, other);
    }

    #[test]
    fn keys_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer ech_abc_def"),
        );
        assert_eq!(presented_key(&h).as_deref(), Some("ech_abc_def"));
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic Zm9vOmJhcg=="),
        );
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("ech_x_y"));
        assert_eq!(presented_key(&h).as_deref(), Some("ech_x_y"));
    }
}
