//! The token-signing keys' private halves at rest: sealed in the database with the blob layer's
//! envelope ([`ecocityhub_blobs::Sealer`], the same master key as the blobs: a key file on one
//! machine, KMS in AWS). A key stored in plain text by an earlier version is sealed the first
//! time it is read with a sealer at hand; `keys rotate-master` seals every key again under the
//! new master key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ecocityhub_blobs::Sealer;
use ecocityhub_identity::SigningKey;
use ecocityhub_store::Store;

use crate::error::{ApiError, ApiResult};

/// What a sealed private half starts with in the `private_pem` column.
pub const SEALED_PREFIX: &str = "sealed:v1:";

fn aad(kid: &str) -> Vec<u8> {
    format!("signing-key:{kid}").into_bytes()
}

/// Is this stored private half sealed?
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The key as it is stored: its private half sealed.
pub async fn seal(sealer: &Sealer, key: &SigningKey) -> ApiResult<SigningKey> {
    let sealed = sealer
        .seal(&aad(&key.kid), key.private_pem.as_bytes())
        .await
        .map_err(|e| ApiError::Internal(format!("sealing signing key {}: {e}", key.kid)))?;
    Ok(SigningKey {
        private_pem: format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)),
        ..key.clone()
    })
}

/// The key as it is used: its private half in PEM.
pub async fn open(sealer: Option<&Sealer>, stored: &SigningKey) -> ApiResult<SigningKey> {
    let Some(encoded) = stored.private_pem.strip_prefix(SEALED_PREFIX) else {
        return Ok(stored.clone());
    };
    let sealer = sealer.ok_or_else(|| {
        ApiError::Unavailable(format!(
            "signing key {} is sealed, and no master key is configured to open it",
            stored.kid
        ))
    })?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|e| ApiError::Internal(format!("signing key {} is damaged: {e}", stored.kid)))?;
    let pem = sealer.open(&aad(&stored.kid), &bytes).await.map_err(|e| {
        ApiError::Internal(format!("signing key {} cannot be opened: {e}", stored.kid))
    })?;
    let pem = String::from_utf8(pem.to_vec())
        .map_err(|_| ApiError::Internal(format!("signing key {} is not PEM", stored.kid)))?;
    Ok(SigningKey {
        private_pem: pem,
        ..stored.clone()
    })
}

/// Every signing key of the store, opened; keys still in plain text are sealed in the store
/// on the way when a sealer is given.
pub async fn load(store: &dyn Store, sealer: Option<&Sealer>) -> ApiResult<Vec<SigningKey>> {
    let mut keys = Vec::new();
    for stored in store.signing_keys().await? {
        if let (Some(sealer), false) = (sealer, is_sealed(&stored.private_pem)) {
            let sealed = seal(sealer, &stored).await?;
            store
                .replace_signing_key_secret(&stored.kid, &sealed.private_pem)
                .await?;
            tracing::info!(kid = %stored.kid, "a signing key kept in plain text is now sealed");
        }
        keys.push(open(sealer, &stored).await?);
    }
    Ok(keys)
}

/// Stores a new key, sealed when a sealer is given.
pub async fn insert(store: &dyn Store, sealer: Option<&Sealer>, key: &SigningKey) -> ApiResult<()> {
    match sealer {
        Some(sealer) => store.insert_signing_key(&seal(sealer, key).await?).await?,
        None => store.insert_signing_key(key).await?,
    }
    Ok(())
}

/// Seals every key again under the sealer's current master key (after a master-key rotation);
/// returns how many were sealed again.
pub async fn reseal_all(store: &dyn Store, sealer: &Sealer) -> ApiResult<usize> {
    let mut done = 0;
    for stored in store.signing_keys().await? {
        let resealed = match stored.private_pem.strip_prefix(SEALED_PREFIX) {
            Some(encoded) => {
                let bytes = STANDARD.decode(encoded).map_err(|e| {
                    ApiError::Internal(format!("signing key {} is damaged: {e}", stored.kid))
                })?;
                let again = sealer.rewrap(&bytes).await.map_err(|e| {
                    ApiError::Internal(format!(
                        "signing key {} cannot be re-sealed: {e}",
                        stored.kid
                    ))
                })?;
                format!("{SEALED_PREFIX}{}", STANDARD.encode(again))
            }
            None => seal(sealer, &stored).await?.private_pem,
        };
        store
            .replace_signing_key_secret(&stored.kid, &resealed)
            .await?;
        done += 1;
    }
    Ok(done)
}
