//! The owner password policy.
//!
//! Follows NIST SP 800-63B's advice rather than composition rules: long enough, not on a list of
//! known-common passwords, not built from the person's own details, not trivially repetitive.
//! Control characters are refused: they cannot be typed at a login form.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use secrecy::{ExposeSecret, SecretString};

use crate::ValidationError;

/// The embedded list of common passwords, one per line, lowercase.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// What the policy compares a password against: the person's own details, as given in the
/// signup request. Raw text is fine (and empty fields are skipped), so the check can run even
/// when another field of the request is invalid and all problems are reported at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordContext<'a> {
    /// The owner's email address.
    pub email: &'a str,
    /// The owner's full name.
    pub name: &'a str,
    /// The requested subdomain.
    pub subdomain: &'a str,
    /// The organisation's name.
    pub organisation: &'a str,
}

/// A password that passed the policy. Wraps a [`SecretString`]: `Debug` shows `[REDACTED]`,
/// and nothing in this type (or its errors) ever prints the password.
pub struct Password(SecretString);

impl Password {
    /// Fewest characters (Unicode scalar values) allowed.
    pub const MIN_LEN: usize = 12;
    /// Most characters allowed: bounds the cost of hashing and refuses pasted garbage.
    pub const MAX_LEN: usize = 128;

    /// Checks `raw` against the policy. The password is taken as typed: it is not trimmed,
    /// since spaces may be part of a passphrase.
    pub fn parse(raw: &str, ctx: &PasswordContext<'_>) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::Empty);
        }
        // C0 (tab, line breaks, NUL, …), DEL and C1: never typed at a login form, so most likely
        // a pasted line break or a mangled paste — and the password travels through argvs and
        // Python literals on the bench side.
        if raw.chars().any(char::is_control) {
            return Err(ValidationError::Forbidden(
                "control characters such as tabs or line breaks",
            ));
        }
        let len = raw.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(ValidationError::Length {
                min: Self::MIN_LEN,
                max: Self::MAX_LEN,
            });
        }
        let lower = raw.to_lowercase();
        if is_repetitive(&lower) {
            return Err(ValidationError::Repetitive);
        }
        check_personal(&lower, ctx)?;
        if is_common(&lower) {
            return Err(ValidationError::TooCommon);
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    /// The password itself, for handing to the vault. Keep the borrow short.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The wrapped secret, for APIs that take a `SecretString`.
    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// One character, or a unit of up to three characters, repeated over the whole password
/// (`aaaaaaaaaaaa`, `abababababab`, `abcabcabcabc`).
fn is_repetitive(lower: &str) -> bool {
    let chars: Vec<char> = lower.chars().collect();
    (1..=3).any(|unit| {
        chars.len() >= unit * 2
            && chars.len().is_multiple_of(unit)
            && chars.chunks(unit).all(|c| c == &chars[..unit])
    })
}

/// Refuses passwords that contain the person's email, name words, subdomain or organisation.
fn check_personal(lower: &str, ctx: &PasswordContext<'_>) -> Result<(), ValidationError> {
    let email = ctx.email.trim().to_lowercase();
    if !email.is_empty() && lower.contains(&email) {
        return Err(ValidationError::Personal("email address"));
    }
    if let Some((local, _)) = email.split_once('@') {
        // Short local parts ("jo@…") would forbid too many passwords to be useful.
        if local.chars().count() >= 3 && lower.contains(local) {
            return Err(ValidationError::Personal("email address"));
        }
        // `jane.doe@` → also refuse "jane" and "doe" separately.
        if words(local, 3).any(|w| lower.contains(&w)) {
            return Err(ValidationError::Personal("email address"));
        }
    }
    if words(ctx.name, 3).any(|w| lower.contains(&w)) {
        return Err(ValidationError::Personal("name"));
    }
    let sub = ctx.subdomain.trim().to_lowercase();
    if sub.chars().count() >= 3 && lower.contains(&sub) {
        return Err(ValidationError::Personal("subdomain"));
    }
    // Organisation words are only refused from four letters up, and legal forms not at all:
    // "Acme Ltd" should forbid "acme", not every password containing "ltd".
    const LEGAL_FORMS: &[&str] = &[
        "gmbh",
        "corp",
        "company",
        "corporation",
        "limited",
        "group",
        "holding",
        "holdings",
        "sarl",
        "bvba",
        "pty",
        "llc",
        "plc",
        "inc",
    ];
    if words(ctx.organisation, 4)
        .filter(|w| !LEGAL_FORMS.contains(&w.as_str()))
        .any(|w| lower.contains(&w))
    {
        return Err(ValidationError::Personal("organisation's name"));
    }
    Ok(())
}

/// Lowercased alphanumeric words of at least `min` characters.
fn words(text: &str, min: usize) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(move |w| w.chars().count() >= min)
        .map(str::to_lowercase)
}

/// Whether the password is on the common list, as typed, with digits and punctuation stripped
/// from both ends (`password123!`), with spaces removed, or with common letter substitutions
/// undone (`p@ssw0rd`).
fn is_common(lower: &str) -> bool {
    let stripped = lower.trim_matches(|c: char| !c.is_alphabetic());
    let candidates = [
        lower.to_owned(),
        stripped.to_owned(),
        lower.replace(' ', ""),
        stripped.replace(' ', ""),
        unleet(stripped),
        unleet(stripped)
            .trim_matches(|c: char| !c.is_alphabetic())
            .to_owned(),
    ];
    candidates
        .iter()
        .any(|c| !c.is_empty() && COMMON.contains(c.as_str()))
}

/// Undoes the usual letter-to-symbol substitutions.
fn unleet(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '0' => 'o',
            '1' | '!' => 'i',
            '3' => 'e',
            '$' | '5' => 's',
            '7' => 't',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PasswordContext<'static> {
        PasswordContext {
            email: "Jane.Doe@example.com",
            name: "Jane Q Doe",
            subdomain: "acme-corp",
            organisation: "Acme Widgets Ltd",
        }
    }

    #[test]
    fn accepts_a_good_passphrase() {
        let p = Password::parse("violet tractor 19 spoons", &ctx()).unwrap();
        assert_eq!(p.expose_secret(), "violet tractor 19 spoons");
        assert_eq!(format!("{p:?}"), "Password([REDACTED])");
    }

    #[test]
    fn length_bounds() {
        let e = ValidationError::Length { min: 12, max: 128 };
        assert_eq!(
            Password::parse("", &ctx()).unwrap_err(),
            ValidationError::Empty
        );
        assert_eq!(Password::parse("Xk9#mQ2$vL7", &ctx()).unwrap_err(), e);
        assert!(Password::parse("Xk9#mQ2$vL7!", &ctx()).is_ok());
        assert_eq!(Password::parse(&"xY1".repeat(43), &ctx()).unwrap_err(), e);
        // Characters, not bytes: 12 two-byte letters are long enough.
        assert!(Password::parse("äöüßéèêëïîôû", &ctx()).is_ok());
    }

    #[test]
    fn refuses_control_characters() {
        let none = PasswordContext::default();
        let want = ValidationError::Forbidden("control characters such as tabs or line breaks");
        for p in [
            "violet tractor 19 spoons\n",
            "violet tractor 19 spoons\r\n",
            "violet\ttractor 19 spoons",
            "violet tractor\u{0} 19 spoons",
            "\u{1B}[31mviolet tractor 19",
            "violet tractor 19 spoons\u{7F}",
            "violet tractor 19 spoons\u{80}",
            "violet tractor\u{85}19 spoons",
            "violet tractor 19 spoons\u{9F}",
            // Short and controlled: the control character is the reason given.
            "ab\n",
        ] {
            assert_eq!(Password::parse(p, &none).unwrap_err(), want, "{p:?}");
        }
        assert_eq!(
            want.to_string(),
            "must not contain control characters such as tabs or line breaks"
        );
        // Spaces of any kind, and other non-control characters, stay allowed.
        for p in [
            "violet tractor 19 spoons",
            "violet\u{A0}tractor\u{3000}19 spoons",
            "fiołek traktor 19 łyżek",
            "\u{1F600} violet tractor 19",
        ] {
            assert!(Password::parse(p, &none).is_ok(), "{p:?}");
        }
    }

    #[test]
    fn refuses_repetition() {
        for p in [
            "aaaaaaaaaaaa",
            "AAAAAAAAAAAAaaaa",
            "abababababab",
            "xyzxyzxyzxyz",
        ] {
            assert_eq!(
                Password::parse(p, &PasswordContext::default()).unwrap_err(),
                ValidationError::Repetitive,
                "{p}"
            );
        }
    }

    #[test]
    fn refuses_personal_details_case_insensitively() {
        use ValidationError::Personal;
        let cases = [
            ("xx jane.doe@EXAMPLE.com", Personal("email address")),
            ("JANE.DOE-rocks-99", Personal("email address")),
            ("my-DOE-password-x", Personal("email address")),
            ("zz acme-corp 2024 zz", Personal("subdomain")),
            ("widgets-are-great", Personal("organisation's name")),
        ];
        for (p, want) in cases {
            assert_eq!(Password::parse(p, &ctx()).unwrap_err(), want, "{p}");
        }
        let name_only = PasswordContext {
            name: "Bartholomew Q Smith",
            ..Default::default()
        };
        assert_eq!(
            Password::parse("I am SMITH the great", &name_only).unwrap_err(),
            Personal("name")
        );
        // Short name words and legal forms are not held against the password.
        assert!(Password::parse("q is for quokka ltd", &ctx()).is_ok());
    }

    #[test]
    fn refuses_common_passwords_and_their_variants() {
        let none = PasswordContext::default();
        for p in [
            "password1234",
            "Password123!",
            "PASSWORD2024!!",
            "P@ssw0rd12345",
            "!!qwertyuiop!!",
            "123456789012",
            "iloveyou1234",
            "correct horse battery staple",
            "Letmein12345",
            "Monkey!!12345",
        ] {
            assert_eq!(
                Password::parse(p, &none).unwrap_err(),
                ValidationError::TooCommon,
                "{p}"
            );
        }
    }

    #[test]
    fn the_common_list_is_large_and_lowercase() {
        assert!(COMMON.len() >= 200, "{}", COMMON.len());
        for p in COMMON.iter() {
            assert_eq!(p.to_lowercase(), *p);
        }
    }

    #[test]
    fn errors_never_echo_the_password() {
        let secret = "hunter2hunter2-jane.doe@example.com";
        let err = Password::parse(secret, &ctx()).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
