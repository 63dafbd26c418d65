//! The device authorizer: a station's sensor sends its API key (see
//! [`ecocityhub_identity::device_keys`] for the format) as `Authorization: Bearer <key>` or
//! `X-Api-Key: <key>`; this finds the stored key, checks it is live and records its use.

use axum::http::HeaderMap;
use chrono::{DateTime, Duration, Utc};
use ecocityhub_domain::StationId;
use ecocityhub_identity::device_keys;
use ecocityhub_store::{DeviceKey, Store};

use crate::error::{ApiError, ApiResult};

/// How often the last-used time of a key is written (not on every request).
const TOUCH_EVERY: Duration = Duration::seconds(60);

/// A new key for `station`: the plain key to show once, and the record to store.
pub fn generate(
    station: &StationId,
    label: Option<String>,
    now: DateTime<Utc>,
) -> (String, DeviceKey) {
    let key = device_keys::generate();
    let record = DeviceKey {
        prefix: key.prefix,
        station: station.clone(),
        secret_hash: key.secret_hash,
        label,
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    (key.plain, record)
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
    let (prefix, secret) = device_keys::parse(&key).ok_or_else(invalid)?;
    let stored = store.device_key(prefix).await?.ok_or_else(invalid)?;
    if !device_keys::secret_matches(secret, &stored.secret_hash) || stored.revoked_at.is_some() {
        return Err(invalid());
    }
    if stored.last_used_at.is_none_or(|t| now - t > TOUCH_EVERY) {
        store.touch_device_key(prefix, now).await?;
    }
    crate::audit::note_identity(ecocityhub_observe::audit::UserIdentity::device(
        stored.station.as_str(),
        prefix,
    ));
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_generated_record_belongs_to_its_station_and_matches_its_key() {
        let st = StationId::parse("s1").unwrap();
        let (plain, record) = generate(&st, Some("roof".into()), Utc::now());
        let (prefix, secret) = device_keys::parse(&plain).unwrap();
        assert_eq!(record.prefix, prefix);
        assert_eq!(record.station, st);
        assert!(device_keys::secret_matches(secret, &record.secret_hash));
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
