use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// How a client proves itself to NATS. Secrets are `SecretString`s: never printed.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// No credentials (a local dev server).
    #[default]
    None,
    /// `user` + `password`.
    UserPassword {
        /// User name.
        user: String,
        /// Password.
        password: SecretString,
    },
    /// A shared token.
    Token(SecretString),
    /// An nkey seed (`SU…`).
    NKey(SecretString),
    /// A `.creds` file (JWT + nkey seed), as NGS/operator mode issues them.
    CredsFile(PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
            NatsAuth::Token(_) => f.write_str("Token(***)"),
            NatsAuth::NKey(_) => f.write_str("NKey(***)"),
            NatsAuth::CredsFile(p) => write!(f, "CredsFile({})", p.display()),
        }
    }
}

/// TLS towards NATS.
#[derive(Debug, Clone, Default)]
pub struct NatsTls {
    /// Refuse a plaintext connection (also implied by a CA or a `tls://` URL).
    pub required: bool,
    /// PEM CA that signs the server's certificate.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Where the event store lives and how its stream is shaped.
#[derive(Clone)]
pub struct StoreConfig {
    /// NATS server(s), e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// Isolates a deployment or a test: prefixes the stream (`<ns>_TENANTRY_EVENTS`), the
    /// subjects (`<ns>.tenantry.…`) and KV buckets. Empty in production.
    pub namespace: String,
    /// Stream replicas: 1 in dev, 3 in production.
    pub replicas: usize,
    /// How long JetStream remembers event ids for de-duplication.
    pub duplicate_window: Duration,
    /// How long the first connection may take before `connect` gives up, naming the reason.
    pub connect_timeout: Duration,
    /// Credentials.
    pub auth: NatsAuth,
    /// TLS.
    pub tls: NatsTls,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("nats_url", &redact(&self.nats_url))
            .field("namespace", &self.namespace)
            .field("replicas", &self.replicas)
            .field("duplicate_window", &self.duplicate_window)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The URL without credentials (NATS URLs may carry a token or user:password).
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            namespace: String::new(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
        }
    }
}

impl StoreConfig {
    /// Config for a NATS URL, other fields default.
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            ..Self::default()
        }
    }

    /// The same config in another namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The same config with credentials and TLS.
    pub fn with_security(mut self, auth: NatsAuth, tls: NatsTls) -> Self {
        self.auth = auth;
        self.tls = tls;
        self
    }

    /// `<ns>_<name>` or `<name>`.
    pub(crate) fn prefixed_name(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{}_{name}", self.namespace)
        }
    }

    /// `<ns>.<subject>` or `<subject>`.
    pub(crate) fn prefixed_subject(&self, subject: &str) -> String {
        if self.namespace.is_empty() {
            subject.to_owned()
        } else {
            format!("{}.{subject}", self.namespace)
        }
    }
}

/// Applies credentials and TLS to connect options.
pub(crate) async fn secure(
    options: async_nats::ConnectOptions,
    config: &StoreConfig,
) -> Result<async_nats::ConnectOptions, crate::StoreError> {
    use secrecy::ExposeSecret;
    let mut options = match &config.auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose_secret().to_owned())
        }
        NatsAuth::Token(t) => options.token(t.expose_secret().to_owned()),
        NatsAuth::NKey(seed) => options.nkey(seed.expose_secret().to_owned()),
        NatsAuth::CredsFile(path) => options.credentials_file(path).await.map_err(|e| {
            crate::StoreError::Invalid(format!(
                "cannot read the NATS credentials file {}: {e}",
                path.display()
            ))
        })?,
    };
    let tls = &config.tls;
    if tls.required || tls.ca.is_some() || config.nats_url.starts_with("tls://") {
        options = options.require_tls(true);
    }
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &tls.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}
