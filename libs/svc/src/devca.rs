//! A throw-away local certificate authority for `tenantry dev` and the TLS tests: one CA, one
//! server certificate for `localhost`/`127.0.0.1`, one client certificate for mTLS. Never for
//! production: production brings its own certificates (see the README).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM text of a CA and of the certificates it signed.
#[derive(Clone)]
pub struct DevCa {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// Server certificate for `localhost` and `127.0.0.1`.
    pub server_pem: String,
    /// Its key.
    pub server_key_pem: String,
    /// Client certificate (mTLS), CN `tenantry-dev-client`.
    pub client_pem: String,
    /// Its key.
    pub client_key_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevCa(..)")
    }
}

/// Where [`DevCa::write_to`] put the files.
#[derive(Debug, Clone)]
pub struct DevCaFiles {
    /// `ca.pem`.
    pub ca: PathBuf,
    /// `server.pem`.
    pub server_cert: PathBuf,
    /// `server-key.pem`.
    pub server_key: PathBuf,
    /// `client.pem`.
    pub client_cert: PathBuf,
    /// `client-key.pem`.
    pub client_key: PathBuf,
}

impl DevCaFiles {
    /// The file names under `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        }
    }

    fn all(&self) -> [&PathBuf; 5] {
        [
            &self.ca,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
        ]
    }
}

impl DevCa {
    /// A new CA with its server and client certificates.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Tenantry dev CA (throw-away)");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            Ok::<_, rcgen::Error>((cert.pem(), key.serialize_pem()))
        };
        let (server_pem, server_key_pem) = leaf(
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_pem, client_key_pem) = leaf(
            vec!["tenantry-dev-client".into()],
            "tenantry-dev-client",
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            server_pem,
            server_key_pem,
            client_pem,
            client_key_pem,
        })
    }

    /// The CA in `dir` if all its files are there, else a new one written there (keys mode
    /// 0600). Returns the file paths.
    pub fn load_or_create(dir: &Path) -> std::io::Result<DevCaFiles> {
        let files = DevCaFiles::in_dir(dir);
        if files.all().iter().all(|p| p.is_file()) {
            return Ok(files);
        }
        let ca = Self::generate().map_err(std::io::Error::other)?;
        ca.write_to(dir)
    }

    /// Writes the PEM files into `dir` (keys readable by the owner only).
    pub fn write_to(&self, dir: &Path) -> std::io::Result<DevCaFiles> {
        std::fs::create_dir_all(dir)?;
        let files = DevCaFiles::in_dir(dir);
        write(&files.ca, &self.ca_pem, false)?;
        write(&files.server_cert, &self.server_pem, false)?;
        write(&files.server_key, &self.server_key_pem, true)?;
        write(&files.client_cert, &self.client_pem, false)?;
        write(&files.client_key, &self.client_key_pem, true)?;
        Ok(files)
    }
}

fn write(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    options.open(path)?.write_all(text.as_bytes())
}
