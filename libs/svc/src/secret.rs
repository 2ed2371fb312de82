//! Secrets (tokens, passwords) come from the environment or from files, never from flags:
//! a flag's value is visible to every user of the machine through `ps` and `/proc`.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        /// Which secret.
        what: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or variable is empty.
    #[error("{what} is empty (in {source_name})")]
    Empty {
        /// Which secret.
        what: String,
        /// The file or variable.
        source_name: String,
    },
}

/// Reads a secret from `file` if given (its content, without the trailing newline), else from
/// the environment variable `env`; `None` when neither is set.
pub fn load(
    what: &str,
    env: &str,
    file: Option<&Path>,
) -> Result<Option<SecretString>, SecretError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            what: what.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(SecretError::Empty {
                what: what.to_owned(),
                source_name: path.display().to_string(),
            });
        }
        return Ok(Some(SecretString::from(value.to_owned())));
    }
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => Ok(Some(SecretString::from(v))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn files_win_and_lose_their_newline() {
        let dir = std::env::temp_dir().join(format!("svc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let got = load("the token", "SVC_TEST_UNSET_VARIABLE", Some(&file)).unwrap();
        assert_eq!(got.unwrap().expose_secret(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        let err = load("the token", "X", Some(&file)).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = load("the token", "X", Some(&dir.join("missing"))).unwrap_err();
        assert!(err.to_string().contains("cannot read the token"), "{err}");
        assert!(
            load("t", "SVC_TEST_UNSET_VARIABLE", None)
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
