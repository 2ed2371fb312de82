//! Property tests for the validated value types: total on any input, and what they accept is
//! what the rules promise.

use proptest::prelude::*;
use tenancy::{
    Email, OrganisationName, Password, PasswordContext, PersonName, PlanId, RESERVED_SUBDOMAINS,
    Region, Subdomain, TenantId, VaultRef, suggest_alternatives, suggest_subdomain,
};

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

/// Text that mixes ASCII, look-alike letters, control characters and separators.
fn messy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 ._@<>/\\\\;&'()-]{0,80}",
        "[a-z0-9-]{0,70}",
        "[a-zа-яäöüßéñ0-9 -]{0,40}",
        "[\\x00-\\x1f\\u{202e}a-z@.]{0,20}",
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
    ]) {
        if let Ok(e) = Email::parse(&raw) {
            let s = e.as_str();
            prop_assert!(s.len() <= 254);
            prop_assert_eq!(s.matches('@').count(), 1);
            prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>'));
            prop_assert_eq!(e.domain(), e.domain().to_ascii_lowercase());
            prop_assert!(e.domain().contains('.'));
            prop_assert_eq!(Email::parse(s), Ok(e.clone()));
        }
    }

    #[test]
    fn names_round_trip(raw in messy()) {
        if let Ok(n) = PersonName::parse(&raw) {
            prop_assert_eq!(n.as_str(), n.as_str().trim());
            prop_assert!(!n.as_str().contains(['<', '>']));
            prop_assert_eq!(PersonName::parse(n.as_str()), Ok(n.clone()));
        }
        if let Ok(o) = OrganisationName::parse(&raw) {
            prop_assert!((2..=100).contains(&o.as_str().chars().count()));
            prop_assert!(!o.as_str().contains(['<', '>', '/', '\\', ';']));
            prop_assert!(!o.as_str().chars().any(char::is_control));
            prop_assert_eq!(OrganisationName::parse(o.as_str()), Ok(o.clone()));
        }
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
