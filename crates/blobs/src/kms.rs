//! [`KmsKeyProvider`]: master keys in AWS KMS (feature `aws`). Data keys come from
//! `GenerateDataKey` (AES_256) and are unwrapped with `Decrypt`; a rotation re-wraps with
//! `ReEncrypt`, so a data key never leaves KMS in the clear for it. The key id recorded in each
//! envelope is the key's ARN. Unwrapped data keys are cached (bounded) so reading the same blob
//! again costs no KMS call.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_kms::Client;
use zeroize::Zeroizing;

use crate::keys::{DataKey, KeyError, KeyProvider, SecretKey, WrappedKey, KEY_LEN};

/// How many unwrapped data keys are kept in memory.
const CACHE_ENTRIES: usize = 4096;

/// Master keys in AWS KMS.
pub struct KmsKeyProvider {
    client: Client,
    /// The ARN of the key new data keys are made under.
    key_arn: String,
    cache: Mutex<HashMap<Vec<u8>, SecretKey>>,
}

impl std::fmt::Debug for KmsKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKeyProvider")
            .field("key_arn", &self.key_arn)
            .finish()
    }
}

fn kms_error(what: &str, e: impl std::fmt::Display) -> KeyError {
    KeyError::Kms(format!("{what}: {e}"))
}

/// The SDK's configuration from the environment (`AWS_REGION`, credentials, and
/// `AWS_ENDPOINT_URL` for moto), over rustls with ring.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}

impl KmsKeyProvider {
    /// The key `key_id` (id, ARN or `alias/…`), resolved to its ARN with `DescribeKey`.
    pub async fn new(client: Client, key_id: &str) -> Result<KmsKeyProvider, KeyError> {
        let described = client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| kms_error(&format!("DescribeKey {key_id}"), e.into_service_error()))?;
        let key_arn = described
            .key_metadata()
            .map(|m| m.arn().unwrap_or(m.key_id()).to_string())
            .ok_or_else(|| KeyError::Kms(format!("DescribeKey {key_id} returned no metadata")))?;
        Ok(KmsKeyProvider {
            client,
            key_arn,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// [`KmsKeyProvider::new`] with a client configured from the environment.
    pub async fn from_env(key_id: &str) -> Result<KmsKeyProvider, KeyError> {
        KmsKeyProvider::new(Client::new(&sdk_config().await), key_id).await
    }

    fn remember(&self, wrapped: &[u8], key: &SecretKey) {
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(wrapped.to_vec(), key.clone());
    }
}

fn secret_key(plaintext: Option<&Blob>, what: &str) -> Result<SecretKey, KeyError> {
    let bytes = plaintext
        .map(Blob::as_ref)
        .ok_or_else(|| KeyError::Kms(format!("{what} returned no plaintext")))?;
    let array: [u8; KEY_LEN] = bytes
        .try_into()
        .map_err(|_| KeyError::Kms(format!("{what} returned {} bytes, not 32", bytes.len())))?;
    Ok(Zeroizing::new(array))
}

#[async_trait]
impl KeyProvider for KmsKeyProvider {
    fn current_key_id(&self) -> String {
        self.key_arn.clone()
    }

    async fn wrap(&self, plaintext: &[u8; KEY_LEN]) -> Result<WrappedKey, KeyError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_arn)
            .plaintext(Blob::new(plaintext.to_vec()))
            .send()
            .await
            .map_err(|e| kms_error("Encrypt", e.into_service_error()))?;
        let bytes = out
            .ciphertext_blob()
            .ok_or_else(|| KeyError::Kms("Encrypt returned no ciphertext".into()))?;
        Ok(WrappedKey {
            key_id: out.key_id().unwrap_or(&self.key_arn).to_string(),
            bytes: bytes.as_ref().to_vec(),
        })
    }

    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<SecretKey, KeyError> {
        if let Some(key) = self.cache.lock().expect("cache lock").get(&wrapped.bytes) {
            return Ok(key.clone());
        }
        let out = self
            .client
            .decrypt()
            .key_id(&wrapped.key_id)
            .ciphertext_blob(Blob::new(wrapped.bytes.clone()))
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                e if e.is_invalid_ciphertext_exception() || e.is_incorrect_key_exception() => {
                    KeyError::Unwrap {
                        key_id: wrapped.key_id.clone(),
                    }
                }
                e if e.is_not_found_exception() => KeyError::UnknownKey {
                    key_id: wrapped.key_id.clone(),
                    provider: "AWS KMS".into(),
                },
                e => kms_error("Decrypt", e),
            })?;
        let key = secret_key(out.plaintext(), "Decrypt")?;
        self.remember(&wrapped.bytes, &key);
        Ok(key)
    }

    fn describe(&self) -> String {
        format!("AWS KMS key {}", self.key_arn)
    }

    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_arn)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", e.into_service_error()))?;
        let plaintext = secret_key(out.plaintext(), "GenerateDataKey")?;
        let bytes = out
            .ciphertext_blob()
            .ok_or_else(|| KeyError::Kms("GenerateDataKey returned no ciphertext".into()))?
            .as_ref()
            .to_vec();
        self.remember(&bytes, &plaintext);
        Ok(DataKey {
            plaintext,
            wrapped: WrappedKey {
                key_id: out.key_id().unwrap_or(&self.key_arn).to_string(),
                bytes,
            },
        })
    }

    async fn rewrap(&self, wrapped: &WrappedKey) -> Result<WrappedKey, KeyError> {
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.bytes.clone()))
            .source_key_id(&wrapped.key_id)
            .destination_key_id(&self.key_arn)
            .send()
            .await
            .map_err(|e| kms_error("ReEncrypt", e.into_service_error()))?;
        let bytes = out
            .ciphertext_blob()
            .ok_or_else(|| KeyError::Kms("ReEncrypt returned no ciphertext".into()))?;
        Ok(WrappedKey {
            key_id: out.key_id().unwrap_or(&self.key_arn).to_string(),
            bytes: bytes.as_ref().to_vec(),
        })
    }
}
