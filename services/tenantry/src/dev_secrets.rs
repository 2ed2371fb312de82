//! The dev stack's secrets, split by who needs them, so that sourcing the operator's file never
//! puts the vault's key-encryption key in a shell:
//!
//! | file | holds | who reads it |
//! |---|---|---|
//! | `operator.env` | the operator's tokens, the URLs and the CA of the dev stack | people (`set -a; . operator.env`), `tenantry demo` |
//! | `services.env` | the services' vault tokens | `tenantry dev` only |
//! | `vault-kek` | the vault's key-encryption key | `tenantry dev` only |
//!
//! All three are mode 0600 and made once, so tenants and their vaulted secrets survive a
//! restart. A `secrets.env` from an older version is split into these and removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

/// Operator-facing file name.
pub const OPERATOR_FILE: &str = "operator.env";
const SERVICES_FILE: &str = "services.env";
const KEK_FILE: &str = "vault-kek";
const LEGACY_FILE: &str = "secrets.env";

/// Tokens and key material of one dev stack.
pub struct DevSecrets {
    /// The operator's token (TenantAdmin, TenantDirectory, ProjectionAdmin).
    pub admin_token: SecretString,
    /// The vault token of the `operator` caller (audit, rotate, shred).
    pub operator_vault_token: SecretString,
    /// The `signup` caller's vault token.
    pub signup_vault_token: SecretString,
    /// The `provisioner` caller's vault token.
    pub provisioner_vault_token: SecretString,
    /// The `identity` caller's vault token.
    pub identity_vault_token: SecretString,
    /// The billing service's operator token (it asks for suspensions as `billing`).
    pub billing_token: SecretString,
    /// The `billing` caller's vault token (metering reads each site's API key).
    pub billing_vault_token: SecretString,
    /// The API token of the dev Authentik fake (what a real Authentik's API token would be).
    pub authentik_token: SecretString,
    /// The KEK, base64.
    pub kek: SecretString,
    dir: PathBuf,
}

fn read_env(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn token() -> String {
    vault::acl::generate_token().expose_secret().to_owned()
}

impl DevSecrets {
    /// Loads the files under `dir`, creating whatever is missing.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let legacy_path = dir.join(LEGACY_FILE);
        let legacy = read_env(&legacy_path);
        let operator = read_env(&dir.join(OPERATOR_FILE));
        let services = read_env(&dir.join(SERVICES_FILE));
        let pick = |map: &BTreeMap<String, String>, key: &str, legacy_key: &str| {
            map.get(key)
                .or_else(|| legacy.get(legacy_key))
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(token)
        };
        let kek = match std::fs::read_to_string(dir.join(KEK_FILE)) {
            Ok(k) if !k.trim().is_empty() => k.trim().to_owned(),
            _ => legacy.get("VAULT_KEK").cloned().unwrap_or_else(|| {
                vault::crypto::generate_kek_base64()
                    .expose_secret()
                    .to_owned()
            }),
        };
        let secrets = Self {
            admin_token: pick(&operator, "TENANTRY_ADMIN_TOKEN", "TENANTRY_ADMIN_TOKEN").into(),
            operator_vault_token: pick(&operator, "TENANTRY_VAULT_TOKEN", "TENANTRY_VAULT_TOKEN")
                .into(),
            signup_vault_token: pick(&services, "SIGNUP_VAULT_TOKEN", "SIGNUP_VAULT_TOKEN").into(),
            provisioner_vault_token: pick(
                &services,
                "PROVISIONER_VAULT_TOKEN",
                "PROVISIONER_VAULT_TOKEN",
            )
            .into(),
            identity_vault_token: pick(&services, "IDENTITY_VAULT_TOKEN", "IDENTITY_VAULT_TOKEN")
                .into(),
            authentik_token: pick(&services, "AUTHENTIK_FAKE_TOKEN", "AUTHENTIK_FAKE_TOKEN").into(),
            billing_token: pick(
                &services,
                "BILLING_OPERATOR_TOKEN",
                "BILLING_OPERATOR_TOKEN",
            )
            .into(),
            billing_vault_token: pick(&services, "BILLING_VAULT_TOKEN", "BILLING_VAULT_TOKEN")
                .into(),
            kek: kek.into(),
            dir: dir.to_owned(),
        };
        write_private(
            &dir.join(SERVICES_FILE),
            &format!(
                "SIGNUP_VAULT_TOKEN={}\nPROVISIONER_VAULT_TOKEN={}\nIDENTITY_VAULT_TOKEN={}\nAUTHENTIK_FAKE_TOKEN={}\nBILLING_OPERATOR_TOKEN={}\nBILLING_VAULT_TOKEN={}\n",
                secrets.signup_vault_token.expose_secret(),
                secrets.provisioner_vault_token.expose_secret(),
                secrets.identity_vault_token.expose_secret(),
                secrets.authentik_token.expose_secret(),
                secrets.billing_token.expose_secret(),
                secrets.billing_vault_token.expose_secret()
            ),
        )?;
        write_private(
            &dir.join(KEK_FILE),
            &format!("{}\n", secrets.kek.expose_secret()),
        )?;
        if legacy_path.exists() {
            std::fs::remove_file(&legacy_path)
                .with_context(|| format!("cannot remove {}", legacy_path.display()))?;
        }
        Ok(secrets)
    }

    /// Writes `operator.env`: the operator's tokens plus where the stack is and which CA to
    /// trust, so `set -a; . operator.env` is all `tenantctl` needs.
    pub fn write_operator_env(&self, urls: &[(&str, String)]) -> anyhow::Result<PathBuf> {
        let mut text = format!(
            "TENANTRY_ADMIN_TOKEN={}\nTENANTRY_VAULT_TOKEN={}\n",
            self.admin_token.expose_secret(),
            self.operator_vault_token.expose_secret()
        );
        for (key, value) in urls {
            text.push_str(&format!("{key}={value}\n"));
        }
        let path = self.dir.join(OPERATOR_FILE);
        write_private(&path, &text)?;
        Ok(path)
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_file_is_split_and_the_kek_never_lands_in_the_operator_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LEGACY_FILE),
            "TENANTRY_ADMIN_TOKEN=adm\nTENANTRY_VAULT_TOKEN=op\nSIGNUP_VAULT_TOKEN=su\n\
             PROVISIONER_VAULT_TOKEN=pr\nVAULT_KEK=kek-material\n",
        )
        .unwrap();
        let s = DevSecrets::load_or_create(dir.path()).unwrap();
        assert_eq!(s.admin_token.expose_secret(), "adm");
        assert_eq!(s.kek.expose_secret(), "kek-material");
        let operator = s
            .write_operator_env(&[("TENANTRY_ADMIN_URL", "https://127.0.0.1:50054".into())])
            .unwrap();
        let text = std::fs::read_to_string(operator).unwrap();
        assert!(text.contains("TENANTRY_ADMIN_TOKEN=adm"));
        assert!(!text.contains("kek-material") && !text.contains("KEK"));
        assert!(!dir.path().join(LEGACY_FILE).exists());
        // A second start keeps everything.
        let again = DevSecrets::load_or_create(dir.path()).unwrap();
        assert_eq!(again.kek.expose_secret(), "kek-material");
        assert_eq!(again.signup_vault_token.expose_secret(), "su");
    }
}
