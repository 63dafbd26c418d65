//! ES256 signing keys: generated here, stored as PKCS#8 PEM, named by a `kid` derived from the
//! public key, published as a JWKS. A [`KeySet`] signs with the newest active key and verifies
//! with every key not yet retired, so tokens outlive a rotation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::ecdsa::{SigningKey as EcKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What can go wrong with keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {kid} is not a valid P-256 PKCS#8 key: {reason}")]
    Malformed { kid: String, reason: String },
    #[error("there is no active signing key; run `ecocityhub keys rotate`")]
    NoActiveKey,
}

/// A signing key as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKey {
    pub kid: String,
    pub private_pem: String,
    pub created_at: DateTime<Utc>,
    /// After this, the key neither signs nor verifies.
    pub retired_at: Option<DateTime<Utc>>,
}

impl SigningKey {
    /// A fresh P-256 key.
    pub fn generate(now: DateTime<Utc>) -> SigningKey {
        let key = loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(k) = EcKey::from_bytes(&bytes.into()) {
                break k;
            }
        };
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encoding of a valid key")
            .to_string();
        SigningKey {
            kid: kid_of(key.verifying_key()),
            private_pem,
            created_at: now,
            retired_at: None,
        }
    }

    fn ec_key(&self) -> Result<EcKey, KeyError> {
        EcKey::from_pkcs8_pem(&self.private_pem).map_err(|e| KeyError::Malformed {
            kid: self.kid.clone(),
            reason: e.to_string(),
        })
    }
}

/// The `kid` of a public key: the first 16 hex digits of the SHA-256 of its SEC1 encoding.
fn kid_of(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.to_encoded_point(false).as_bytes())[..8])
}

/// The public half of a key as a JWK.
fn jwk(kid: &str, key: &VerifyingKey) -> Value {
    let point = key.to_encoded_point(false);
    json!({
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "use": "sig",
        "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed point")),
        "y": URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed point")),
    })
}

/// The keys in force: one that signs, all that verify.
pub struct KeySet {
    signing: Option<(String, EncodingKey)>,
    verifying: Vec<(String, DecodingKey)>,
    jwks: Value,
}

impl KeySet {
    /// Builds the set from stored keys; retired ones are left out, the newest signs.
    pub fn new(keys: &[SigningKey]) -> Result<KeySet, KeyError> {
        let mut active: Vec<&SigningKey> = keys.iter().filter(|k| k.retired_at.is_none()).collect();
        active.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        let mut verifying = Vec::new();
        let mut published = Vec::new();
        let mut signing = None;
        for k in active {
            let ec = k.ec_key()?;
            let public = ec.verifying_key();
            let point = public.to_encoded_point(false);
            let x = URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed point"));
            let y = URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed point"));
            let decoding =
                DecodingKey::from_ec_components(&x, &y).map_err(|e| KeyError::Malformed {
                    kid: k.kid.clone(),
                    reason: e.to_string(),
                })?;
            verifying.push((k.kid.clone(), decoding));
            published.push(jwk(&k.kid, public));
            if signing.is_none() {
                let encoding = EncodingKey::from_ec_pem(k.private_pem.as_bytes()).map_err(|e| {
                    KeyError::Malformed {
                        kid: k.kid.clone(),
                        reason: e.to_string(),
                    }
                })?;
                signing = Some((k.kid.clone(), encoding));
            }
        }
        Ok(KeySet {
            signing,
            verifying,
            jwks: json!({ "keys": published }),
        })
    }

    /// The key that signs new tokens, with its `kid`.
    pub fn signing(&self) -> Result<(&str, &EncodingKey), KeyError> {
        self.signing
            .as_ref()
            .map(|(kid, k)| (kid.as_str(), k))
            .ok_or(KeyError::NoActiveKey)
    }

    /// The verifying key with this `kid`, if it is in force.
    pub fn verifying(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key)
    }

    /// The JWKS document (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn the_newest_active_key_signs_and_all_active_keys_verify() {
        let now = Utc::now();
        let old = SigningKey::generate(now - Duration::days(30));
        let new = SigningKey::generate(now);
        let mut retired = SigningKey::generate(now - Duration::days(60));
        retired.retired_at = Some(now - Duration::days(1));
        let set = KeySet::new(&[old.clone(), retired.clone(), new.clone()]).unwrap();
        assert_eq!(set.signing().unwrap().0, new.kid);
        assert!(set.verifying(&old.kid).is_some());
        assert!(set.verifying(&retired.kid).is_none());
        let kids: Vec<&str> = set.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, vec![new.kid.as_str(), old.kid.as_str()]);
        assert_eq!(set.jwks()["keys"][0]["crv"], "P-256");
        assert_eq!(new.kid.len(), 16);
    }

    #[test]
    fn no_key_and_bad_keys_are_clear_errors() {
        assert!(matches!(
            KeySet::new(&[]).unwrap().signing(),
            Err(KeyError::NoActiveKey)
        ));
        let mut bad = SigningKey::generate(Utc::now());
        bad.private_pem = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n".into();
        assert!(matches!(
            KeySet::new(&[bad]),
            Err(KeyError::Malformed { .. })
        ));
    }
}
