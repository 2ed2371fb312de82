//! A door a service closes while it must not serve: derived state lost, a read model behind the
//! log. Closed, it holds the reason — with the command that fixes it — which every refused call
//! passes on. Shared by clones; checked on every request, so it is a plain mutex around an
//! `Option<String>`, never held across an await.

use std::sync::{Arc, Mutex, PoisonError};

/// Open, or closed for a reason.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<Option<String>>>);

impl Gate {
    fn with<R>(&self, f: impl FnOnce(&mut Option<String>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Why it is closed; `None` while open.
    pub fn reason(&self) -> Option<String> {
        self.with(|g| g.clone())
    }

    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        self.with(|g| g.is_some())
    }

    /// Closes it for `reason` unless it is closed already (the first reason stays); true when
    /// this call closed it.
    pub fn close(&self, reason: impl Into<String>) -> bool {
        self.with(|g| {
            let closing = g.is_none();
            if closing {
                *g = Some(reason.into());
            }
            closing
        })
    }

    /// Sets it to exactly `reason` (`None` opens it); true when it changed between open and
    /// closed.
    pub fn set(&self, reason: Option<String>) -> bool {
        self.with(|g| {
            let changed = g.is_some() != reason.is_some();
            *g = reason;
            changed
        })
    }

    /// Opens it; true when it was closed.
    pub fn open(&self) -> bool {
        self.with(|g| g.take().is_some())
    }

    /// A handle that does not keep the gate alive: a watcher task stops once every user of the
    /// gate is gone.
    pub fn downgrade(&self) -> WeakGate {
        WeakGate(Arc::downgrade(&self.0))
    }
}

/// See [`Gate::downgrade`].
#[derive(Debug, Clone)]
pub struct WeakGate(std::sync::Weak<Mutex<Option<String>>>);

impl WeakGate {
    /// The gate, while anyone still holds it.
    pub fn upgrade(&self) -> Option<Gate> {
        self.0.upgrade().map(Gate)
    }
}

/// Keeps `gate` (and `part`, ready while open) in line with `judge` every `every`, for as long
/// as anyone holds the gate. `judge(closed)` answers the reason to be closed (`Some(None)`:
/// open), or `None` when it could not tell — the last answer then stands. `what` names the state
/// in the log line written when the gate opens again.
pub fn watch<F, Fut>(
    gate: &Gate,
    part: Option<crate::ReadinessPart>,
    every: std::time::Duration,
    what: &'static str,
    mut judge: F,
) where
    F: FnMut(bool) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Option<String>>> + Send,
{
    if let Some(p) = &part {
        p.set(!gate.is_closed());
    }
    let weak = gate.downgrade();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(closed) = weak.upgrade().map(|g| g.is_closed()) else {
                return;
            };
            let Some(reason) = judge(closed).await else {
                continue;
            };
            let Some(gate) = weak.upgrade() else { return };
            match (closed, &reason) {
                (true, None) => tracing::info!("{what} is back"),
                (false, Some(r)) => tracing::error!("{r}"),
                _ => {}
            }
            if let Some(p) = &part {
                p.set(reason.is_none());
            }
            gate.set(reason);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_stays_and_open_reports_a_change() {
        let g = Gate::default();
        assert!(!g.is_closed());
        assert!(g.close("lost claims; run `tenantctl recover`"));
        assert!(!g.close("another reason"));
        assert_eq!(
            g.reason().as_deref(),
            Some("lost claims; run `tenantctl recover`")
        );
        assert!(g.clone().open());
        assert!(!g.open());
        assert!(g.set(Some("x".into())));
        assert!(!g.set(Some("y".into())));
        assert_eq!(g.reason().as_deref(), Some("y"));
    }

    #[test]
    fn a_weak_handle_lets_go_with_the_last_user() {
        let g = Gate::default();
        let w = g.downgrade();
        assert!(w.upgrade().is_some());
        drop(g);
        assert!(w.upgrade().is_none());
    }
}
