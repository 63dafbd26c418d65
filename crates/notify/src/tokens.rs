//! Signed unsubscribe tokens: a link in every subscription mail removes the subscription
//! without signing in. The token is the subscription id and an HMAC-SHA256 of it under a key
//! made once and kept in the store's settings.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ecocityhub_store::{NotifyStore, StoreError};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The settings key of the unsubscribe key.
pub const UNSUBSCRIBE_SETTING: &str = "unsubscribe_key";

/// The key that signs unsubscribe links.
#[derive(Clone)]
pub struct UnsubscribeKey {
    key: Vec<u8>,
}

impl UnsubscribeKey {
    pub fn new(key: Vec<u8>) -> UnsubscribeKey {
        UnsubscribeKey { key }
    }

    /// The stored key, made first if there is none.
    pub async fn load_or_create(store: &dyn NotifyStore) -> Result<UnsubscribeKey, StoreError> {
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let stored = store
            .init_setting(UNSUBSCRIBE_SETTING, &URL_SAFE_NO_PAD.encode(fresh))
            .await?;
        let key = URL_SAFE_NO_PAD
            .decode(stored)
            .map_err(|e| StoreError::Corrupt(format!("unsubscribe key: {e}")))?;
        Ok(UnsubscribeKey { key })
    }

    fn mac(&self, subscription: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"unsubscribe:");
        mac.update(subscription.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// `SUBSCRIPTION_ID.SIGNATURE`, URL-safe.
    pub fn sign(&self, subscription: &str) -> String {
        format!(
            "{subscription}.{}",
            URL_SAFE_NO_PAD.encode(self.mac(subscription))
        )
    }

    /// The subscription a token names, if its signature is ours.
    pub fn verify(&self, token: &str) -> Option<String> {
        let (id, sig) = token.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let ok: bool =
            subtle::ConstantTimeEq::ct_eq(sig.as_slice(), self.mac(id).as_slice()).into();
        ok.then(|| id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key_and_id() {
        let k = UnsubscribeKey::new(vec![1; 32]);
        let t = k.sign("sub_abc");
        assert_eq!(k.verify(&t).as_deref(), Some("sub_abc"));
        assert_eq!(UnsubscribeKey::new(vec![2; 32]).verify(&t), None);
        let forged = t.replace("sub_abc", "sub_abd");
        assert_eq!(k.verify(&forged), None);
        assert_eq!(k.verify("garbage"), None);
    }
}
