//! Envelope key management.
//!
//! Each person (subject) gets a random 256-bit data key. Data keys are stored wrapped
//! (AES-256-GCM) by a master key that only the environment contains. Each row names its
//! master key, so rotating the master key re-wraps data keys and leaves every sealed
//! value in the event log untouched. Destroying a subject's data key makes all of their
//! sealed values unreadable without rewriting the immutable log.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deadpool_postgres::Pool;
use lru::LruCache;
use medflow_domain::values::SealedValue;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::envelope::DataKey;
use super::CryptoError;

/// How long an unwrapped data key stays in memory. Bounds how long a destroyed key
/// stays usable in a running process.
const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: usize = 10_000;

/// Master keys parsed from `MEDFLOW_MASTER_KEYS`.
pub struct MasterKeys {
    current_id: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl MasterKeys {
    /// Parses `id:base64key[,id:base64key...]`; the first entry is the current key.
    pub fn parse(secret: &SecretString) -> Result<Self, String> {
        let mut keys = HashMap::new();
        let mut current_id = None;
        for entry in secret
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, encoded) = entry.split_once(':').ok_or_else(|| {
                "MEDFLOW_MASTER_KEYS entries must look like id:base64key".to_owned()
            })?;
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(
                    "MEDFLOW_MASTER_KEYS key ids may contain only letters, digits, '-' and '_'"
                        .to_owned(),
                );
            }
            let bytes = STANDARD
                .decode(encoded)
                .map_err(|_| format!("MEDFLOW_MASTER_KEYS key '{id}' is not valid base64"))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "MEDFLOW_MASTER_KEYS key '{id}' must decode to 32 bytes, got {}",
                    bytes.len()
                ));
            }
            if keys
                .insert(
                    id.to_owned(),
                    Aes256Gcm::new_from_slice(&bytes).expect("32-byte key"),
                )
                .is_some()
            {
                return Err(format!("MEDFLOW_MASTER_KEYS lists key id '{id}' twice"));
            }
            current_id.get_or_insert_with(|| id.to_owned());
        }
        let current_id = current_id.ok_or_else(|| "MEDFLOW_MASTER_KEYS is empty".to_owned())?;
        Ok(Self { current_id, keys })
    }

    pub fn current_id(&self) -> &str {
        &self.current_id
    }

    fn wrap(&self, key_id: Uuid, data_key: &[u8; 32]) -> Vec<u8> {
        let master = &self.keys[&self.current_id];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = wrap_aad(key_id, &self.current_id);
        let mut wrapped = nonce.to_vec();
        wrapped.extend(
            master
                .encrypt(
                    &nonce,
                    Payload {
                        msg: data_key,
                        aad: &aad,
                    },
                )
                .expect("AES-GCM encryption of 32 bytes cannot fail"),
        );
        wrapped
    }

    fn unwrap(
        &self,
        key_id: Uuid,
        master_id: &str,
        wrapped: &[u8],
    ) -> Result<[u8; 32], CryptoError> {
        let master = self
            .keys
            .get(master_id)
            .ok_or_else(|| CryptoError::UnknownMasterKey(master_id.to_owned()))?;
        if wrapped.len() < 12 {
            return Err(CryptoError::Encoding);
        }
        let (nonce, ciphertext) = wrapped.split_at(12);
        let aad = wrap_aad(key_id, master_id);
        let plain = master
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        plain.try_into().map_err(|_| CryptoError::Encoding)
    }
}

fn wrap_aad(key_id: Uuid, master_id: &str) -> Vec<u8> {
    format!("medflow/data-key/v1/{key_id}/{master_id}").into_bytes()
}

struct CachedKey {
    key: DataKey,
    loaded_at: Instant,
}

/// Data keys in PostgreSQL, unwrapped on demand and cached briefly.
pub struct KeyRing {
    pool: Pool,
    masters: MasterKeys,
    by_key_id: Mutex<LruCache<Uuid, CachedKey>>,
    by_subject: Mutex<LruCache<Uuid, CachedKey>>,
}

impl KeyRing {
    pub fn new(pool: Pool, masters: MasterKeys) -> Self {
        let capacity = NonZeroUsize::new(CACHE_CAPACITY).expect("non-zero capacity");
        Self {
            pool,
            masters,
            by_key_id: Mutex::new(LruCache::new(capacity)),
            by_subject: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn cached(cache: &Mutex<LruCache<Uuid, CachedKey>>, id: Uuid) -> Option<DataKey> {
        let mut cache = cache.lock().expect("key cache lock poisoned");
        match cache.get(&id) {
            Some(entry) if entry.loaded_at.elapsed() < CACHE_TTL => Some(entry.key.clone()),
            Some(_) => {
                cache.pop(&id);
                None
            }
            None => None,
        }
    }

    fn remember(&self, subject: Uuid, key: &DataKey) {
        let loaded_at = Instant::now();
        self.by_key_id.lock().expect("key cache lock poisoned").put(
            key.key_id,
            CachedKey {
                key: key.clone(),
                loaded_at,
            },
        );
        self.by_subject
            .lock()
            .expect("key cache lock poisoned")
            .put(
                subject,
                CachedKey {
                    key: key.clone(),
                    loaded_at,
                },
            );
    }

    /// Returns the subject's active data key, creating it on first use. Concurrent
    /// first uses agree on one key through the unique index on active keys.
    pub async fn key_for_subject(&self, subject: Uuid) -> Result<DataKey, CryptoError> {
        if let Some(key) = Self::cached(&self.by_subject, subject) {
            return Ok(key);
        }
        let client = self.pool.get().await?;

        let mut fresh = [0u8; 32];
        OsRng.fill_bytes(&mut fresh);
        let key_id = Uuid::new_v4();
        let wrapped = self.masters.wrap(key_id, &fresh);
        client
            .execute(
                "INSERT INTO data_keys (key_id, subject_id, master_key_id, wrapped_key)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (subject_id) WHERE destroyed_at IS NULL DO NOTHING",
                &[&key_id, &subject, &self.masters.current_id(), &wrapped],
            )
            .await?;

        let row = client
            .query_one(
                "SELECT key_id, master_key_id, wrapped_key FROM data_keys
                 WHERE subject_id = $1 AND destroyed_at IS NULL",
                &[&subject],
            )
            .await?;
        let key_id: Uuid = row.get(0);
        let master_id: String = row.get(1);
        let wrapped: Vec<u8> = row.get(2);
        let bytes = self.masters.unwrap(key_id, &master_id, &wrapped)?;
        let key = DataKey::from_bytes(key_id, &bytes);
        self.remember(subject, &key);
        Ok(key)
    }

    /// Returns the data key a sealed value names, even if the subject now has a newer one.
    pub async fn key_by_id(&self, key_id: Uuid) -> Result<DataKey, CryptoError> {
        if let Some(key) = Self::cached(&self.by_key_id, key_id) {
            return Ok(key);
        }
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT master_key_id, wrapped_key FROM data_keys WHERE key_id = $1",
                &[&key_id],
            )
            .await?
            .ok_or(CryptoError::UnknownDataKey(key_id))?;
        let master_id: Option<String> = row.get(0);
        let wrapped: Option<Vec<u8>> = row.get(1);
        let (Some(master_id), Some(wrapped)) = (master_id, wrapped) else {
            return Err(CryptoError::DestroyedDataKey(key_id));
        };
        let bytes = self.masters.unwrap(key_id, &master_id, &wrapped)?;
        let key = DataKey::from_bytes(key_id, &bytes);
        self.by_key_id.lock().expect("key cache lock poisoned").put(
            key_id,
            CachedKey {
                key: key.clone(),
                loaded_at: Instant::now(),
            },
        );
        Ok(key)
    }

    pub async fn seal(
        &self,
        subject: Uuid,
        field: &str,
        plaintext: &[u8],
    ) -> Result<SealedValue, CryptoError> {
        Ok(self
            .key_for_subject(subject)
            .await?
            .seal(subject, field, plaintext))
    }

    pub async fn open(
        &self,
        subject: Uuid,
        field: &str,
        sealed: &SealedValue,
    ) -> Result<Vec<u8>, CryptoError> {
        self.key_by_id(sealed.key_id)
            .await?
            .open(subject, field, sealed)
    }

    /// Opens a sealed value whose plaintext is UTF-8 text.
    pub async fn open_text(
        &self,
        subject: Uuid,
        field: &str,
        sealed: &SealedValue,
    ) -> Result<String, CryptoError> {
        String::from_utf8(self.open(subject, field, sealed).await?)
            .map_err(|_| CryptoError::Encoding)
    }

    /// Id of the master key that wraps new data keys.
    pub fn current_master_key_id(&self) -> &str {
        self.masters.current_id()
    }

    /// Re-wraps every live data key under the current master key and returns how many
    /// rows changed. Sealed values keep working because they name the data key, not the
    /// master key. Afterwards the old master key can be removed from the environment.
    pub async fn rewrap_all(&self) -> Result<u64, CryptoError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let rows = transaction
            .query(
                "SELECT key_id, master_key_id, wrapped_key FROM data_keys
                 WHERE destroyed_at IS NULL AND master_key_id <> $1 FOR UPDATE",
                &[&self.masters.current_id()],
            )
            .await?;
        let mut changed = 0;
        for row in rows {
            let key_id: Uuid = row.get(0);
            let master_id: String = row.get(1);
            let wrapped: Vec<u8> = row.get(2);
            let bytes = self.masters.unwrap(key_id, &master_id, &wrapped)?;
            let rewrapped = self.masters.wrap(key_id, &bytes);
            changed += transaction
                .execute(
                    "UPDATE data_keys SET master_key_id = $2, wrapped_key = $3 WHERE key_id = $1",
                    &[&key_id, &self.masters.current_id(), &rewrapped],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(changed)
    }
}

/// Result of [`KeyRing::check_master_keys`] for one master key id in the key store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyCheck {
    pub master_key_id: String,
    /// Live data keys wrapped by this master key.
    pub data_keys: i64,
    /// Data keys tried, the newest first.
    pub sampled: u64,
    /// Sampled data keys that failed to unwrap.
    pub failed: u64,
    /// Whether MEDFLOW_MASTER_KEYS contains a key with this id at all.
    pub configured: bool,
}

impl MasterKeyCheck {
    pub fn is_ok(&self) -> bool {
        self.configured && self.failed == 0
    }
}

impl KeyRing {
    /// Unwraps up to `per_master_key` of the newest live data keys of every master key id
    /// in the key store. A failure means the configured master keys are not the ones the
    /// data keys were wrapped with (another deployment's keys, or a key removed too soon),
    /// and every read of that data would fail.
    pub async fn check_master_keys(
        &self,
        per_master_key: i64,
    ) -> Result<Vec<MasterKeyCheck>, CryptoError> {
        let client = self.pool.get().await?;
        let counts = client
            .query(
                "SELECT master_key_id, count(*) FROM data_keys WHERE destroyed_at IS NULL
                 GROUP BY master_key_id ORDER BY master_key_id",
                &[],
            )
            .await?;
        let mut checks = Vec::new();
        for row in counts {
            let master_key_id: String = row.get(0);
            let samples = client
                .query(
                    "SELECT key_id, wrapped_key FROM data_keys
                     WHERE destroyed_at IS NULL AND master_key_id = $1
                     ORDER BY created_at DESC LIMIT $2",
                    &[&master_key_id, &per_master_key],
                )
                .await?;
            let mut check = MasterKeyCheck {
                configured: self.masters.keys.contains_key(&master_key_id),
                master_key_id,
                data_keys: row.get(1),
                sampled: 0,
                failed: 0,
            };
            for sample in samples {
                let wrapped: Vec<u8> = sample.get(1);
                check.sampled += 1;
                if self
                    .masters
                    .unwrap(sample.get(0), &check.master_key_id, &wrapped)
                    .is_err()
                {
                    check.failed += 1;
                }
            }
            checks.push(check);
        }
        Ok(checks)
    }
}

impl KeyRing {
    /// Destroys every data key of `subject` (crypto-shredding): their sealed values in the
    /// immutable log can no longer be opened. Returns how many keys were destroyed.
    ///
    /// NOTE: other processes may keep an unwrapped copy cached for up to `CACHE_TTL`.
    pub async fn destroy_subject(&self, subject: Uuid) -> Result<u64, CryptoError> {
        let client = self.pool.get().await?;
        let destroyed = client
            .execute(
                "UPDATE data_keys SET wrapped_key = NULL, master_key_id = NULL, destroyed_at = now()
                 WHERE subject_id = $1 AND destroyed_at IS NULL",
                &[&subject],
            )
            .await?;
        self.by_subject
            .lock()
            .expect("key cache lock poisoned")
            .pop(&subject);
        self.by_key_id
            .lock()
            .expect("key cache lock poisoned")
            .clear();
        Ok(destroyed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(raw: &str) -> SecretString {
        SecretString::from(raw.to_owned())
    }

    #[test]
    fn master_keys_first_entry_is_current() {
        let raw = format!(
            "new:{},old:{}",
            STANDARD.encode([1u8; 32]),
            STANDARD.encode([2u8; 32])
        );
        let keys = MasterKeys::parse(&secret(&raw)).unwrap();
        assert_eq!(keys.current_id(), "new");
    }

    #[test]
    fn master_keys_reject_bad_entries() {
        let cases = [
            ("", "MEDFLOW_MASTER_KEYS is empty"),
            (
                "k1",
                "MEDFLOW_MASTER_KEYS entries must look like id:base64key",
            ),
            ("k1:%%%", "MEDFLOW_MASTER_KEYS key 'k1' is not valid base64"),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                MasterKeys::parse(&secret(raw)).err().as_deref(),
                Some(expected),
                "input {raw:?}"
            );
        }
        let short = format!("k1:{}", STANDARD.encode([1u8; 16]));
        assert!(MasterKeys::parse(&secret(&short))
            .err()
            .unwrap()
            .contains("32 bytes, got 16"));
    }

    #[test]
    fn wrapped_key_unwraps_under_old_master_after_rotation() {
        let old =
            MasterKeys::parse(&secret(&format!("old:{}", STANDARD.encode([2u8; 32])))).unwrap();
        let key_id = Uuid::from_u128(5);
        let wrapped = old.wrap(key_id, &[7u8; 32]);
        let rotated = MasterKeys::parse(&secret(&format!(
            "new:{},old:{}",
            STANDARD.encode([1u8; 32]),
            STANDARD.encode([2u8; 32])
        )))
        .unwrap();
        assert_eq!(rotated.unwrap(key_id, "old", &wrapped).unwrap(), [7u8; 32]);
        assert!(matches!(
            rotated.unwrap(key_id, "new", &wrapped),
            Err(CryptoError::Authentication)
        ));
    }
}
