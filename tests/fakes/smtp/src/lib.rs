//! smtp-sink: a local SMTP server that accepts every message and keeps it, the test double of
//! a mail server.
//!
//! Signup sends verification codes by mail, and no mail server runs where the tests (or
//! `tenantry dev`) do. [`SmtpSink::start`] serves plain SMTP on `127.0.0.1:0`; point the
//! sender at [`SmtpSink::url`], then read what arrived with [`SmtpSink::messages`],
//! [`SmtpSink::messages_to`] or [`SmtpSink::wait_for`], or follow it live with
//! [`SmtpSink::subscribe`] (as `tenantry dev` does to print each message).
//!
//! It speaks a subset of RFC 5321 — EHLO/HELO (advertising `8BITMIME`, `PIPELINING`,
//! `SMTPUTF8` and `SIZE`), MAIL, RCPT, DATA, RSET, NOOP, QUIT — with no AUTH and no STARTTLS.
//! Lines are limited to 1000 bytes and messages to 1 MiB (refused with 552). Nothing is ever
//! relayed: a message goes no further than this process's memory.

mod decode;
mod message;
mod session;

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub use message::Message;
pub use session::{MAX_LINE, MAX_MESSAGE};

/// How many messages a [`SmtpSink::subscribe`] receiver may fall behind before it misses some.
const SUBSCRIBER_BACKLOG: usize = 256;

/// A running SMTP sink; it stops, and closes every connection, when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// What the connection tasks and the sink's readers share.
struct Shared {
    // A std mutex: connection tasks only push under it and readers only copy, never across an
    // `.await`.
    messages: Mutex<Vec<Message>>,
    arrived: Notify,
    live: broadcast::Sender<Message>,
}

impl Shared {
    fn messages(&self) -> MutexGuard<'_, Vec<Message>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deliver(&self, message: Message) {
        self.messages().push(message.clone());
        self.arrived.notify_waiters();
        // No subscriber is not an error: nobody is following live.
        let _ = self.live.send(message);
    }
}

impl SmtpSink {
    /// Binds `127.0.0.1:0` and serves SMTP there until the sink is dropped. Call it from
    /// within a Tokio runtime.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Binds `addr` (for a fixed port, as `tenantry dev` may want) and serves SMTP there until
    /// the sink is dropped. Call it from within a Tokio runtime.
    pub fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("SmtpSink must be started from within a Tokio runtime")?;
        let listener = StdTcpListener::bind(addr)
            .with_context(|| format!("failed to bind the SMTP sink to {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let (live, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        let shared = Arc::new(Shared {
            messages: Mutex::default(),
            arrived: Notify::new(),
            live,
        });
        let server = runtime.spawn(accept(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:PORT`, for a sender configured by URL.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.shared.messages().clone()
    }

    /// The messages accepted so far with `rcpt` among their envelope recipients (compared
    /// ASCII-case-insensitively), oldest first.
    pub fn messages_to(&self, rcpt: &str) -> Vec<Message> {
        self.shared
            .messages()
            .iter()
            .filter(|message| message.is_to(rcpt))
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for the messages accepted so far and returns them, or returns
    /// `None` once `timeout` has passed without it holding.
    pub async fn wait_for<F>(&self, mut done: F, timeout: Duration) -> Option<Vec<Message>>
    where
        F: FnMut(&[Message]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            // Register for the next arrival before looking, so none slips in between.
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let messages = self.shared.messages();
                if done(&messages) {
                    return Some(messages.clone());
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let messages = self.shared.messages();
                return done(&messages).then(|| messages.clone());
            }
        }
    }

    /// A receiver of each message accepted from now on, as it arrives (for `tenantry dev` to
    /// print them). One that falls more than 256 messages behind misses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.shared.live.subscribe()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Dropping the accept task drops its `JoinSet`, which aborts every connection task.
        self.server.abort();
    }
}

/// Accepts connections until aborted, one task per connection.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => {
                // Replies are small and awaited one by one: send each at once.
                let _ = stream.set_nodelay(true);
                stream
            }
            // Out of file descriptors and the like: back off rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            // A connection that breaks off mid-session loses only its unfinished message.
            let _ = session::serve(stream, |message| shared.deliver(message)).await;
        });
    }
}
