//! Master keys: the [`KeyProvider`] trait that makes and unwraps data keys, and
//! [`LocalKeyProvider`], whose master keys live in a key file (mode 0600, created on first start)
//! or come from configuration. AWS KMS is in [`crate::kms`] (feature `aws`).
//!
//! Every master key has an id; a wrapped data key records the id of the key that wrapped it, so
//! old keys keep decrypting after a rotation until every blob is re-wrapped.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of data keys and local master keys: AES-256.
pub const KEY_LEN: usize = 32;

/// A data key or master key in memory, wiped when dropped.
pub type SecretKey = Zeroizing<[u8; KEY_LEN]>;

/// The file name of the local key file inside the directory the caller gives.
pub const KEY_FILE_NAME: &str = "master-keys.json";

/// A data key wrapped by a master key, with the master key's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// A fresh data key: in the clear for one use, and wrapped for storing beside the data.
pub struct DataKey {
    pub plaintext: SecretKey,
    pub wrapped: WrappedKey,
}

/// What can go wrong with master keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key {key_id:?} is not known to {provider}; was it removed?")]
    UnknownKey { key_id: String, provider: String },
    #[error("the data key does not unwrap under master key {key_id:?}: the wrapped key is damaged or belongs to another key")]
    Unwrap { key_id: String },
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("key file {path} may be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    InsecureKeyFile { path: String, mode: u32 },
    #[error("invalid master key configuration: {0}")]
    Invalid(String),
    #[error("AWS KMS: {0}")]
    Kms(String),
    #[error("{provider} cannot {what}")]
    Unsupported { provider: String, what: String },
}

/// Makes data keys and unwraps them: the master keys never leave the provider.
#[async_trait]
pub trait KeyProvider: Send + Sync + 'static {
    /// The id of the master key new data keys are wrapped under.
    fn current_key_id(&self) -> String;

    /// Wraps a data key under the current master key.
    async fn wrap(&self, plaintext: &[u8; KEY_LEN]) -> Result<WrappedKey, KeyError>;

    /// Unwraps a data key with the master key it names.
    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<SecretKey, KeyError>;

    /// Where the master keys are, for logs.
    fn describe(&self) -> String;

    /// A fresh random data key, wrapped under the current master key.
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        let plaintext = random_key();
        let wrapped = self.wrap(&plaintext).await?;
        Ok(DataKey { plaintext, wrapped })
    }

    /// The same data key wrapped under the current master key (for rotation).
    async fn rewrap(&self, wrapped: &WrappedKey) -> Result<WrappedKey, KeyError> {
        let plaintext = self.unwrap(wrapped).await?;
        self.wrap(&plaintext).await
    }

    /// Makes a new master key and makes it current, if this provider can (the key file can;
    /// configured keys and KMS keys are changed by their owner). Returns the new id.
    async fn create_master_key(&self) -> Result<String, KeyError> {
        Err(KeyError::Unsupported {
            provider: self.describe(),
            what: "create master keys (configure the new key instead)".into(),
        })
    }
}

/// 32 random bytes from the operating system.
pub fn random_key() -> SecretKey {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rng().fill_bytes(key.as_mut());
    key
}

/// One local master key.
#[derive(Clone)]
pub struct MasterKey {
    pub id: String,
    key: SecretKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    pub fn new(id: impl Into<String>, key: SecretKey) -> Result<MasterKey, KeyError> {
        let id = id.into();
        check_key_id(&id)?;
        Ok(MasterKey { id, key })
    }

    /// A key from configuration: `ID:BASE64` or just `BASE64` (the id is then `cfg-` and the
    /// first 8 hex digits of the key's SHA-256).
    pub fn parse(text: &str) -> Result<MasterKey, KeyError> {
        let text = text.trim();
        let (id, encoded) = match text.split_once(':') {
            Some((id, encoded)) => (Some(id.to_string()), encoded),
            None => (None, text),
        };
        let key = decode_key(encoded)?;
        let id = id.unwrap_or_else(|| format!("cfg-{}", &hex::encode(Sha256::digest(*key))[..8]));
        MasterKey::new(id, key)
    }

    fn generate(now: DateTime<Utc>) -> MasterKey {
        let mut suffix = [0u8; 4];
        rand::rng().fill_bytes(&mut suffix);
        MasterKey {
            id: format!("mk-{}-{}", now.format("%Y%m%d"), hex::encode(suffix)),
            key: random_key(),
        }
    }
}

fn decode_key(encoded: &str) -> Result<SecretKey, KeyError> {
    let bytes = Zeroizing::new(
        BASE64
            .decode(encoded.trim())
            .map_err(|e| KeyError::Invalid(format!("a master key is base64 of 32 bytes: {e}")))?,
    );
    let array: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        KeyError::Invalid(format!(
            "a master key is 32 bytes, this one is {}",
            bytes.len()
        ))
    })?;
    Ok(Zeroizing::new(array))
}

fn check_key_id(id: &str) -> Result<(), KeyError> {
    let fine = !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c));
    if fine {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "key id {id:?} must be 1-255 ASCII letters, digits or -_.:/"
        )))
    }
}

const WRAP_CONTEXT: &[u8] = b"ecocityhub data key\0";

fn wrap_with(master: &MasterKey, plaintext: &[u8; KEY_LEN]) -> WrappedKey {
    let cipher = Aes256Gcm::new(master.key.as_ref().into());
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = [WRAP_CONTEXT, master.id.as_bytes()].concat();
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("AES-GCM encrypts 32 bytes");
    WrappedKey {
        key_id: master.id.clone(),
        bytes: [nonce.as_slice(), &sealed].concat(),
    }
}

fn unwrap_with(master: &MasterKey, wrapped: &[u8]) -> Result<SecretKey, KeyError> {
    let failed = || KeyError::Unwrap {
        key_id: master.id.clone(),
    };
    if wrapped.len() != 12 + KEY_LEN + 16 {
        return Err(failed());
    }
    let (nonce, sealed) = wrapped.split_at(12);
    let cipher = Aes256Gcm::new(master.key.as_ref().into());
    let aad = [WRAP_CONTEXT, master.id.as_bytes()].concat();
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| failed())?,
    );
    let array: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| failed())?;
    Ok(Zeroizing::new(array))
}

/// The key file's content.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: u32,
    current: String,
    keys: Vec<KeyFileEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyFileEntry {
    id: String,
    created_at: DateTime<Utc>,
    key: String,
}

struct Keyring {
    current: String,
    keys: Vec<(MasterKey, DateTime<Utc>)>,
}

impl Keyring {
    fn find(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().map(|(k, _)| k).find(|k| k.id == id)
    }
}

/// Master keys on this machine: a key file, or keys given by configuration.
pub struct LocalKeyProvider {
    ring: RwLock<Keyring>,
    file: Option<PathBuf>,
}

/// A master key as listed (no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MasterKeyInfo {
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub current: bool,
}

impl LocalKeyProvider {
    /// The key file `KEY_FILE_NAME` in `dir` (the data directory), made with one fresh key and
    /// mode 0600 if it does not exist. A file others may read is refused.
    pub fn open_or_create(dir: &Path) -> Result<LocalKeyProvider, KeyError> {
        Self::open_or_create_at(&dir.join(KEY_FILE_NAME))
    }

    /// The key file at `path`, made as [`LocalKeyProvider::open_or_create`] does.
    pub fn open_or_create_at(path: &Path) -> Result<LocalKeyProvider, KeyError> {
        let file_error = |reason: String| KeyError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| file_error(e.to_string()))?;
        }
        if !path.exists() {
            let now = Utc::now();
            let key = MasterKey::generate(now);
            let ring = Keyring {
                current: key.id.clone(),
                keys: vec![(key, now)],
            };
            if create_file_once(path, &ring)? {
                tracing::info!(path = %path.display(), key_id = %ring.current, "created the master key file");
            }
        }
        Self::open(path)
    }

    /// An existing key file.
    pub fn open(path: &Path) -> Result<LocalKeyProvider, KeyError> {
        let ring = read_key_file(path)?;
        Ok(LocalKeyProvider {
            ring: RwLock::new(ring),
            file: Some(path.to_path_buf()),
        })
    }

    /// Keys from configuration: `current` wraps new data keys, `previous` still unwrap.
    pub fn from_keys(
        current: MasterKey,
        previous: Vec<MasterKey>,
    ) -> Result<LocalKeyProvider, KeyError> {
        let mut keys = vec![(current.clone(), Utc::now())];
        for key in previous {
            if keys.iter().any(|(k, _)| k.id == key.id) {
                return Err(KeyError::Invalid(format!("key id {} given twice", key.id)));
            }
            keys.push((key, Utc::now()));
        }
        Ok(LocalKeyProvider {
            ring: RwLock::new(Keyring {
                current: current.id,
                keys,
            }),
            file: None,
        })
    }

    /// The key file, if the keys live in one.
    pub fn key_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The master keys, without their material.
    pub fn key_infos(&self) -> Vec<MasterKeyInfo> {
        let ring = self.ring.read().expect("keyring lock");
        ring.keys
            .iter()
            .map(|(k, created)| MasterKeyInfo {
                id: k.id.clone(),
                created_at: self.file.as_ref().map(|_| *created),
                current: k.id == ring.current,
            })
            .collect()
    }

    fn master(&self, id: &str) -> Result<MasterKey, KeyError> {
        self.ring
            .read()
            .expect("keyring lock")
            .find(id)
            .cloned()
            .ok_or_else(|| KeyError::UnknownKey {
                key_id: id.to_string(),
                provider: self.describe(),
            })
    }
}

#[async_trait]
impl KeyProvider for LocalKeyProvider {
    fn current_key_id(&self) -> String {
        self.ring.read().expect("keyring lock").current.clone()
    }

    async fn wrap(&self, plaintext: &[u8; KEY_LEN]) -> Result<WrappedKey, KeyError> {
        let master = self.master(&self.current_key_id())?;
        Ok(wrap_with(&master, plaintext))
    }

    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<SecretKey, KeyError> {
        unwrap_with(&self.master(&wrapped.key_id)?, &wrapped.bytes)
    }

    fn describe(&self) -> String {
        match &self.file {
            Some(path) => format!("key file {}", path.display()),
            None => "configured master keys".into(),
        }
    }

    async fn create_master_key(&self) -> Result<String, KeyError> {
        let Some(path) = &self.file else {
            return Err(KeyError::Unsupported {
                provider: self.describe(),
                what: "create master keys: put the new key in the configuration and the old one among the previous keys".into(),
            });
        };
        let mut ring = self.ring.write().expect("keyring lock");
        // Another process may have rotated since we read the file.
        *ring = read_key_file(path)?;
        let now = Utc::now();
        let key = MasterKey::generate(now);
        let id = key.id.clone();
        ring.keys.push((key, now));
        ring.current = id.clone();
        replace_file(path, &ring)?;
        tracing::info!(path = %path.display(), key_id = %id, "new current master key");
        Ok(id)
    }
}

fn to_file(ring: &Keyring) -> Vec<u8> {
    let file = KeyFile {
        format: 1,
        current: ring.current.clone(),
        keys: ring
            .keys
            .iter()
            .map(|(k, created)| KeyFileEntry {
                id: k.id.clone(),
                created_at: *created,
                key: BASE64.encode(*k.key),
            })
            .collect(),
    };
    let mut text = serde_json::to_vec_pretty(&file).expect("key file serializes");
    text.push(b'\n');
    text
}

fn read_key_file(path: &Path) -> Result<Keyring, KeyError> {
    let file_error = |reason: String| KeyError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecureKeyFile {
            path: path.display().to_string(),
            mode,
        });
    }
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| file_error(e.to_string()))?);
    let file: KeyFile = serde_json::from_slice(&text).map_err(|e| file_error(e.to_string()))?;
    if file.format != 1 {
        return Err(file_error(format!("unknown format {}", file.format)));
    }
    let mut keys = Vec::new();
    for entry in file.keys {
        let key = decode_key(&entry.key).map_err(|e| file_error(e.to_string()))?;
        keys.push((MasterKey::new(entry.id, key)?, entry.created_at));
    }
    let ring = Keyring {
        current: file.current,
        keys,
    };
    if ring.find(&ring.current).is_none() {
        return Err(file_error(format!(
            "the current key {:?} is not in the file",
            ring.current
        )));
    }
    Ok(ring)
}

/// Writes `ring` to a new private file beside `path`, fsynced.
fn write_temp(path: &Path, ring: &Keyring) -> Result<PathBuf, KeyError> {
    let mut suffix = [0u8; 6];
    rand::rng().fill_bytes(&mut suffix);
    let temp = path.with_extension(format!("tmp-{}", hex::encode(suffix)));
    let file_error = |e: std::io::Error| KeyError::KeyFile {
        path: temp.display().to_string(),
        reason: e.to_string(),
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(file_error)?;
    file.write_all(&to_file(ring)).map_err(file_error)?;
    file.sync_all().map_err(file_error)?;
    Ok(temp)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
}

/// Creates the key file unless another process did first; `true` when this call made it.
fn create_file_once(path: &Path, ring: &Keyring) -> Result<bool, KeyError> {
    let temp = write_temp(path, ring)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    sync_dir(path);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(KeyError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

fn replace_file(path: &Path, ring: &Keyring) -> Result<(), KeyError> {
    let temp = write_temp(path, ring)?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        KeyError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    sync_dir(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_key_file_is_private_and_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LocalKeyProvider::open_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let data = keys.generate_data_key().await.unwrap();
        assert_eq!(data.wrapped.key_id, keys.current_key_id());

        let reopened = LocalKeyProvider::open_or_create(dir.path()).unwrap();
        assert_eq!(reopened.current_key_id(), keys.current_key_id());
        assert_eq!(
            *reopened.unwrap(&data.wrapped).await.unwrap(),
            *data.plaintext
        );
    }

    #[tokio::test]
    async fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        LocalKeyProvider::open_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalKeyProvider::open_or_create(dir.path())
            .err()
            .expect("refused");
        assert!(matches!(err, KeyError::InsecureKeyFile { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[tokio::test]
    async fn a_new_master_key_becomes_current_and_old_keys_still_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LocalKeyProvider::open_or_create(dir.path()).unwrap();
        let old = keys.generate_data_key().await.unwrap();
        let new_id = keys.create_master_key().await.unwrap();
        assert_ne!(new_id, old.wrapped.key_id);
        assert_eq!(keys.current_key_id(), new_id);
        let rewrapped = keys.rewrap(&old.wrapped).await.unwrap();
        assert_eq!(rewrapped.key_id, new_id);
        assert_eq!(*keys.unwrap(&rewrapped).await.unwrap(), *old.plaintext);
        let reopened = LocalKeyProvider::open(&dir.path().join(KEY_FILE_NAME)).unwrap();
        assert_eq!(reopened.key_infos().len(), 2);
        assert_eq!(
            *reopened.unwrap(&old.wrapped).await.unwrap(),
            *old.plaintext
        );
        let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn damaged_wrapped_keys_and_unknown_ids_fail_clearly() {
        let keys = LocalKeyProvider::from_keys(
            MasterKey::parse(&BASE64.encode([7u8; 32])).unwrap(),
            vec![],
        )
        .unwrap();
        assert!(keys.current_key_id().starts_with("cfg-"));
        let mut data = keys.generate_data_key().await.unwrap();
        data.wrapped.bytes[20] ^= 1;
        assert!(matches!(
            keys.unwrap(&data.wrapped).await,
            Err(KeyError::Unwrap { .. })
        ));
        data.wrapped.key_id = "gone".into();
        assert!(matches!(
            keys.unwrap(&data.wrapped).await,
            Err(KeyError::UnknownKey { .. })
        ));
        assert!(MasterKey::parse("id:c2hvcnQ=").is_err());
        assert!(keys.create_master_key().await.is_err());
    }
}
