//! The mail the gateway sends — the verification code — over SMTP (lettre). The server comes
//! from one URL: `smtp://host:25` (plain, for a local relay or the dev sink),
//! `smtp://host:587?tls=required` (STARTTLS), `smtps://user:password@host` (TLS); the URL is
//! a secret (it may hold a password), so it comes from the environment or a file only.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// Sends the gateway's mail.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the server's credentials.
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Why mail cannot be set up or sent (never echoes the URL: it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The SMTP URL does not parse.
    #[error(
        "the SMTP URL is not valid ({0}); use smtp://host:port, smtp://host:587?tls=required or smtps://user:password@host"
    )]
    Url(String),
    /// The sender address does not parse.
    #[error("the sender {0:?} is not a valid mailbox (e.g. \"Acme <no-reply@acme.example>\")")]
    From(String),
    /// The message could not be built (a recipient that is not an address).
    #[error("cannot address the mail: {0}")]
    Build(String),
    /// The server refused it or could not be reached.
    #[error("the SMTP server did not take the mail: {0}")]
    Send(String),
}

impl Mailer {
    /// A sender through the server `url`, as `from`.
    pub fn new(url: &SecretString, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|e| MailError::Url(redact(&e.to_string(), url)))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|_| MailError::From(from.to_owned()))?;
        Ok(Self { transport, from })
    }

    /// Mails `code` to `to`, valid for `ttl`.
    pub async fn send_code(&self, to: &str, code: &str, ttl: Duration) -> Result<(), MailError> {
        let to = to
            .parse::<Mailbox>()
            .map_err(|e| MailError::Build(e.to_string()))?;
        let minutes = ttl.as_secs().div_ceil(60).max(1);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Your verification code: {code}"))
            .header(ContentType::TEXT_PLAIN)
            .body(format!(
                "Your verification code is {code}\n\n\
                 Enter it on the signup page to confirm this address; your site is built then.\n\
                 It works once and expires in {minutes} minutes.\n\n\
                 If you did not sign up, ignore this mail: nothing is made without the code.\n"
            ))
            .map_err(|e| MailError::Build(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Send(e.to_string()))
    }
}

/// `text` without the URL (or its userinfo), should the parser have quoted them.
fn redact(text: &str, url: &SecretString) -> String {
    let secret = url.expose_secret();
    let mut out = text.replace(secret, "<the SMTP URL>");
    if let Some((userinfo, _)) = secret
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        && !userinfo.is_empty()
    {
        out = out.replace(userinfo, "***");
    }
    out
}
