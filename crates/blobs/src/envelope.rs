//! The envelope format shared by encrypted blobs and sealed secrets, and [`Sealer`].
//!
//! # Format, version 1
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `89 45 43 48 45 4E 43 0A` (`\x89ECHENC\n`) |
//! | 1 | format version, `1` |
//! | 1 | length *n* of the master key id (1–255) |
//! | *n* | the master key id (ASCII) |
//! | 2 | length *m* of the wrapped data key, big-endian |
//! | *m* | the wrapped data key (local keys: nonce, AES-256-GCM ciphertext and tag; KMS: its `CiphertextBlob`) |
//! | 12 | the nonce of the data |
//! | rest | the data encrypted with AES-256-GCM under the data key, then its 16-byte tag |
//!
//! The associated data is the magic, the version and a context: `blob\0` and the blob key for
//! blobs, `secret\0` and the caller's associated data for sealed secrets. The key id and the
//! wrapped key are outside the associated data so that a rotation can re-wrap the data key
//! without touching the data; they authenticate themselves (a changed wrapped key or id does
//! not unwrap, or unwraps to a key the data's tag refuses).
//!
//! Anything that does not start with the magic is a plain blob written before encryption
//! existed (model artifacts are gzip, reports Markdown or SVG: none starts with `0x89 E`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce as RingNonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::keys::{KeyError, KeyProvider, WrappedKey, KEY_LEN};

/// The first bytes of every encrypted blob and sealed secret.
pub const MAGIC: [u8; 8] = *b"\x89ECHENC\n";
/// The format version this code writes.
pub const FORMAT_VERSION: u8 = 1;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Does `bytes` start like an envelope (as opposed to a plain, legacy blob)?
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Why bytes that start with the magic are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not an envelope (no magic)")]
    NotSealed,
    #[error("envelope format version {0} is not known to this build")]
    UnknownVersion(u8),
    #[error("the envelope header is cut short or malformed ({0})")]
    Malformed(&'static str),
}

/// A parsed envelope, borrowing the ciphertext.
pub(crate) struct Envelope<'a> {
    pub wrapped: WrappedKey,
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub sealed: &'a [u8],
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope<'_>, FormatError> {
    let rest = bytes.strip_prefix(&MAGIC).ok_or(FormatError::NotSealed)?;
    let (&version, rest) = rest
        .split_first()
        .ok_or(FormatError::Malformed("version"))?;
    if version != FORMAT_VERSION {
        return Err(FormatError::UnknownVersion(version));
    }
    let (&id_len, rest) = rest.split_first().ok_or(FormatError::Malformed("key id"))?;
    let id_len = usize::from(id_len);
    if id_len == 0 || rest.len() < id_len + 2 {
        return Err(FormatError::Malformed("key id"));
    }
    let (id, rest) = rest.split_at(id_len);
    let key_id = std::str::from_utf8(id)
        .map_err(|_| FormatError::Malformed("key id"))?
        .to_string();
    let (len, rest) = rest.split_at(2);
    let wrapped_len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if rest.len() < wrapped_len + NONCE_LEN + TAG_LEN {
        return Err(FormatError::Malformed("wrapped key, nonce or tag"));
    }
    let (wrapped, rest) = rest.split_at(wrapped_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    Ok(Envelope {
        wrapped: WrappedKey {
            key_id,
            bytes: wrapped.to_vec(),
        },
        nonce: nonce.try_into().expect("12 bytes"),
        sealed,
    })
}

fn header(wrapped: &WrappedKey, nonce: &[u8], capacity: usize) -> Vec<u8> {
    let id = wrapped.key_id.as_bytes();
    let mut out =
        Vec::with_capacity(MAGIC.len() + 4 + id.len() + wrapped.bytes.len() + NONCE_LEN + capacity);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(u8::try_from(id.len()).expect("key ids are at most 255 bytes"));
    out.extend_from_slice(id);
    out.extend_from_slice(
        &u16::try_from(wrapped.bytes.len())
            .expect("wrapped keys are under 64 KiB")
            .to_be_bytes(),
    );
    out.extend_from_slice(&wrapped.bytes);
    out.extend_from_slice(nonce);
    out
}

fn associated_data(context: &[u8]) -> Vec<u8> {
    [&MAGIC[..], &[FORMAT_VERSION], context].concat()
}

fn data_cipher(key: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

/// Encrypts `plaintext` under `key` into a whole envelope (one copy of the plaintext).
///
/// The data is AES-256-GCM through ring, which measured 0.17 ms per MB here against 0.78 ms
/// for `aes-gcm` 0.10 (kept for wrapping data keys); both read each other's output.
pub(crate) fn seal_with(
    key: &[u8; KEY_LEN],
    wrapped: &WrappedKey,
    context: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut out = header(wrapped, &nonce, plaintext.len() + TAG_LEN);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = data_cipher(key)
        .seal_in_place_separate_tag(
            RingNonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(context)),
            &mut out[start..],
        )
        .expect("AES-GCM encrypts any blob under 64 GiB");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Decrypts an envelope's data; `None` when it does not authenticate.
pub(crate) fn open_with(
    key: &[u8; KEY_LEN],
    envelope: &Envelope<'_>,
    context: &[u8],
) -> Option<Vec<u8>> {
    let mut buffer = envelope.sealed.to_vec();
    let len = decrypt_in_place(key, &envelope.nonce, context, &mut buffer)?;
    buffer.truncate(len);
    Some(buffer)
}

/// Decrypts a whole stored envelope in place when no one else holds its bytes (else in one
/// copy); `None` when it does not authenticate.
pub(crate) fn open_stored(
    key: &[u8; KEY_LEN],
    stored: Bytes,
    header_len: usize,
    nonce: &[u8; NONCE_LEN],
    context: &[u8],
) -> Option<Bytes> {
    let mut buffer = stored
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    let mut body = buffer.split_off(header_len);
    let len = decrypt_in_place(key, nonce, context, &mut body)?;
    body.truncate(len);
    Some(body.freeze())
}

fn decrypt_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    context: &[u8],
    sealed: &mut [u8],
) -> Option<usize> {
    data_cipher(key)
        .open_in_place(
            RingNonce::assume_unique_for_key(*nonce),
            Aad::from(associated_data(context)),
            sealed,
        )
        .ok()
        .map(|plain| plain.len())
}

/// The same envelope with another wrapping of its data key; the data is copied unchanged.
pub(crate) fn with_wrapped(envelope: &Envelope<'_>, wrapped: &WrappedKey) -> Vec<u8> {
    let mut out = header(wrapped, &envelope.nonce, envelope.sealed.len());
    out.extend_from_slice(envelope.sealed);
    out
}

pub(crate) fn blob_context(key: &str) -> Vec<u8> {
    [b"blob\0".as_slice(), key.as_bytes()].concat()
}

fn secret_context(aad: &[u8]) -> Vec<u8> {
    [b"secret\0".as_slice(), aad].concat()
}

/// What can go wrong sealing or opening a secret.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the sealed secret is not an envelope: {0}")]
    Format(#[from] FormatError),
    #[error("the sealed secret does not authenticate: altered, damaged, or opened with other associated data")]
    Tampered,
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Seals small secrets kept outside the blob store (such as the token-signing private keys in
/// the database) with the same envelope and key provider as the blobs.
#[derive(Clone)]
pub struct Sealer {
    keys: Arc<dyn KeyProvider>,
}

impl Sealer {
    pub fn new(keys: Arc<dyn KeyProvider>) -> Sealer {
        Sealer { keys }
    }

    /// Encrypts `plaintext`, bound to `aad` (say `b"signing-key:KID"`): opening needs the same.
    pub async fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let data_key = self.keys.generate_data_key().await?;
        Ok(seal_with(
            &data_key.plaintext,
            &data_key.wrapped,
            &secret_context(aad),
            plaintext,
        ))
    }

    /// Decrypts what [`Sealer::seal`] made with the same `aad`.
    pub async fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let envelope = parse(sealed)?;
        let key = self.keys.unwrap(&envelope.wrapped).await?;
        open_with(&key, &envelope, &secret_context(aad))
            .map(Zeroizing::new)
            .ok_or(SealError::Tampered)
    }

    /// The same sealed secret with its data key wrapped under the current master key
    /// (unchanged if it already is).
    pub async fn rewrap(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let envelope = parse(sealed)?;
        if envelope.wrapped.key_id == self.keys.current_key_id() {
            return Ok(sealed.to_vec());
        }
        let wrapped = self.keys.rewrap(&envelope.wrapped).await?;
        Ok(with_wrapped(&envelope, &wrapped))
    }

    /// The id of the master key that wrapped a sealed secret's data key.
    pub fn key_id_of(sealed: &[u8]) -> Result<String, FormatError> {
        Ok(parse(sealed)?.wrapped.key_id)
    }

    pub fn keys(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{LocalKeyProvider, MasterKey};
    use base64::Engine;

    fn provider(byte: u8, id: &str) -> MasterKey {
        MasterKey::parse(&format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode([byte; 32])
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn sealed_secrets_open_only_with_their_associated_data() {
        let keys = Arc::new(LocalKeyProvider::from_keys(provider(1, "k1"), vec![]).unwrap());
        let sealer = Sealer::new(keys);
        let sealed = sealer
            .seal(b"signing-key:a", b"-----BEGIN PRIVATE KEY-----")
            .await
            .unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(5).any(|w| w == b"BEGIN"));
        assert_eq!(
            sealer
                .open(b"signing-key:a", &sealed)
                .await
                .unwrap()
                .as_slice(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(matches!(
            sealer.open(b"signing-key:b", &sealed).await,
            Err(SealError::Tampered)
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            sealer.open(b"signing-key:a", &flipped).await,
            Err(SealError::Tampered)
        ));
        assert!(matches!(
            sealer.open(b"x", b"plain PEM").await,
            Err(SealError::Format(FormatError::NotSealed))
        ));
        assert!(matches!(
            sealer.open(b"x", &sealed[..20]).await,
            Err(SealError::Format(FormatError::Malformed(_)))
        ));
    }

    #[test]
    fn the_data_is_standard_aes_256_gcm() {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let key = [9u8; 32];
        let wrapped = WrappedKey {
            key_id: "k".into(),
            bytes: vec![1; 60],
        };
        let sealed = seal_with(&key, &wrapped, b"blob\0a", b"hello");
        let envelope = parse(&sealed).unwrap();
        let plain = aes_gcm::Aes256Gcm::new((&key).into())
            .decrypt(
                aes_gcm::Nonce::from_slice(&envelope.nonce),
                Payload {
                    msg: envelope.sealed,
                    aad: &associated_data(b"blob\0a"),
                },
            )
            .unwrap();
        assert_eq!(plain, b"hello");
        let header_len = sealed.len() - envelope.sealed.len();
        let nonce = envelope.nonce;
        assert_eq!(
            open_stored(
                &key,
                Bytes::from(sealed.clone()),
                header_len,
                &nonce,
                b"blob\0a"
            )
            .unwrap(),
            "hello"
        );
        assert!(open_stored(&key, Bytes::from(sealed), header_len, &nonce, b"blob\0b").is_none());
    }

    #[tokio::test]
    async fn rewrapping_a_secret_moves_it_to_the_current_key() {
        let old = Arc::new(LocalKeyProvider::from_keys(provider(1, "k1"), vec![]).unwrap());
        let sealed = Sealer::new(old).seal(b"a", b"secret").await.unwrap();
        let both = Arc::new(
            LocalKeyProvider::from_keys(provider(2, "k2"), vec![provider(1, "k1")]).unwrap(),
        );
        let sealer = Sealer::new(both);
        let rewrapped = sealer.rewrap(&sealed).await.unwrap();
        assert_eq!(Sealer::key_id_of(&rewrapped).unwrap(), "k2");
        let only_new = Arc::new(LocalKeyProvider::from_keys(provider(2, "k2"), vec![]).unwrap());
        assert_eq!(
            Sealer::new(only_new)
                .open(b"a", &rewrapped)
                .await
                .unwrap()
                .as_slice(),
            b"secret"
        );
    }
}
