//! Graceful shutdown: one trigger, any number of waiters.

use std::{future::IntoFuture, pin::Pin, sync::Arc};

use tokio::sync::watch;

/// A shutdown signal shared by a service's tasks. Clone it freely; `trigger` from any clone
/// stops them all, and `.await` (or [`Shutdown::wait`]) resolves once triggered.
#[derive(Clone, Debug)]
pub struct Shutdown {
    // A watch channel rather than a broadcast: late subscribers still see that shutdown began.
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// A signal that also fires on SIGINT or SIGTERM.
    pub fn from_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received; finishing in-flight work");
            trigger.trigger();
        });
        shutdown
    }

    /// Starts the shutdown.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // Err means every sender is gone, which cannot happen while `self` holds one.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

impl IntoFuture for Shutdown {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.wait().await })
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let s = Shutdown::new();
        let waiter = tokio::spawn(s.clone().into_future());
        assert!(!s.is_triggered());
        s.clone().trigger();
        waiter.await.unwrap();
        assert!(s.is_triggered());
        // A waiter that arrives late still returns at once.
        s.wait().await;
    }
}
