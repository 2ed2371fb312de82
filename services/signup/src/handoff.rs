//! The handoff: the page that signed a person up opens their new site already logged in.
//!
//! When a signup is recorded, its answer carries a random handoff token (32 bytes,
//! base64url); the `SIGNUP_HANDOFFS` bucket keeps only its SHA-256 under the tenant id, for a
//! day. `OpenSite` with the token asks a provisioner for a one-time login key (NATS
//! request/reply; the key itself goes through the vault as a one-time secret only this gateway
//! may take) and answers the site's `login_via_key` link. The password never travels: the
//! site logs the owner in by Frappe's own one-time key, valid two minutes, used once.
//!
//! A token opens at most [`MAX_OPENS`] links; opens are counted with compare-and-set, so
//! several gateway instances share the count.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use base64::Engine as _;
use eventstore::EventStore;
use prost::Message as _;
use proto::v1::login_link_refused::Reason;
use proto::v1::{LoginLinkReply, LoginLinkRequest, OpenSiteResponse, login_link_reply};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use vault_client::VaultClient;

use crate::error::SignupError;

/// The bucket's name (namespaced by the event store).
pub const BUCKET: &str = "SIGNUP_HANDOFFS";
/// The provisioners' request subject (see the provisioner's `handoff` module).
pub const LOGIN_LINK_SUBJECT: &str = "tenantry-rpc.login_link";
/// Links one token may open.
pub const MAX_OPENS: u32 = 5;
/// How long a token works.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a provisioner may take to make a link (a bench command: 0.4–1.4 s measured).
const REPLY_WAIT: Duration = Duration::from_secs(15);
const CAS_ROUNDS: usize = 8;

/// Why `OpenSite` refused (answered with its own reason code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffRefusal {
    /// No such token for this tenant (PERMISSION_DENIED).
    #[error("this handoff token does not open this site; log in on the site's login page")]
    Invalid,
    /// The token has opened its links (RESOURCE_EXHAUSTED).
    #[error("this handoff token has been used {MAX_OPENS} times; log in on the site's login page")]
    UsedUp,
    /// The site is not provisioned yet, or failed (FAILED_PRECONDITION).
    #[error("the site is not ready yet; wait for WatchSignup to finish")]
    NotReady,
    /// The site is suspended (FAILED_PRECONDITION).
    #[error("the site is suspended")]
    Suspended,
}

#[derive(Serialize, Deserialize)]
struct Record {
    token_sha256: String,
    opens: u32,
}

/// The handoff tokens, and the way to a login link.
#[derive(Clone)]
pub struct Handoffs {
    kv: kv::Store,
    store: EventStore,
    vault: VaultClient,
}

fn digest(tenant: &str, token: &str) -> String {
    hex::encode(Sha256::digest(format!("{tenant}:{token}").as_bytes()))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> SignupError {
    SignupError::Unavailable(format!("could not {what} ({e})"))
}

impl Handoffs {
    /// Opens (creating when missing) the bucket.
    pub async fn open(
        store: &EventStore,
        vault: VaultClient,
    ) -> Result<Self, eventstore::StoreError> {
        let kv = store
            .key_value_with(
                BUCKET,
                &eventstore::KvOptions {
                    history: 1,
                    max_age: TOKEN_TTL,
                    description: "Tenantry signup handoffs: tenant id -> sha256(handoff token), opens",
                },
            )
            .await?;
        Ok(Self {
            kv,
            store: store.clone(),
            vault,
        })
    }

    /// A new token for `tenant`, replacing any earlier one. `None` (logged) when the bucket is
    /// unreachable: the signup stands, and the page falls back to the site's login page.
    pub async fn issue(&self, tenant: &str) -> Option<SecretString> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let record = Record {
            token_sha256: digest(tenant, &token),
            opens: 0,
        };
        let body = serde_json::to_vec(&record).unwrap_or_default();
        match self.kv.put(tenant, body.into()).await {
            Ok(_) => Some(SecretString::from(token)),
            Err(e) => {
                tracing::warn!(tenant, error = %e, "no handoff token: the bucket refused it");
                None
            }
        }
    }

    /// Counts one open of `tenant`'s token, if `token` is it.
    async fn redeem(&self, tenant: &str, token: &str) -> Result<(), SignupError> {
        for _ in 0..CAS_ROUNDS {
            let Some(entry) = self
                .kv
                .entry(tenant)
                .await
                .map_err(|e| unavailable("read the handoff", e))?
                .filter(|e| e.operation == Operation::Put)
            else {
                return Err(HandoffRefusal::Invalid.into());
            };
            let Ok(mut record) = serde_json::from_slice::<Record>(&entry.value) else {
                return Err(HandoffRefusal::Invalid.into());
            };
            let right: bool = digest(tenant, token)
                .as_bytes()
                .ct_eq(record.token_sha256.as_bytes())
                .into();
            if !right {
                return Err(HandoffRefusal::Invalid.into());
            }
            if record.opens >= MAX_OPENS {
                return Err(HandoffRefusal::UsedUp.into());
            }
            record.opens += 1;
            let body = serde_json::to_vec(&record).unwrap_or_default();
            match self.kv.update(tenant, body.into(), entry.revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(unavailable("count the handoff", e)),
            }
        }
        Err(SignupError::Unavailable(
            "the handoff is being used concurrently".to_owned(),
        ))
    }

    /// `OpenSite`: the token → a provisioner's one-time key (through the vault) → the link.
    pub async fn open_site(
        &self,
        tenant: &str,
        token: &str,
    ) -> Result<OpenSiteResponse, SignupError> {
        self.redeem(tenant, token).await?;
        let request = LoginLinkRequest {
            tenant_id: tenant.to_owned(),
        };
        let subject = self.store.namespaced_subject(LOGIN_LINK_SUBJECT);
        let asked = self
            .store
            .client()
            .request(subject, request.encode_to_vec().into());
        let reply = match tokio::time::timeout(REPLY_WAIT, asked).await {
            Ok(Ok(message)) => LoginLinkReply::decode(message.payload).map_err(|e| {
                SignupError::Unexpected(anyhow::anyhow!("undecodable login-link reply: {e}"))
            })?,
            Ok(Err(e)) => return Err(unavailable("reach a provisioner for the login link", e)),
            Err(_) => {
                return Err(SignupError::Unavailable(
                    "no provisioner made the login link in time".to_owned(),
                ));
            }
        };
        let issued = match reply.outcome {
            Some(login_link_reply::Outcome::Issued(issued)) => issued,
            Some(login_link_reply::Outcome::Refused(refused)) => {
                tracing::info!(tenant, detail = %refused.detail, "no login link");
                return Err(match Reason::try_from(refused.reason) {
                    Ok(Reason::NotReady | Reason::Deleted) => HandoffRefusal::NotReady.into(),
                    Ok(Reason::Suspended) => HandoffRefusal::Suspended.into(),
                    _ => {
                        SignupError::Unavailable("the site could not make a login link".to_owned())
                    }
                });
            }
            None => {
                return Err(SignupError::Unexpected(anyhow::anyhow!(
                    "an empty login-link reply"
                )));
            }
        };
        let prefix = format!("vault://tenant/{tenant}/");
        if !issued.key_ref.starts_with(&prefix) {
            return Err(SignupError::Unexpected(anyhow::anyhow!(
                "the login key reference names another tenant"
            )));
        }
        let key = self
            .vault
            .with_correlation_id(tenant)
            .take_one_time(
                &issued.key_ref,
                "signup handoff: the owner opens the new site",
            )
            .await
            .map_err(|e| unavailable("take the login key from the vault", e))?;
        let key = key
            .to_secret_string()
            .map_err(|e| SignupError::Unexpected(anyhow::anyhow!("login key: {e}")))?;
        let key = key.expose_secret();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SignupError::Unexpected(anyhow::anyhow!(
                "the vault held a login key that is not hex"
            )));
        }
        Ok(OpenSiteResponse {
            url: format!(
                "{}/api/method/frappe.www.login.login_via_key?key={key}",
                issued.site_url.trim_end_matches('/')
            ),
            expires_in_seconds: issued.expires_in_seconds,
        })
    }
}
