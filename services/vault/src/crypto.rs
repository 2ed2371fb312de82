//! Envelope encryption: the key ring of key-encryption keys (KEKs), per-secret data keys, and
//! the associated data that binds every ciphertext to where it belongs.
//!
//! Every secret gets a fresh 256-bit data key. The secret is sealed with AES-256-GCM under the data
//! key, with associated data `tenantry-vault:v1|<tenant>|<name>|<version>`, so a ciphertext
//! copied to another row (another tenant, name or version) fails to open. The data key itself is
//! sealed ("wrapped") under the active KEK with associated data naming the tenant and the data
//! key's id, so a wrapped key cannot be moved to another tenant either. Rotation only re-wraps
//! data keys; secret ciphertexts never change.

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Length of every key (KEK and data key) in bytes: AES-256.
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce in bytes (96 bits, random per encryption).
pub const NONCE_LEN: usize = 12;

/// Errors of the crypto layer. None of them carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A data key was wrapped by a KEK that is not in the ring.
    #[error(
        "data key is wrapped by key-encryption key `{0}`, which is not in the key ring; add it back, then run Rotate before removing it"
    )]
    UnknownKek(String),
    /// The wrapped data key did not authenticate under its KEK (tampered row or wrong key material).
    #[error("wrapped data key failed its integrity check")]
    KeyIntegrity,
    /// The secret ciphertext did not authenticate (tampered, swapped or truncated).
    #[error("ciphertext failed its integrity check")]
    Integrity,
    /// Encryption itself failed (only possible for absurdly large inputs).
    #[error("encryption failed")]
    Seal,
}

/// Errors loading a key ring.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The file could not be read.
    #[error("cannot read key ring file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The content is neither valid JSON nor valid TOML of the expected shape.
    #[error("key ring is not valid {format}: {message}")]
    Parse {
        /// "JSON" or "TOML".
        format: &'static str,
        /// The parser's message (never contains key material: keys are strings we do not echo).
        message: String,
    },
    /// A structural problem (no keys, unknown active id, bad key length, ...).
    #[error("invalid key ring: {0}")]
    Invalid(String),
}

/// The on-disk / env format: `{ active = "k2", keys = [{ id = "k1", key = "<base64 32 bytes>" }] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRingFile {
    active: String,
    keys: Vec<KeyRingEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRingEntry {
    id: String,
    key: SecretString,
}

/// The key-encryption keys the vault knows, by id, and which one wraps new data keys.
///
/// Holds only expanded AES key schedules (zeroised on drop by `aes-gcm`'s `zeroize` feature);
/// its `Debug` output lists key ids only.
#[derive(Clone)]
pub struct KeyRing {
    active: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// Builds a ring from raw keys. `active` must be one of the ids.
    pub fn new<I>(active: &str, keys: I) -> Result<Self, KeyRingError>
    where
        I: IntoIterator<Item = (String, Zeroizing<[u8; KEY_LEN]>)>,
    {
        let mut map = BTreeMap::new();
        for (id, key) in keys {
            validate_kek_id(&id)?;
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_ref()));
            if map.insert(id.clone(), cipher).is_some() {
                return Err(KeyRingError::Invalid(format!(
                    "key id `{id}` appears twice"
                )));
            }
        }
        if map.is_empty() {
            return Err(KeyRingError::Invalid("it holds no keys".into()));
        }
        if !map.contains_key(active) {
            return Err(KeyRingError::Invalid(format!(
                "the active key `{active}` is not among the keys"
            )));
        }
        Ok(Self {
            active: active.to_owned(),
            keys: map,
        })
    }

    /// Parses the JSON (content starting with `{`) or TOML form.
    pub fn parse(text: &str) -> Result<Self, KeyRingError> {
        let file: KeyRingFile = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| KeyRingError::Parse {
                format: "JSON",
                message: e.to_string(),
            })?
        } else {
            toml::from_str(text).map_err(|e| KeyRingError::Parse {
                format: "TOML",
                message: e.message().to_owned(),
            })?
        };
        let mut keys = Vec::with_capacity(file.keys.len());
        for entry in file.keys {
            let raw = Zeroizing::new(BASE64.decode(entry.key.expose_secret().trim()).map_err(
                |_| KeyRingError::Invalid(format!("key `{}` is not valid base64", entry.id)),
            )?);
            let key: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| {
                KeyRingError::Invalid(format!(
                    "key `{}` must decode to {KEY_LEN} bytes, got {}",
                    entry.id,
                    raw.len()
                ))
            })?;
            keys.push((entry.id, Zeroizing::new(key)));
        }
        Self::new(&file.active, keys)
    }

    /// Reads and parses a key ring file.
    pub fn from_file(path: &Path) -> Result<Self, KeyRingError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyRingError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::parse(&text)
    }

    /// A ring with one random key, for local development only: its secrets die with the process.
    pub fn generate_dev() -> Self {
        let id = format!("dev-{}", &Uuid::new_v4().simple().to_string()[..8]);
        // Unwrap-free: one valid id and one key always build.
        Self::new(&id, [(id.clone(), random_key())])
            .unwrap_or_else(|_| unreachable!("a one-key ring is valid"))
    }

    /// The id of the KEK that wraps new data keys.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Every KEK id in the ring.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Wraps `key` under the active KEK.
    pub fn wrap(
        &self,
        tenant: &str,
        key_id: Uuid,
        key: &DataKey,
    ) -> Result<WrappedKey, CryptoError> {
        let cipher = self
            .keys
            .get(&self.active)
            .ok_or_else(|| CryptoError::UnknownKek(self.active.clone()))?;
        let nonce = random_nonce();
        let aad = key_aad(tenant, key_id);
        let wrapped = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key.0.as_ref(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok(WrappedKey {
            kek_id: self.active.clone(),
            wrapped,
            nonce: nonce.to_vec(),
        })
    }

    /// Unwraps a data key with the KEK named in `wrapped`.
    pub fn unwrap(
        &self,
        tenant: &str,
        key_id: Uuid,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, CryptoError> {
        let cipher = self
            .keys
            .get(&wrapped.kek_id)
            .ok_or_else(|| CryptoError::UnknownKek(wrapped.kek_id.clone()))?;
        if wrapped.nonce.len() != NONCE_LEN {
            return Err(CryptoError::KeyIntegrity);
        }
        let aad = key_aad(tenant, key_id);
        let raw = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&wrapped.nonce),
                    Payload {
                        msg: &wrapped.wrapped,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| CryptoError::KeyIntegrity)?,
        );
        let key: [u8; KEY_LEN] = raw
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::KeyIntegrity)?;
        Ok(DataKey(Zeroizing::new(key)))
    }

    /// Re-wraps a data key under the active KEK; `None` when it already is.
    pub fn rewrap(
        &self,
        tenant: &str,
        key_id: Uuid,
        wrapped: &WrappedKey,
    ) -> Result<Option<WrappedKey>, CryptoError> {
        if wrapped.kek_id == self.active {
            return Ok(None);
        }
        let key = self.unwrap(tenant, key_id, wrapped)?;
        self.wrap(tenant, key_id, &key).map(Some)
    }
}

fn validate_kek_id(id: &str) -> Result<(), KeyRingError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(KeyRingError::Invalid(format!(
            "key id `{id}` must be 1-64 characters of A-Z a-z 0-9 - _ ."
        )))
    }
}

/// A data key wrapped by a KEK, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The KEK that wraps it.
    pub kek_id: String,
    /// AES-256-GCM ciphertext + tag of the data key.
    pub wrapped: Vec<u8>,
    /// The nonce used to wrap it.
    pub nonce: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

/// A plaintext data key; zeroised on drop, never printed.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

impl DataKey {
    /// A fresh random 256-bit data key.
    pub fn generate() -> Self {
        Self(random_key())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_ref()))
    }

    /// Seals `plaintext` under this key with `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let nonce = random_nonce();
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens a sealed secret; fails with [`CryptoError::Integrity`] if anything was changed.
    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.nonce.len() != NONCE_LEN {
            return Err(CryptoError::Integrity);
        }
        self.cipher()
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Integrity)
    }
}

/// A sealed secret: nonce and AES-256-GCM ciphertext + tag.
#[derive(Clone)]
pub struct Sealed {
    /// 96-bit random nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 128-bit tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Associated data of a secret: binds the ciphertext to its tenant, name and version.
pub fn secret_aad(tenant: &str, name: &str, version: u32) -> String {
    // Tenant ids and names cannot contain `|` (see `names`), so the encoding is unambiguous.
    format!("tenantry-vault:v1|{tenant}|{name}|{version}")
}

/// Associated data of a wrapped data key: binds it to its tenant and its own id.
fn key_aad(tenant: &str, key_id: Uuid) -> String {
    format!("tenantry-vault:v1:data-key|{tenant}|{key_id}")
}

fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut());
    key
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

/// A new random KEK, base64-encoded, for writing a key ring entry (`vault --generate-key`).
pub fn generate_kek_base64() -> SecretString {
    SecretString::from(BASE64.encode(random_key().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(active: &str, ids: &[(&str, u8)]) -> KeyRing {
        KeyRing::new(
            active,
            ids.iter()
                .map(|(id, b)| (id.to_string(), Zeroizing::new([*b; KEY_LEN]))),
        )
        .unwrap()
    }

    #[test]
    fn seals_and_opens_with_matching_aad_only() {
        let key = DataKey::generate();
        let aad = secret_aad("t1", "db", 1);
        let sealed = key.seal(aad.as_bytes(), b"hunter2").unwrap();
        assert_eq!(
            key.open(aad.as_bytes(), &sealed).unwrap().as_slice(),
            b"hunter2"
        );
        let other = secret_aad("t1", "db", 2);
        assert!(matches!(
            key.open(other.as_bytes(), &sealed),
            Err(CryptoError::Integrity)
        ));
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn rewrap_moves_to_active_key_and_old_key_can_go() {
        let old = ring("k1", &[("k1", 1)]);
        let both = ring("k2", &[("k1", 1), ("k2", 2)]);
        let new = ring("k2", &[("k2", 2)]);
        let id = Uuid::new_v4();
        let key = DataKey::generate();
        let sealed = key.seal(b"aad", b"x").unwrap();
        let w1 = old.wrap("t", id, &key).unwrap();
        assert!(matches!(new.unwrap("t", id, &w1), Err(CryptoError::UnknownKek(k)) if k == "k1"));
        let w2 = both.rewrap("t", id, &w1).unwrap().unwrap();
        assert_eq!(w2.kek_id, "k2");
        assert!(both.rewrap("t", id, &w2).unwrap().is_none());
        let back = new.unwrap("t", id, &w2).unwrap();
        assert_eq!(back.open(b"aad", &sealed).unwrap().as_slice(), b"x");
    }

    #[test]
    fn wrapped_key_is_bound_to_tenant_and_id() {
        let r = ring("k1", &[("k1", 1)]);
        let id = Uuid::new_v4();
        let w = r.wrap("t1", id, &DataKey::generate()).unwrap();
        assert!(matches!(
            r.unwrap("t2", id, &w),
            Err(CryptoError::KeyIntegrity)
        ));
        assert!(matches!(
            r.unwrap("t1", Uuid::new_v4(), &w),
            Err(CryptoError::KeyIntegrity)
        ));
    }

    #[test]
    fn parses_toml_and_json_and_rejects_bad_rings() {
        let k = BASE64.encode([7u8; 32]);
        let toml = format!(
            "active = \"k2\"\nkeys = [{{ id = \"k1\", key = \"{k}\" }}, {{ id = \"k2\", key = \"{k}\" }}]\n"
        );
        assert_eq!(KeyRing::parse(&toml).unwrap().active_id(), "k2");
        let json = format!(r#"{{"active":"k1","keys":[{{"id":"k1","key":"{k}"}}]}}"#);
        assert_eq!(
            KeyRing::parse(&json).unwrap().ids().collect::<Vec<_>>(),
            ["k1"]
        );
        let missing = format!(r#"{{"active":"k9","keys":[{{"id":"k1","key":"{k}"}}]}}"#);
        assert!(matches!(
            KeyRing::parse(&missing),
            Err(KeyRingError::Invalid(_))
        ));
        let short = r#"{"active":"k1","keys":[{"id":"k1","key":"AAAA"}]}"#;
        let err = KeyRing::parse(short).unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        assert!(KeyRing::parse("not a ring").is_err());
    }

    #[test]
    fn debug_output_shows_ids_only() {
        let r = ring("k1", &[("k1", 0xAB)]);
        let dbg = format!("{r:?} {:?}", DataKey::generate());
        assert!(dbg.contains("k1") && dbg.contains("REDACTED"));
        assert!(!dbg.to_lowercase().contains("abab"));
    }
}
