//! The `Social Login Key` doctype as frappe 15 defines it
//! (`frappe/integrations/doctype/social_login_key`, module Integrations): its fields, naming,
//! defaults and the checks a real `insert`/`save` runs, in the same order — the controller's
//! `validate()` first, then the base document's mandatory, select, length and set-only-once
//! checks — so the first error a client sees is the one a real bench would report.
//!
//! Not modelled: frappe keeps `client_secret` Fernet-encrypted in `__Auth` (and writes an
//! `encryption_key` into site_config.json on first use); the sim keeps it in clear text in its
//! own `__Auth` table, where tests read it back.

use serde_json::{Map, Value, json};

/// The doctype's name.
pub const DOCTYPE: &str = "Social Login Key";

/// The one Password field: its value lives in `__Auth`; the document holds a mask.
pub const SECRET_FIELD: &str = "client_secret";

/// Where frappe defines the controller's exception classes.
const MODULE: &str = "frappe.integrations.doctype.social_login_key.social_login_key";

const PROVIDERS: &[&str] = &[
    "Custom",
    "Facebook",
    "Frappe",
    "GitHub",
    "Google",
    "Office 365",
    "Salesforce",
    "fairlogin",
];
const SIGN_UPS: &[&str] = &["", "Allow", "Deny"];

/// Data and Select columns are `varchar(140)` in frappe 15.
const VARCHAR_LEN: usize = 140;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Check,
    Select(&'static [&'static str]),
    Password,
    Code,
}

struct Field {
    name: &'static str,
    label: &'static str,
    kind: Kind,
}

/// The doctype's value fields in frappe's `field_order` (layout breaks left out).
const FIELDS: &[Field] = &[
    Field {
        name: "enable_social_login",
        label: "Enable Social Login",
        kind: Kind::Check,
    },
    Field {
        name: "social_login_provider",
        label: "Social Login Provider",
        kind: Kind::Select(PROVIDERS),
    },
    Field {
        name: "client_id",
        label: "Client ID",
        kind: Kind::Data,
    },
    Field {
        name: "provider_name",
        label: "Provider Name",
        kind: Kind::Data,
    },
    Field {
        name: SECRET_FIELD,
        label: "Client Secret",
        kind: Kind::Password,
    },
    Field {
        name: "icon",
        label: "Icon",
        kind: Kind::Data,
    },
    Field {
        name: "base_url",
        label: "Base URL",
        kind: Kind::Data,
    },
    Field {
        name: "sign_ups",
        label: "Sign ups",
        kind: Kind::Select(SIGN_UPS),
    },
    Field {
        name: "authorize_url",
        label: "Authorize URL",
        kind: Kind::Data,
    },
    Field {
        name: "access_token_url",
        label: "Access Token URL",
        kind: Kind::Data,
    },
    Field {
        name: "redirect_url",
        label: "Redirect URL",
        kind: Kind::Data,
    },
    Field {
        name: "api_endpoint",
        label: "API Endpoint",
        kind: Kind::Data,
    },
    Field {
        name: "custom_base_url",
        label: "Custom Base URL",
        kind: Kind::Check,
    },
    Field {
        name: "api_endpoint_args",
        label: "API Endpoint Args",
        kind: Kind::Code,
    },
    Field {
        name: "auth_url_data",
        label: "Auth URL Data",
        kind: Kind::Code,
    },
    Field {
        name: "user_id_property",
        label: "User ID Property",
        kind: Kind::Data,
    },
];

/// Fields marked `set_only_once` in the doctype JSON.
const SET_ONLY_ONCE: &[&str] = &["social_login_provider", "provider_name"];

/// Why frappe refuses a document: the HTTP status, the exception raised and what the user was
/// shown (`_server_messages`), which differs from the exception's text for `MandatoryError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status (417 for every `ValidationError`).
    pub status: u16,
    /// The exception class as Python names it, e.g. `frappe.exceptions.MandatoryError`.
    pub class: String,
    /// The exception's own text.
    pub text: String,
    /// What `msgprint` showed.
    pub shown: String,
}

/// `frappe.throw(msg, exc=class)`: the message is both shown and the exception's text.
fn thrown(class: &str, msg: String) -> Rejection {
    Rejection {
        status: 417,
        class: class.to_owned(),
        text: msg.clone(),
        shown: msg,
    }
}

/// `frappe.scrub`: `Office 365` → `office_365`, `My-IdP` → `my_idp`.
pub fn scrub(txt: &str) -> String {
    txt.replace([' ', '-'], "_").to_lowercase()
}

fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// frappe's `cint`: numbers truncate, numeric strings parse, anything else is 0.
fn cint(v: &Value) -> i64 {
    match v {
        Value::Bool(b) => i64::from(*b),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .unwrap_or(0),
        Value::String(s) => s.trim().parse::<f64>().map_or(0, |f| f.trunc() as i64),
        _ => 0,
    }
}

/// `cstr`: None → "", anything else as text.
fn cstr(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A value as the column would hold it. Objects and arrays never reach a column: pymysql
/// refuses them, so frappe answers 500.
fn coerce(f: &Field, v: &Value) -> Result<Value, Rejection> {
    Ok(match (f.kind, v) {
        (Kind::Check, v) => json!(cint(v)),
        (_, Value::Null | Value::String(_)) => v.clone(),
        (_, Value::Bool(_) | Value::Number(_)) => json!(v.to_string()),
        (_, Value::Object(_) | Value::Array(_)) => {
            let kind = if v.is_object() { "dict" } else { "list" };
            return Err(Rejection {
                status: 500,
                class: "TypeError".to_owned(),
                text: format!("{kind} can not be used as parameter"),
                shown: String::new(),
            });
        }
    })
}

/// Sets the doctype's fields present in `params` (others are not columns, so frappe drops
/// them; `name`, `doctype` and the standard fields are not the client's to set).
pub fn apply(doc: &mut Map<String, Value>, params: &Map<String, Value>) -> Result<(), Rejection> {
    for (k, v) in params {
        if let Some(f) = field(k) {
            doc.insert(k.clone(), coerce(f, v)?);
        }
    }
    Ok(())
}

/// A new document from a POST body: every field, the doctype's defaults where the body gave
/// none (`_set_defaults` fills what is `None`).
pub fn new_doc(params: &Map<String, Value>) -> Result<Map<String, Value>, Rejection> {
    let mut doc = Map::new();
    for f in FIELDS {
        doc.insert(f.name.to_owned(), Value::Null);
    }
    apply(&mut doc, params)?;
    for (k, default) in [
        ("enable_social_login", json!(0)),
        ("custom_base_url", json!(0)),
        ("social_login_provider", json!("Custom")),
    ] {
        if doc.get(k).is_none_or(Value::is_null) {
            doc.insert(k.to_owned(), default);
        }
    }
    Ok(doc)
}

/// `autoname()`: `frappe.scrub(provider_name)`; without a provider name frappe falls back to a
/// random hash (and the mandatory check then refuses the document).
pub fn autoname(doc: &Map<String, Value>) -> Option<String> {
    let name = scrub(&cstr(doc.get("provider_name")));
    (!name.is_empty()).then_some(name)
}

/// Python truthiness of a text field: `None` and `""` are false, `" "` is true.
fn blank(doc: &Map<String, Value>, f: &str) -> bool {
    cstr(doc.get(f)).is_empty()
}

fn checked(doc: &Map<String, Value>, f: &str) -> bool {
    doc.get(f).is_some_and(|v| cint(v) != 0)
}

/// What insert/save check, in frappe's order. `before` is the stored document on save (for the
/// set-only-once fields). May set `icon` and normalise Select values, as frappe does.
pub fn validate(
    doc: &mut Map<String, Value>,
    name: &str,
    before: Option<&Map<String, Value>>,
) -> Result<(), Rejection> {
    // SocialLoginKey.validate(): set_icon() keys on provider_name, not social_login_provider.
    let icon = match cstr(doc.get("provider_name")).as_str() {
        "Google" => Some("google.svg"),
        "Frappe" => Some("frappe.svg"),
        "Facebook" => Some("facebook.svg"),
        "Office 365" => Some("office_365.svg"),
        "GitHub" => Some("github.svg"),
        "Salesforce" => Some("salesforce.svg"),
        "fairlogin" => Some("fair.svg"),
        _ => None,
    };
    if let Some(file) = icon {
        doc.insert(
            "icon".to_owned(),
            json!(format!("/assets/frappe/icons/social/{file}")),
        );
    }
    // The URL checks apply to every provider: frappe fills them in from its presets on the
    // client side, not in validate().
    let controller_checks: [(bool, &str, &str); 6] = [
        (
            checked(doc, "custom_base_url") && blank(doc, "base_url"),
            "BaseUrlNotSetError",
            "Please enter Base URL",
        ),
        (
            blank(doc, "authorize_url"),
            "AuthorizeUrlNotSetError",
            "Please enter Authorize URL",
        ),
        (
            blank(doc, "access_token_url"),
            "AccessTokenUrlNotSetError",
            "Please enter Access Token URL",
        ),
        (
            blank(doc, "redirect_url"),
            "RedirectUrlNotSetError",
            "Please enter Redirect URL",
        ),
        (
            checked(doc, "enable_social_login") && blank(doc, "client_id"),
            "ClientIDNotSetError",
            "Please enter Client ID before social login is enabled",
        ),
        (
            checked(doc, "enable_social_login") && blank(doc, SECRET_FIELD),
            "ClientSecretNotSetError",
            "Please enter Client Secret before social login is enabled",
        ),
    ];
    if let Some((_, class, msg)) = controller_checks.iter().find(|(fails, ..)| *fails) {
        return Err(thrown(&format!("{MODULE}.{class}"), (*msg).to_owned()));
    }
    // _validate_mandatory: provider_name is the only reqd field; blank after stripping counts
    // as missing.
    if cstr(doc.get("provider_name")).trim().is_empty() {
        return Err(Rejection {
            status: 417,
            class: "frappe.exceptions.MandatoryError".to_owned(),
            text: format!("[{DOCTYPE}, {name}]: provider_name"),
            shown: format!("Error: Value missing for {DOCTYPE}: Provider Name"),
        });
    }
    // _validate_selects: strips the value, then it must be one of the options. The message
    // starts with the (empty) row prefix, hence the leading space.
    for f in FIELDS {
        let Kind::Select(options) = f.kind else {
            continue;
        };
        let value = cstr(doc.get(f.name)).trim().to_owned();
        doc.insert(f.name.to_owned(), json!(value));
        if !options.contains(&value.as_str()) {
            return Err(thrown(
                "frappe.exceptions.ValidationError",
                format!(
                    " {} cannot be \"{value}\". It should be one of \"{}\"",
                    f.label,
                    options.join("\", \"")
                ),
            ));
        }
    }
    // _validate_length: varchar columns.
    for f in FIELDS {
        if !matches!(f.kind, Kind::Data | Kind::Select(_)) {
            continue;
        }
        let value = cstr(doc.get(f.name));
        if value.chars().count() > VARCHAR_LEN {
            return Err(thrown(
                "frappe.exceptions.CharacterLengthExceededError",
                format!(
                    "{DOCTYPE} {name}: '<strong>{}</strong>' ({value}) will get truncated, as max characters allowed is {VARCHAR_LEN}",
                    f.label
                ),
            ));
        }
    }
    // validate_set_only_once (save only).
    if let Some(before) = before {
        for f in SET_ONLY_ONCE {
            if doc.get(*f) != before.get(*f) {
                let label = field(f).map_or(*f, |d| d.label);
                return Err(thrown(
                    "frappe.exceptions.CannotChangeConstantError",
                    format!("Value cannot be changed for <strong>{label}</strong>"),
                ));
            }
        }
    }
    Ok(())
}

/// What `_save_passwords` does with the secret.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretChange {
    /// A mask (only `*`) came back: the stored secret stays.
    Keep,
    /// A new secret: store it; the document now holds `*` × its length.
    Set(String),
    /// Empty: the stored secret is removed.
    Remove,
}

/// Takes the secret out of the document, leaving the mask frappe stores in its place.
pub fn take_secret(doc: &mut Map<String, Value>) -> SecretChange {
    let value = cstr(doc.get(SECRET_FIELD));
    if value.is_empty() {
        SecretChange::Remove
    } else if value.chars().all(|c| c == '*') {
        SecretChange::Keep
    } else {
        doc.insert(
            SECRET_FIELD.to_owned(),
            json!("*".repeat(value.chars().count())),
        );
        SecretChange::Set(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authentik() -> Map<String, Value> {
        let params = json!({
            "provider_name": "Authentik",
            "enable_social_login": 1,
            "client_id": "cid",
            "client_secret": "s3cret",
            "base_url": "https://auth.example.com",
            "authorize_url": "/application/o/authorize/",
            "access_token_url": "/application/o/token/",
            "redirect_url": "/api/method/frappe.integrations.oauth2_logins.custom/authentik",
            "api_endpoint": "/application/o/userinfo/",
            "auth_url_data": "{\"response_type\": \"code\", \"scope\": \"openid email profile\"}",
            "bogus": "dropped",
        });
        new_doc(params.as_object().unwrap()).unwrap()
    }

    #[test]
    fn scrub_matches_frappe() {
        assert_eq!(scrub("Authentik"), "authentik");
        assert_eq!(scrub("Office 365"), "office_365");
        assert_eq!(scrub("My-Provider X"), "my_provider_x");
        assert_eq!(scrub("fairlogin"), "fairlogin");
        assert_eq!(scrub(""), "");
    }

    #[test]
    fn new_doc_fills_defaults_and_drops_unknown_fields() {
        let doc = authentik();
        assert_eq!(doc["social_login_provider"], json!("Custom"));
        assert_eq!(doc["custom_base_url"], json!(0));
        assert_eq!(doc["enable_social_login"], json!(1));
        assert_eq!(doc["user_id_property"], Value::Null);
        assert!(!doc.contains_key("bogus"));
        assert_eq!(autoname(&doc).as_deref(), Some("authentik"));
        let doc = new_doc(
            json!({"enable_social_login": "1", "provider_name": 7})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(doc["enable_social_login"], json!(1));
        assert_eq!(doc["provider_name"], json!("7"));
        let err = new_doc(json!({"auth_url_data": {"a": 1}}).as_object().unwrap()).unwrap_err();
        assert_eq!(err.status, 500);
    }

    #[test]
    fn validate_runs_in_frappes_order() {
        let mut doc = authentik();
        validate(&mut doc, "authentik", None).unwrap();
        assert_eq!(doc["sign_ups"], json!(""), "selects are normalised");

        // Controller checks come before the mandatory check.
        let mut doc = new_doc(&Map::new()).unwrap();
        let err = validate(&mut doc, "abc123", None).unwrap_err();
        assert_eq!(
            (err.status, err.text.as_str()),
            (417, "Please enter Authorize URL")
        );
        assert!(err.class.ends_with(".AuthorizeUrlNotSetError"));

        let mut doc = authentik();
        doc.insert(SECRET_FIELD.into(), Value::Null);
        let err = validate(&mut doc, "authentik", None).unwrap_err();
        assert_eq!(
            err.text,
            "Please enter Client Secret before social login is enabled"
        );

        let mut doc = authentik();
        doc.insert("provider_name".into(), json!("  "));
        let err = validate(&mut doc, "0a1b2c3d4e", None).unwrap_err();
        assert_eq!(err.class, "frappe.exceptions.MandatoryError");
        assert_eq!(err.text, "[Social Login Key, 0a1b2c3d4e]: provider_name");
        assert_eq!(
            err.shown,
            "Error: Value missing for Social Login Key: Provider Name"
        );

        let mut doc = authentik();
        doc.insert("social_login_provider".into(), json!("Okta"));
        let err = validate(&mut doc, "authentik", None).unwrap_err();
        assert_eq!(err.class, "frappe.exceptions.ValidationError");
        assert!(
            err.text
                .starts_with(" Social Login Provider cannot be \"Okta\"")
        );

        let mut doc = authentik();
        doc.insert("client_id".into(), json!("x".repeat(141)));
        let err = validate(&mut doc, "authentik", None).unwrap_err();
        assert_eq!(err.class, "frappe.exceptions.CharacterLengthExceededError");

        let before = {
            let mut d = authentik();
            validate(&mut d, "authentik", None).unwrap();
            d
        };
        let mut doc = before.clone();
        doc.insert("provider_name".into(), json!("Other"));
        let err = validate(&mut doc, "authentik", Some(&before)).unwrap_err();
        assert_eq!(err.class, "frappe.exceptions.CannotChangeConstantError");
        assert_eq!(
            err.text,
            "Value cannot be changed for <strong>Provider Name</strong>"
        );
    }

    #[test]
    fn set_icon_keys_on_the_provider_name() {
        let mut doc = authentik();
        doc.insert("provider_name".into(), json!("GitHub"));
        validate(&mut doc, "github", None).unwrap();
        assert_eq!(doc["icon"], json!("/assets/frappe/icons/social/github.svg"));
    }

    #[test]
    fn secrets_are_masked_kept_or_removed() {
        let mut doc = authentik();
        assert_eq!(take_secret(&mut doc), SecretChange::Set("s3cret".into()));
        assert_eq!(doc[SECRET_FIELD], json!("******"));
        assert_eq!(take_secret(&mut doc), SecretChange::Keep);
        doc.insert(SECRET_FIELD.into(), json!(""));
        assert_eq!(take_secret(&mut doc), SecretChange::Remove);
    }
}
