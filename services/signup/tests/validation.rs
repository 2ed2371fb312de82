//! The gateway's field rules from a client's side (issue 18): what `Signup` accepts, what it
//! refuses with which field and reason, and that every email it accepts is one the provisioner's
//! Frappe side (`frappe::UserEmail`) accepts unchanged. Pure: no NATS, no vault.

use proptest::prelude::*;
use proto::v1::SignupRequest;
use signup::validate::{self, Catalog, SignupInput};
use tenancy::{PlanId, Region};

fn catalog() -> Catalog {
    Catalog {
        plans: vec![PlanId::parse("starter").unwrap()],
        regions: vec![Region::parse("eu").unwrap()],
    }
}

fn good() -> SignupRequest {
    SignupRequest {
        email: "jane@example.com".into(),
        password: "violet tractor 19 spoons".into(),
        full_name: "Jane Doe".into(),
        organisation: "Acme Widgets".into(),
        subdomain: "acme".into(),
        plan: "starter".into(),
        region: String::new(),
        idempotency_key: String::new(),
        human_check_token: String::new(),
    }
}

fn with(field: &str, value: &str) -> SignupRequest {
    let mut r = good();
    let slot = match field {
        "email" => &mut r.email,
        "password" => &mut r.password,
        "full_name" => &mut r.full_name,
        "organisation" => &mut r.organisation,
        "subdomain" => &mut r.subdomain,
        other => panic!("no field {other}"),
    };
    *slot = value.to_owned();
    r
}

fn accept(req: &SignupRequest) -> SignupInput {
    validate::signup(req, &catalog()).unwrap_or_else(|bad| panic!("{req:?} refused: {bad:?}"))
}

/// The one violation a request gets: its field and description.
fn refuse(req: &SignupRequest) -> (&'static str, String) {
    match validate::signup(req, &catalog()) {
        Ok(_) => panic!("{req:?} accepted"),
        Err(bad) => {
            assert_eq!(bad.len(), 1, "{req:?}: {bad:?}");
            (bad[0].field, bad[0].description.clone())
        }
    }
}

const LOCAL_CHARS: &str = "email may only hold letters, digits and . _ % + - before the '@'";
const BIDI: &str = "must not contain bidirectional formatting characters";
const INVISIBLE: &str = "must contain a visible character, not only spaces or invisible formatting";
const CONTROL: &str = "must not contain control characters or line breaks";

#[test]
fn emails_the_site_could_not_use_are_refused_with_the_reason() {
    let long = format!(
        "{}@{}.{}.com",
        "a".repeat(64),
        "b".repeat(40),
        "c".repeat(31)
    );
    let cases: &[(&str, &str)] = &[
        // Issue 18's fuzz finds: valid to the RFC, never creatable as the owner.
        ("o'brien@example.com", LOCAL_CHARS),
        ("a!b@example.com", LOCAL_CHARS),
        ("a#b@example.com", LOCAL_CHARS),
        ("a$b@example.com", LOCAL_CHARS),
        ("a%b&c@example.com", LOCAL_CHARS),
        ("a'b@example.com", LOCAL_CHARS),
        ("a*b@example.com", LOCAL_CHARS),
        ("a/b@example.com", LOCAL_CHARS),
        ("a=b@example.com", LOCAL_CHARS),
        ("a?b@example.com", LOCAL_CHARS),
        ("a^b@example.com", LOCAL_CHARS),
        ("a`b@example.com", LOCAL_CHARS),
        ("a{b@example.com", LOCAL_CHARS),
        ("a|b@example.com", LOCAL_CHARS),
        ("a}b@example.com", LOCAL_CHARS),
        ("a~b@example.com", LOCAL_CHARS),
        ("!#$%&'*/=?^`{|}~@example.com", LOCAL_CHARS),
        ("\"jane\"@example.com", LOCAL_CHARS),
        ("-jane@example.com", "email must not start with '-'"),
        (
            ".jane@example.com",
            "email must not start or end with a dot, or have two dots in a row, before the '@'",
        ),
        (
            "ja..ne@example.com",
            "email must not start or end with a dot, or have two dots in a row, before the '@'",
        ),
        (
            "jane@example",
            "email needs a domain with a dot after the '@', like example.com",
        ),
        (
            "jane@example.c",
            "email must end in a top-level domain of two or more letters, like .com",
        ),
        (
            "jane@10.0.0.1",
            "email must end in a top-level domain of two or more letters, like .com",
        ),
        (
            "jane@-example.com",
            "email must not have a '-' next to a dot or at either end of the domain",
        ),
        (
            "jane@exa_mple.com",
            "email may only hold letters, digits, '-' and dots after the '@'",
        ),
        (
            "jane@example..com",
            "email must not have a dot at either end of the domain, or two dots in a row",
        ),
        (&long, "email must be 6–140 characters"),
        (
            "undisclosed-recipients@example.com",
            "email must be a real mailbox, not 'undisclosed-recipients'",
        ),
        (
            "jané@example.com",
            "email must use plain ASCII characters only",
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(
            refuse(&with("email", raw)),
            ("email", (*want).to_owned()),
            "{raw:?}"
        );
    }
}

#[test]
fn plain_emails_are_accepted_with_the_domain_in_lower_case() {
    for (raw, want) in [
        ("jane@example.com", "jane@example.com"),
        ("Jane.Doe+erp@Example.CO.uk", "Jane.Doe+erp@example.co.uk"),
        (
            "first_last%dept@sub-1.example.io",
            "first_last%dept@sub-1.example.io",
        ),
        ("  jane@example.com ", "jane@example.com"),
        ("jane@xn--mller-kva.de", "jane@xn--mller-kva.de"),
    ] {
        let input = accept(&with("email", raw));
        assert_eq!(input.email.as_str(), want, "{raw:?}");
        // And the Frappe side takes it as it is.
        let user = frappe::UserEmail::parse(input.email.as_str()).unwrap();
        assert_eq!(user.as_str(), want);
    }
}

#[test]
fn names_are_normalised_and_refused_for_what_hides_in_them() {
    // A decomposed "Café" (e + U+0301) is the composed one, for both names.
    let decomposed = SignupRequest {
        full_name: "Rene\u{301} Cafe\u{301}".into(),
        organisation: "Cafe\u{301} Rouge".into(),
        subdomain: "cafe-rouge".into(),
        ..good()
    };
    let input = accept(&decomposed);
    assert_eq!(input.full_name.as_str(), "René Café");
    assert_eq!(input.organisation.as_str(), "Café Rouge");
    // Invisible characters at the ends are dropped.
    let padded = accept(&with("full_name", "\u{FEFF}Jane Doe\u{200B}"));
    assert_eq!(padded.full_name.as_str(), "Jane Doe");
    // A derived subdomain comes from the normalised organisation.
    let derived = accept(&SignupRequest {
        subdomain: String::new(),
        ..decomposed
    });
    assert_eq!(derived.subdomain.as_str(), "cafe-rouge");

    let cases: &[(&str, &str, String)] = &[
        ("full_name", " ", "full name must not be empty".into()),
        ("full_name", "\u{200B}", format!("full name {INVISIBLE}")),
        (
            "full_name",
            "\u{FEFF}\u{2060}",
            format!("full name {INVISIBLE}"),
        ),
        (
            "full_name",
            "\u{200C}\u{200D}",
            format!("full name {INVISIBLE}"),
        ),
        ("full_name", "\u{301}", format!("full name {INVISIBLE}")),
        ("full_name", "Jane\u{202E}eoD", format!("full name {BIDI}")),
        (
            "full_name",
            "\u{2066}Jane\u{2069}",
            format!("full name {BIDI}"),
        ),
        ("full_name", "Jane\u{200F}", format!("full name {BIDI}")),
        ("full_name", "Jane\u{61C}Doe", format!("full name {BIDI}")),
        ("full_name", "Jane\nDoe", format!("full name {CONTROL}")),
        (
            "full_name",
            "Jane\u{2028}Doe",
            format!("full name {CONTROL}"),
        ),
        ("full_name", "Jane\u{7F}", format!("full name {CONTROL}")),
        ("full_name", "Jane\u{9B}Doe", format!("full name {CONTROL}")),
        (
            "organisation",
            "\u{200B}\u{200B}",
            format!("organisation {INVISIBLE}"),
        ),
        (
            "organisation",
            "Acme\u{202D}Ltd",
            format!("organisation {BIDI}"),
        ),
        (
            "organisation",
            "Acme\u{2067}",
            format!("organisation {BIDI}"),
        ),
        (
            "organisation",
            "Acme\u{0}Ltd",
            format!("organisation {CONTROL}"),
        ),
    ];
    for (field, raw, want) in cases {
        let (got_field, got) = refuse(&with(field, raw));
        assert_eq!(got_field, *field, "{raw:?}");
        assert!(got.starts_with(want.as_str()), "{raw:?}: {got}");
    }
}

#[test]
fn passwords_with_control_characters_are_refused() {
    for raw in [
        "violet tractor 19 spoons\n",
        "violet\ttractor 19 spoons",
        "violet tractor\u{0}19 spoons",
        "violet tractor 19 spoons\u{7F}",
        "violet tractor 19 spoons\u{85}",
    ] {
        let (field, why) = refuse(&with("password", raw));
        assert_eq!(field, "password");
        assert_eq!(
            why,
            "password must not contain control characters such as tabs or line breaks"
        );
    }
    // The length and strength rules still hold.
    assert_eq!(
        refuse(&with("password", "short")),
        ("password", "password must be 12–128 characters".into())
    );
    assert_eq!(refuse(&with("password", "password1234")).0, "password");
}

#[test]
fn mail_discovery_and_panel_names_are_reserved() {
    for name in [
        "wpad",
        "mta-sts",
        "openpgpkey",
        "autodiscover",
        "autoconfig",
        "isatap",
        "imap",
        "pop3",
        "smtp",
        "mail",
        "webmail",
        "ns1",
        "ns4",
        "cpanel",
        "whm",
        "webdisk",
        "plesk",
        "owa",
        "exchange",
        "lyncdiscover",
        "sip",
        "sftp",
        "postmaster",
        "hostmaster",
        "accounts",
    ] {
        assert_eq!(
            refuse(&with("subdomain", name)),
            ("subdomain", "subdomain is reserved".into()),
            "{name}"
        );
        let why = validate::subdomain(name).unwrap_err();
        assert_eq!(why.description, "subdomain is reserved");
    }
    assert_eq!(
        refuse(&with("subdomain", "_domainkey")).1,
        "subdomain may only contain letters a–z, digits 0–9 and '-'"
    );
}

/// Addresses close to the rule's edges: RFC specials, dots, hyphens, case, digits in the TLD.
fn edgy_email() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._%+!#$&'*/=?^`{|}~-]{1,30}@[a-zA-Z0-9._-]{1,30}\\.[a-zA-Z0-9-]{1,8}",
        "[a-zA-Z0-9._%+-]{1,70}@([a-zA-Z0-9-]{1,30}\\.){1,4}(xn--[a-z0-9]{1,6}|[a-zA-Z]{1,8})",
        "[ \t]?[a-zA-Z0-9._%+-]{1,20}@[a-zA-Z0-9-]{1,20}\\.[a-zA-Z]{2,6}[ \t\n]?",
        "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Issue 18: whatever the gateway accepts as an owner's email, the provisioner's Frappe side
    /// accepts too, unchanged — so no tenant is built only to fail at its owner step.
    #[test]
    fn every_email_signup_accepts_is_a_frappe_user_email(raw in edgy_email()) {
        if let Ok(input) = validate::signup(&with("email", &raw), &catalog()) {
            let email = input.email.as_str();
            let user = frappe::UserEmail::parse(email);
            prop_assert!(user.is_ok(), "{:?} → {:?}: {:?}", raw, email, user);
            let user = user.unwrap();
            prop_assert_eq!(user.as_str(), email);
            // And the owner's user id round-trips too.
            let id = frappe::UserId::parse(email).unwrap();
            prop_assert_eq!(id.as_str(), email);
        }
    }

    /// What signup accepts, it accepts again unchanged (the recorded email re-validates).
    #[test]
    fn accepted_emails_round_trip(raw in edgy_email()) {
        if let Ok(input) = validate::signup(&with("email", &raw), &catalog()) {
            let again = accept(&with("email", input.email.as_str()));
            prop_assert_eq!(again.email.as_str(), input.email.as_str());
        }
    }
}
