//! Errors and the exit codes they mean.

use std::process::ExitCode;

/// What kind of failure, and so which exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 1: anything else.
    Failure,
    /// 2: the command line or an argument is wrong.
    Usage,
    /// 3: no such tenant, dead letter, ….
    NotFound,
    /// 4: refused: the tenant's state does not allow it, or it already happened.
    Refused,
    /// 5: a server is down or not answering.
    Unavailable,
    /// 6: missing or wrong token, or not allowed.
    Unauthorized,
}

impl ErrorKind {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ErrorKind::Failure => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Refused => 4,
            ErrorKind::Unavailable => 5,
            ErrorKind::Unauthorized => 6,
        }
    }

    /// A stable name for `--json` error output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Failure => "failure",
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Refused => "refused",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unauthorized => "unauthorized",
        }
    }
}

/// A failed command: what went wrong, in words a person can act on, and its kind.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// The kind (exit code).
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

impl CliError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.code())
    }

    /// Adds what was being done: "cannot reach the directory at …: <message>".
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let kind = match s.code() {
            Code::NotFound => ErrorKind::NotFound,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted | Code::OutOfRange => {
                ErrorKind::Refused
            }
            Code::InvalidArgument => ErrorKind::Usage,
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                ErrorKind::Unavailable
            }
            Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Unauthorized,
            _ => ErrorKind::Failure,
        };
        let message = if s.message().is_empty() {
            format!("{:?}", s.code())
        } else {
            s.message().to_owned()
        };
        CliError::new(kind, message)
    }
}

impl From<eventstore::StoreError> for CliError {
    fn from(e: eventstore::StoreError) -> Self {
        let kind = if e.is_transient() {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Failure
        };
        CliError::new(kind, e.to_string())
    }
}

impl From<vault_client::ClientError> for CliError {
    fn from(e: vault_client::ClientError) -> Self {
        match e {
            vault_client::ClientError::Status { status, .. } => CliError::from(status),
            other => CliError::new(ErrorKind::Usage, other.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(ErrorKind::Failure, format!("cannot write output: {e}"))
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::new(ErrorKind::Failure, format!("cannot encode JSON: {e}"))
    }
}
