//! Property tests for the validated value types: total on any input, and what they accept is
//! what the rules promise.

use proptest::prelude::*;
use tenancy::{
    Email, OrganisationName, Password, PasswordContext, PersonName, PlanId, RESERVED_SUBDOMAINS,
    Region, Subdomain, TenantId, ValidationError, VaultRef, suggest_alternatives,
    suggest_subdomain,
};
use unicode_normalization::{UnicodeNormalization, is_nfc};

/// The DNS-label rule, written independently of `Subdomain::parse`:
/// `^[a-z0-9]([a-z0-9-]{1,61})[a-z0-9]$` without `--` at positions 3–4.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !(b.len() >= 4 && &b[2..4] == b"--")
}

/// The email rule of issue 18, written independently of `Email::parse`: at most 140
/// characters; `[A-Za-z0-9._%+-]{1,64}` before the one `@`, no dot at either end or doubled, no
/// `-` first; two or more lowercase LDH labels of 1–63 after it, none starting or ending with
/// `-`, the last alphabetic (2+) or `xn--…`.
fn is_conservative_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    let tld = labels[labels.len() - 1];
    s.len() <= 140
        && (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b))
        && !local.starts_with(['.', '-'])
        && !local.ends_with('.')
        && !local.contains("..")
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && ((tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_lowercase()))
            || tld.starts_with("xn--"))
}

/// A stored name: NFC, no control characters, line breaks or bidi controls, and at least one
/// character that is neither whitespace nor a format character at its ends.
fn is_clean_display_text(s: &str) -> bool {
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
    let edge_invisible = |c: char| {
        c.is_whitespace() || matches!(c, '\u{FEFF}' | '\u{200B}'..='\u{200D}' | '\u{2060}')
    };
    is_nfc(s)
        && !s
            .chars()
            .any(|c| c.is_control() || bidi(c) || matches!(c, '\u{2028}' | '\u{2029}'))
        && !s.starts_with(edge_invisible)
        && !s.ends_with(edge_invisible)
}

/// Names with accents, both precomposed and as combining marks.
fn names() -> impl Strategy<Value = String> {
    "[A-Za-z\u{C0}-\u{FF}\u{300}-\u{36F} '-]{1,30}"
}

/// Text that mixes ASCII, look-alike letters, control characters and separators.
fn messy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 ._@<>/\\\\;&'()-]{0,80}",
        "[a-z0-9-]{0,70}",
        "[a-zа-яäöüßéñ0-9 -]{0,40}",
        "[\\x00-\\x1f\\u{202e}a-z@.]{0,20}",
        "[\\u{200b}-\\u{200f}\\u{2060}\\u{feff}\\u{0300}-\\u{036f}\\u{2028}\\u{3164} a-zé]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(raw in messy()) {
        let _ = Subdomain::parse(&raw);
        let _ = Email::parse(&raw);
        let _ = PersonName::parse(&raw);
        let _ = OrganisationName::parse(&raw);
        let _ = PlanId::parse(&raw);
        let _ = Region::parse(&raw);
        let _ = TenantId::parse(&raw);
        let _ = VaultRef::parse(&raw);
        let _ = suggest_subdomain(&raw);
        let _ = Password::parse(&raw, &PasswordContext { email: &raw, name: &raw, subdomain: &raw, organisation: &raw });
    }

    #[test]
    fn accepted_subdomains_are_dns_labels_and_round_trip(raw in messy()) {
        if let Ok(s) = Subdomain::parse(&raw) {
            prop_assert!(is_dns_label(s.as_str()), "{:?} → {:?}", raw, s);
            prop_assert!(!RESERVED_SUBDOMAINS.contains(&s.as_str()));
            prop_assert_eq!(Subdomain::parse(s.as_str()), Ok(s.clone()));
        }
    }

    #[test]
    fn dns_labels_are_accepted_unless_reserved(raw in "[a-z0-9][a-z0-9-]{1,61}[a-z0-9]") {
        let ok = is_dns_label(&raw) && !RESERVED_SUBDOMAINS.contains(&raw.as_str());
        prop_assert_eq!(Subdomain::parse(&raw).is_ok(), ok);
    }

    #[test]
    fn non_ascii_subdomains_are_refused(prefix in "[a-z]{1,10}", suffix in "[a-z]{1,10}", c in "[^\\x00-\\x7f]") {
        let raw = format!("{prefix}{c}{suffix}");
        prop_assert!(Subdomain::parse(&raw).is_err());
    }

    #[test]
    fn suggestions_are_always_valid(org in messy()) {
        if let Some(s) = suggest_subdomain(&org) {
            prop_assert!(is_dns_label(s.as_str()));
            prop_assert_eq!(Subdomain::parse(s.as_str()), Ok(s.clone()));
            for alt in suggest_alternatives(&s, 5) {
                prop_assert!(is_dns_label(alt.as_str()));
                prop_assert_ne!(alt.as_str(), s.as_str());
            }
        }
    }

    #[test]
    fn emails_round_trip_and_keep_their_promises(raw in prop_oneof![
        messy(),
        "[a-zA-Z0-9._%+-]{1,20}@[a-zA-Z0-9-]{1,15}\\.[a-zA-Z]{2,6}",
        "[a-zA-Z0-9._%+!#$&'*/=?^`{|}~-]{1,20}@[a-zA-Z0-9._-]{1,20}\\.[a-zA-Z0-9-]{1,6}",
    ]) {
        if let Ok(e) = Email::parse(&raw) {
            let s = e.as_str();
            prop_assert!(is_conservative_email(s), "{:?} → {:?}", raw, s);
            prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>'));
            prop_assert_eq!(e.domain(), e.domain().to_ascii_lowercase());
            prop_assert_eq!(Email::parse(s), Ok(e.clone()));
            prop_assert_eq!(Email::parse_exact(s), Ok(e.clone()));
            prop_assert_eq!(e.key(), s.to_ascii_lowercase());
        }
    }

    #[test]
    fn conservative_emails_are_accepted(raw in "[a-zA-Z0-9_%+][a-zA-Z0-9._%+-]{0,40}@([a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\\.){1,3}[a-z]{2,8}") {
        prop_assume!(!raw.contains("..") && !raw.contains(".@"));
        prop_assume!(!raw.to_ascii_lowercase().contains("undisclosed-recipient"));
        prop_assert!(is_conservative_email(&raw));
        prop_assert_eq!(Email::parse(&raw).map(Email::into_string), Ok(raw.clone()));
    }

    #[test]
    fn names_round_trip(raw in messy()) {
        if let Ok(n) = PersonName::parse(&raw) {
            prop_assert_eq!(n.as_str(), n.as_str().trim());
            prop_assert!(!n.as_str().contains(['<', '>']));
            prop_assert!(is_clean_display_text(n.as_str()), "{:?} → {:?}", raw, n);
            prop_assert_eq!(PersonName::parse(n.as_str()), Ok(n.clone()));
        }
        if let Ok(o) = OrganisationName::parse(&raw) {
            prop_assert!((2..=100).contains(&o.as_str().chars().count()));
            prop_assert!(!o.as_str().contains(['<', '>', '/', '\\', ';']));
            prop_assert!(is_clean_display_text(o.as_str()), "{:?} → {:?}", raw, o);
            prop_assert_eq!(OrganisationName::parse(o.as_str()), Ok(o.clone()));
        }
    }

    #[test]
    fn canonically_equivalent_names_are_one_name(raw in names()) {
        // NFD and NFC spellings of a name parse to the same value.
        let nfd: String = raw.nfd().collect();
        let nfc: String = raw.nfc().collect();
        prop_assert_eq!(PersonName::parse(&nfd), PersonName::parse(&nfc));
        prop_assert_eq!(OrganisationName::parse(&nfd), OrganisationName::parse(&nfc));
    }

    #[test]
    fn hidden_characters_are_never_kept(
        name in "[A-Za-zÀ-ÿ]{1,10}( [A-Za-zÀ-ÿ]{1,10})?",
        hidden in prop::sample::select(vec![
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{0}', '\u{1B}',
            '\u{7F}', '\u{85}', '\u{9F}', '\n', '\u{2028}', '\u{2029}',
        ]),
        at in 0usize..12,
    ) {
        let mut chars: Vec<char> = name.chars().collect();
        // Strictly inside, so trimming cannot be what removes it.
        let at = 1 + at % chars.len();
        chars.insert(at.min(chars.len()), hidden);
        let raw: String = chars.into_iter().chain(std::iter::once('x')).collect();
        prop_assert!(PersonName::parse(&raw).is_err(), "{:?}", raw);
        prop_assert!(OrganisationName::parse(&raw).is_err(), "{:?}", raw);
    }

    #[test]
    fn invisible_only_names_are_refused(raw in "[ \u{FEFF}\u{200B}-\u{200D}\u{2060}\u{00AD}\u{3164}\u{FE0F}\u{E0020}-\u{E007F}]{1,10}") {
        prop_assert!(PersonName::parse(&raw).is_err());
        prop_assert!(OrganisationName::parse(&raw).is_err());
    }

    #[test]
    fn passwords_with_control_characters_are_refused(
        pw in "[a-z ]{6,20}",
        c in "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]",
        at in 0usize..20,
    ) {
        let mut chars: Vec<char> = pw.chars().collect();
        chars.insert(at % (chars.len() + 1), c.chars().next().unwrap());
        let raw: String = chars.into_iter().collect();
        prop_assert_eq!(
            Password::parse(&raw, &PasswordContext::default()).map(|_| ()),
            Err(ValidationError::Forbidden("control characters such as tabs or line breaks"))
        );
    }

    #[test]
    fn slugs_round_trip(raw in prop_oneof![messy(), "[a-z0-9-]{1,40}"]) {
        if let Ok(p) = PlanId::parse(&raw) {
            prop_assert!((1..=32).contains(&p.as_str().len()));
            prop_assert_eq!(PlanId::parse(p.as_str()), Ok(p.clone()));
        }
        if let Ok(r) = Region::parse(&raw) {
            prop_assert_eq!(Region::parse(r.as_str()), Ok(r.clone()));
        }
    }

    #[test]
    fn tenant_ids_round_trip(bytes in any::<[u8; 16]>()) {
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        // Random bytes with the v7 version bits set are a valid v7 UUID.
        let v7 = uuid::Builder::from_bytes(*uuid.as_bytes()).with_version(uuid::Version::SortRand).into_uuid();
        let id = TenantId::from_uuid(v7);
        prop_assert_eq!(TenantId::parse(&id.to_string()), Ok(id));
        prop_assert!(TenantId::parse(&uuid.to_string()).is_err()); // v4
    }

    #[test]
    fn password_errors_never_contain_the_password(raw in "[a-zA-Z0-9!@#]{6,40}") {
        let ctx = PasswordContext { email: "jane@example.com", name: "Jane Doe", subdomain: "acme", organisation: "Acme" };
        match Password::parse(&raw, &ctx) {
            Ok(p) => {
                prop_assert_eq!(p.expose_secret(), raw.as_str());
                let shown = format!("{p:?}");
                prop_assert!(!shown.contains(&raw));
            }
            Err(e) => prop_assert!(!e.to_string().contains(&raw)),
        }
    }

    #[test]
    fn long_enough_random_passwords_pass(raw in "[a-zA-Z0-9]{16,40}") {
        // Random alphanumerics avoid the personal words below, the common list and repetition
        // with overwhelming probability; we exclude the rare collisions explicitly.
        let lower = raw.to_lowercase();
        prop_assume!(!lower.contains("zed") && !lower.contains("corp"));
        let ctx = PasswordContext { email: "zed@x.io", name: "Zed", subdomain: "zed", organisation: "Zed Corp" };
        prop_assert!(Password::parse(&raw, &ctx).is_ok());
    }
}
