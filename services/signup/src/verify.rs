//! Email verification: a signup waits here, with a six-digit code mailed to its owner, until
//! `VerifyEmail` confirms the address. Only then is the subdomain claimed and TenantRequested
//! recorded, so nothing is built for an address nobody reads.
//!
//! Records live in the `SIGNUP_VERIFICATIONS` KV bucket, keyed by an unguessable verification
//! id (UUIDv4), and hold the TenantRequested to record (passwords only as vault references),
//! sha256(id ‖ code) — never the code — its expiry, the attempts made and whether it was used.
//! Every change is a compare-and-set on the revision read, so two instances checking codes for
//! the same id at once cannot both spend the last attempt or both use the code. A used record
//! stays until it expires: a second use is refused, and a gateway that crashed between marking
//! it used and recording the tenant finishes the job when the owner tries the code again.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use base64::Engine as _;
use bytes::Bytes;
use eventstore::EventStore;
use prost::Message as _;
use proto::v1::TenantRequested;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::SignupError;

/// The bucket's name (namespaced by the event store).
pub const BUCKET: &str = "SIGNUP_VERIFICATIONS";

/// How many wrong codes one verification takes before it is spent.
pub const MAX_ATTEMPTS: u32 = 5;

/// Rounds of compare-and-set before giving up to a racing writer.
const CAS_ROUNDS: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// The TenantRequested to record, protobuf, base64.
    requested: String,
    code_sha256: String,
    expires_at_ms: i64,
    attempts: u32,
    used: bool,
    /// The Signup call's `traceparent`: VerifyEmail's span links to it, so the two requests
    /// of one signup lead to each other in a trace viewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// Why a code was not accepted (each maps to one reason code for clients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Unknown id, or its record expired and was removed.
    #[error("this verification is unknown or has expired; sign up again")]
    NotFound,
    /// Past its expiry.
    #[error("the code has expired; sign up again for a new one")]
    Expired,
    /// Already used to confirm the address.
    #[error("the code was already used; sign in to your site, or sign up again")]
    Used,
    /// Out of attempts.
    #[error("too many wrong codes; sign up again for a new one")]
    TooManyAttempts,
    /// Wrong code; `left` attempts remain.
    #[error("the code is not right; {left} attempt(s) left")]
    Mismatch {
        /// Attempts left.
        left: u32,
    },
}

/// What a right code gives.
#[derive(Debug, Clone)]
pub enum Confirmed {
    /// First use: record this tenant.
    Fresh(TenantRequested),
    /// Used before: the tenant may not have been recorded (a crash); record it if it is not.
    Again(TenantRequested),
}

/// The verification records of one namespace.
#[derive(Clone)]
pub struct Verifications {
    kv: kv::Store,
    ttl: Duration,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn digest(id: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{id}:{code}").as_bytes()))
}

fn encode(record: &Record) -> Bytes {
    // Strings, integers and a bool always serialise.
    Bytes::from(serde_json::to_vec(record).unwrap_or_default())
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> SignupError {
    SignupError::Unavailable(format!("cannot {what} ({e})"))
}

impl Verifications {
    /// Opens (creating when missing) the bucket; codes live `ttl`.
    pub async fn open(store: &EventStore, ttl: Duration) -> Result<Self, eventstore::StoreError> {
        let kv = store
            .key_value_with(
                BUCKET,
                &eventstore::KvOptions {
                    history: 1,
                    // Used records outlive their codes a little, so a second use is told
                    // "used", not "unknown".
                    max_age: ttl + Duration::from_secs(3600),
                    description: "Tenantry signups waiting for their email: id -> TenantRequested, sha256(code)",
                },
            )
            .await?;
        Ok(Self { kv, ttl })
    }

    /// How long a code is valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Stores `requested` under a new verification id; returns the id and the code to mail.
    pub async fn create(
        &self,
        requested: &TenantRequested,
    ) -> Result<(String, String), SignupError> {
        let id = uuid::Uuid::new_v4().to_string();
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
        let record = Record {
            requested: base64::engine::general_purpose::STANDARD.encode(requested.encode_to_vec()),
            code_sha256: digest(&id, &code),
            expires_at_ms: now_ms() + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2),
            attempts: 0,
            used: false,
            traceparent: eventstore::current_traceparent(),
        };
        self.kv
            .create(&id, encode(&record))
            .await
            .map_err(|e| unavailable("store the verification", e))?;
        Ok((id, code))
    }

    /// Removes a verification whose mail could not be sent (the signup failed cleanly).
    pub async fn discard(&self, id: &str) {
        if let Err(e) = self.kv.purge(id).await {
            tracing::warn!(error = %e, "could not remove an unsent verification; it expires");
        }
    }

    /// Checks `code` for verification `id`: spends an attempt when wrong, marks the record
    /// used when right.
    pub async fn confirm(
        &self,
        id: &str,
        code: &str,
    ) -> Result<Result<Confirmed, Refusal>, SignupError> {
        let mut linked = false;
        for _ in 0..CAS_ROUNDS {
            let Some(entry) = self
                .kv
                .entry(id)
                .await
                .map_err(|e| unavailable("read the verification", e))?
                .filter(|e| e.operation == Operation::Put)
            else {
                return Ok(Err(Refusal::NotFound));
            };
            let Ok(mut record) = serde_json::from_slice::<Record>(&entry.value) else {
                return Ok(Err(Refusal::NotFound));
            };
            if let (Some(tp), false) = (&record.traceparent, linked) {
                eventstore::link_current_span(tp);
                linked = true;
            }
            let requested = base64::engine::general_purpose::STANDARD
                .decode(&record.requested)
                .ok()
                .and_then(|b| TenantRequested::decode(b.as_slice()).ok())
                .ok_or_else(|| {
                    SignupError::Unexpected(anyhow::anyhow!(
                        "verification {id} holds an unreadable request"
                    ))
                })?;
            let right: bool = digest(id, code)
                .as_bytes()
                .ct_eq(record.code_sha256.as_bytes())
                .into();
            if record.used {
                return Ok(if right {
                    Ok(Confirmed::Again(requested))
                } else {
                    Err(Refusal::Used)
                });
            }
            if now_ms() > record.expires_at_ms {
                return Ok(Err(Refusal::Expired));
            }
            if record.attempts >= MAX_ATTEMPTS {
                return Ok(Err(Refusal::TooManyAttempts));
            }
            if right {
                record.used = true;
            } else {
                record.attempts += 1;
            }
            match self.kv.update(id, encode(&record), entry.revision).await {
                Ok(_) if right => return Ok(Ok(Confirmed::Fresh(requested))),
                Ok(_) => {
                    return Ok(Err(Refusal::Mismatch {
                        left: MAX_ATTEMPTS - record.attempts,
                    }));
                }
                // Another check moved it first: read again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(unavailable("update the verification", e)),
            }
        }
        Err(SignupError::Unavailable(
            "the verification is being checked concurrently; try again".to_owned(),
        ))
    }
}

/// `a***@example.com`: enough for the owner to recognise, little for anyone else.
pub fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_first_letter_and_the_domain() {
        assert_eq!(mask("ada@example.com"), "a***@example.com");
        assert_eq!(mask("x@y.io"), "x***@y.io");
        assert_eq!(mask("nonsense"), "***");
    }

    #[test]
    fn the_digest_binds_the_code_to_its_verification() {
        assert_ne!(digest("a", "123456"), digest("b", "123456"));
        assert_eq!(digest("a", "123456"), digest("a", "123456"));
    }
}
