//! The one error every parser returns.

/// Why a value was refused, in plain language and independent of the field it came from:
/// callers prefix the field ("subdomain must be 3–63 characters"). Messages never echo the
/// input, so they are safe for passwords and for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Nothing (or only whitespace) was given.
    #[error("must not be empty")]
    Empty,
    /// Too short or too long, counted in characters.
    #[error("must be {min}–{max} characters")]
    Length {
        /// Fewest characters allowed.
        min: usize,
        /// Most characters allowed.
        max: usize,
    },
    /// Contains a non-ASCII character where only ASCII is allowed (refuses look-alike letters
    /// such as Cyrillic 'а' that would let one name impersonate another).
    #[error("must use plain ASCII characters only")]
    NotAscii,
    /// Contains a character outside the allowed set; the text says what is allowed.
    #[error("may only contain {0}")]
    InvalidCharacters(&'static str),
    /// Contains something that is never allowed; the text says what.
    #[error("must not contain {0}")]
    Forbidden(&'static str),
    /// Starts or ends with a hyphen.
    #[error("must not start or end with '-'")]
    EdgeHyphen,
    /// Has "--" in the third and fourth positions, which DNS reserves for punycode (`xn--`).
    #[error("must not have '--' in the third and fourth positions")]
    Punycode,
    /// A name the platform keeps for itself.
    #[error("is reserved")]
    Reserved,
    /// Structurally wrong; the text says how.
    #[error("{0}")]
    Malformed(&'static str),
    /// A password on the list of the most common ones.
    #[error("is too common; choose something harder to guess")]
    TooCommon,
    /// A password that contains personal details; the text names which.
    #[error("must not contain your {0}")]
    Personal(&'static str),
    /// A password that is one character or a very short pattern repeated.
    #[error("must not be one character or a short pattern repeated")]
    Repetitive,
}
