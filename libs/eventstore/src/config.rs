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
    /// NATS server(s), e.g. `nats://127.0.0.1:4222`, or the nodes of a cluster separated by
    /// commas (`nats://n1:4222,nats://n2:4222,nats://n3:4222`).
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

/// The URL without credentials (NATS URLs may carry a token or user:password); each URL of a
/// comma-separated list on its own.
pub(crate) fn redact(url: &str) -> String {
    let one = |url: &str| match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    };
    url.split(',').map(one).collect::<Vec<_>>().join(",")
}

/// The servers of `nats_url`: one URL, or several separated by commas (the nodes of a
/// cluster; the client connects to any and fails over to the others).
pub(crate) fn server_addrs(nats_url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let urls: Vec<&str> = nats_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(
            "the NATS URL is empty; give nats://host:port, or several separated by commas".into(),
        );
    }
    urls.iter()
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("NATS URL {} is not valid: {e}", redact(u)))
        })
        .collect()
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

    /// The same config with `replicas` copies of the stream and every KV bucket.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
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
    let tls_url = config
        .nats_url
        .split(',')
        .any(|u| u.trim().starts_with("tls://"));
    if tls.required || tls.ca.is_some() || tls_url {
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

#[cfg(test)]
mod tests {
    use super::{redact, server_addrs};

    #[test]
    fn a_list_of_servers_is_parsed_and_each_is_redacted() {
        let list = "nats://a:4222, nats://user:pw@b:4223,tls://c:4224";
        let addrs = server_addrs(list).unwrap();
        assert_eq!(addrs.len(), 3);
        assert_eq!(addrs[1].port(), 4223);
        assert!(addrs[2].tls_required());
        assert_eq!(
            redact(list),
            "nats://a:4222, nats://***@b:4223,tls://c:4224"
        );
        assert!(server_addrs(" , ").unwrap_err().contains("empty"));
        let bad = server_addrs("nats://a:4222,nats://tok@:notaport").unwrap_err();
        assert!(bad.contains("not valid") && !bad.contains("tok"), "{bad}");
    }
}
