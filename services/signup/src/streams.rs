//! Caps on open `WatchSignup` streams, per client address and in total.
//!
//! Each stream holds a JetStream consumer on the server; without a cap one client can open
//! thousands (they also linger until the server notices the client left). A slot is taken
//! before the consumer is created and given back when the response stream is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::error::{SignupError, StreamScope};

/// The counters, shared by every `WatchSignup` call of one gateway.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_address: usize,
    total: usize,
    // A plain mutex: a map update, never held across an await.
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<Option<IpAddr>, usize>,
}

/// One open stream's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    inner: Arc<Inner>,
    address: Option<IpAddr>,
}

impl StreamSlots {
    /// At most `per_address` streams per client address and `total` in all (0 = no limit).
    pub fn new(per_address: usize, total: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                per_address: if per_address == 0 {
                    usize::MAX
                } else {
                    per_address
                },
                total: if total == 0 { usize::MAX } else { total },
                open: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Takes a slot for a stream from `address`, or says which cap is reached.
    pub fn acquire(&self, address: Option<IpAddr>) -> Result<StreamSlot, SignupError> {
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.inner.total {
            return Err(SignupError::TooManyStreams {
                scope: StreamScope::Total,
                limit: self.inner.total,
            });
        }
        let mine = open.by_address.entry(address).or_insert(0);
        if *mine >= self.inner.per_address {
            return Err(SignupError::TooManyStreams {
                scope: StreamScope::Address,
                limit: self.inner.per_address,
            });
        }
        *mine += 1;
        open.total += 1;
        Ok(StreamSlot {
            inner: Arc::clone(&self.inner),
            address,
        })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.inner
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .total
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total_and_frees_on_drop() {
        let slots = StreamSlots::new(2, 3);
        let a: Option<IpAddr> = Some([10, 0, 0, 1].into());
        let b: Option<IpAddr> = Some([10, 0, 0, 2].into());
        let a1 = slots.acquire(a).unwrap();
        let _a2 = slots.acquire(a).unwrap();
        let err = slots.acquire(a).unwrap_err();
        assert!(matches!(
            err,
            SignupError::TooManyStreams {
                scope: StreamScope::Address,
                limit: 2
            }
        ));
        let _b1 = slots.acquire(b).unwrap();
        let err = slots.acquire(None).unwrap_err();
        assert!(matches!(
            err,
            SignupError::TooManyStreams {
                scope: StreamScope::Total,
                ..
            }
        ));
        drop(a1);
        assert_eq!(slots.open(), 2);
        slots.acquire(a).map(drop).unwrap();
        assert_eq!(slots.open(), 2);
    }
}
