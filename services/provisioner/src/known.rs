//! The secrets one provisioning run has already written or read, so that it does not ask the
//! vault again for what it holds: the Administrator password it stored before `new-site` is
//! the one its login uses, and the key pair it stored is the one it verifies. A cold signup
//! made thirteen vault calls before, nine now — and the vault (every read is audited, so every
//! call is a database commit) is what limited throughput at twenty benches.
//!
//! Scoped to one run of one tenant, which holds the tenant's lease: nobody else writes its
//! secrets meanwhile, and whatever this run writes it records here first. Lanes running side
//! by side share it (one task). Values are `SecretString`s, zeroized when the run ends; nothing
//! here is logged or printed. Outside a run (lifecycle work) nothing is remembered.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use secrecy::SecretString;

tokio::task_local! {
    static CURRENT: Known;
}

/// One run's remembered secrets, by (vault tenant, name).
#[derive(Clone, Default)]
pub struct Known(Arc<Mutex<HashMap<(String, String), SecretString>>>);

impl Known {
    /// Runs `work` with an empty memory.
    pub async fn scope<F: Future>(work: F) -> F::Output {
        CURRENT.scope(Known::default(), work).await
    }
}

fn with<T>(f: impl FnOnce(&mut HashMap<(String, String), SecretString>) -> T) -> Option<T> {
    CURRENT
        .try_with(|k| f(&mut k.0.lock().unwrap_or_else(PoisonError::into_inner)))
        .ok()
}

/// What this run knows `id`'s `name` to be.
pub fn recall(id: &str, name: &str) -> Option<SecretString> {
    with(|m| m.get(&(id.to_owned(), name.to_owned())).cloned()).flatten()
}

/// Remembers that `id`'s `name` is `value` (just written or read).
pub fn remember(id: &str, name: &str, value: &SecretString) {
    with(|m| m.insert((id.to_owned(), name.to_owned()), value.clone()));
}

/// Forgets `id`'s `name` (revoked).
pub fn forget(id: &str, name: &str) {
    with(|m| m.remove(&(id.to_owned(), name.to_owned())));
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[tokio::test]
    async fn a_run_remembers_its_own_secrets_and_nothing_outlives_it() {
        Known::scope(async {
            assert!(recall("t", "a").is_none());
            remember("t", "a", &SecretString::from("one"));
            assert_eq!(recall("t", "a").unwrap().expose_secret(), "one");
            assert!(recall("u", "a").is_none(), "by tenant");
            forget("t", "a");
            assert!(recall("t", "a").is_none());
            remember("t", "a", &SecretString::from("two"));
        })
        .await;
        // Outside a run: nothing remembered, nothing recalled.
        remember("t", "a", &SecretString::from("three"));
        assert!(recall("t", "a").is_none());
        // A new run starts empty.
        Known::scope(async { assert!(recall("t", "a").is_none()) }).await;
    }
}
