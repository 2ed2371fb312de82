//! Payment providers: how an invoice's charge is attempted. Every charge carries the invoice's
//! idempotency key plus the attempt, so a charge retried after a crash (charged, not yet
//! recorded) is answered with the first result instead of charging twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a charge came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Paid; the provider's reference.
    Paid(String),
    /// Declined (or not payable automatically); why.
    Declined(String),
}

/// A charge that could not be attempted (the provider is unreachable): try again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment provider unavailable: {0}")]
pub struct ProviderUnavailable(pub String);

/// One charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Tenant.
    pub tenant_id: String,
    /// Invoice number.
    pub invoice: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Same key, same answer.
    pub idempotency_key: String,
}

/// A payment provider.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Attempts `charge`.
    fn charge(
        &self,
        charge: &Charge,
    ) -> impl std::future::Future<Output = Result<ChargeOutcome, ProviderUnavailable>> + Send;
}

/// No automatic payments: every invoice waits for an operator to record its payment, and the
/// dunning rules (grace, suspension) apply to it as to a declined card.
#[derive(Debug, Clone, Copy, Default)]
pub struct ManualProvider;

impl PaymentProvider for ManualProvider {
    async fn charge(&self, _charge: &Charge) -> Result<ChargeOutcome, ProviderUnavailable> {
        Ok(ChargeOutcome::Declined(
            "no automatic payment: waiting for the invoice to be paid and recorded".into(),
        ))
    }
}

/// A provider for tests: answers from a script (pay, decline, unavailable), and answers a key
/// it has seen the same as before, like a real provider.
#[derive(Debug, Clone, Default)]
pub struct ScriptedProvider {
    inner: Arc<Mutex<Scripted>>,
}

#[derive(Debug, Default)]
struct Scripted {
    /// What new charges get, in turn; when empty, `default`.
    script: Vec<Script>,
    default: Option<Script>,
    seen: BTreeMap<String, Result<ChargeOutcome, ProviderUnavailable>>,
    charged: Vec<Charge>,
}

/// One scripted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Paid.
    Pay,
    /// Declined.
    Decline,
    /// Unreachable.
    Unavailable,
}

impl ScriptedProvider {
    /// Every new charge gets `answer` from now on.
    pub fn always(&self, answer: Script) {
        let mut s = self.lock();
        s.script.clear();
        s.default = Some(answer);
    }

    /// Every charge that reached the provider and was answered (keys seen once).
    pub fn charges(&self) -> Vec<Charge> {
        self.lock().charged.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scripted> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PaymentProvider for ScriptedProvider {
    async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, ProviderUnavailable> {
        let mut s = self.lock();
        if let Some(answer) = s.seen.get(&charge.idempotency_key) {
            return answer.clone();
        }
        let next = if s.script.is_empty() {
            s.default.unwrap_or(Script::Pay)
        } else {
            s.script.remove(0)
        };
        let answer = match next {
            Script::Pay => Ok(ChargeOutcome::Paid(format!(
                "pay-{}",
                charge.idempotency_key
            ))),
            Script::Decline => Ok(ChargeOutcome::Declined("card declined".into())),
            Script::Unavailable => return Err(ProviderUnavailable("scripted outage".into())),
        };
        s.seen
            .insert(charge.idempotency_key.clone(), answer.clone());
        s.charged.push(charge.clone());
        answer
    }
}
