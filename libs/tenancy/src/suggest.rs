//! Subdomain suggestions for the signup form and `CheckSubdomain`.

use crate::Subdomain;

/// Suggests a subdomain from an organisation's name: "Acme Corp" → `acme-corp`,
/// "Müller & Söhne GmbH" → `muller-sohne-gmbh`.
///
/// Common Latin accents are transliterated, everything else that is not `a-z0-9` becomes a
/// single `-`, the result is cut to 63 characters, names shorter than 3 are padded with `-co`,
/// and a reserved result gets `-co` appended (`Admin` → `admin-co`). Returns `None` when nothing
/// usable is left (e.g. a name in a non-Latin script). Whether the name is free is for the
/// caller to check, see [`suggest_alternatives`].
pub fn suggest_subdomain(organisation: &str) -> Option<Subdomain> {
    let mut slug = String::with_capacity(organisation.len());
    for c in organisation.chars().flat_map(char::to_lowercase) {
        match transliterate(c) {
            Some(t) => slug.push_str(t),
            None if c.is_ascii_alphanumeric() => slug.push(c),
            // Separators of any kind become one hyphen; doubled ones are collapsed below.
            None => slug.push('-'),
        }
    }
    let mut slug = collapse_hyphens(&slug);
    if slug.is_empty() {
        return None;
    }
    truncate(&mut slug, Subdomain::MAX_LEN);
    if slug.len() < Subdomain::MIN_LEN {
        slug.push_str("-co");
    }
    if let Ok(s) = Subdomain::parse(&slug) {
        return Some(s);
    }
    // Most likely reserved ("Admin", "Support"): make it the organisation's own.
    truncate(&mut slug, Subdomain::MAX_LEN - 3);
    Subdomain::parse(&format!("{slug}-co")).ok()
}

/// Up to `n` alternatives for a taken subdomain: `acme-corp-2`, `acme-corp-3`, … Each is
/// valid (the base is shortened to fit 63 characters); availability is the caller's check.
pub fn suggest_alternatives(taken: &Subdomain, n: usize) -> Vec<Subdomain> {
    // Bounded: a long name cut to make room for its suffix can come out as the taken name
    // itself (`…-2` cut and suffixed again), which is skipped, so look a little further.
    (2..n + 3)
        .filter_map(|i: usize| {
            let suffix = format!("-{i}");
            let mut base = taken.as_str().to_owned();
            truncate(&mut base, Subdomain::MAX_LEN - suffix.len());
            Subdomain::parse(&format!("{base}{suffix}")).ok()
        })
        .filter(|candidate| candidate != taken)
        .take(n)
        .collect()
}

/// Joins runs of `-` into one and drops them at both ends (so no `--` can appear anywhere,
/// which also rules out the punycode `xn--` form).
fn collapse_hyphens(s: &str) -> String {
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Cuts an ASCII slug to at most `max` bytes and removes a hyphen left at the end.
fn truncate(slug: &mut String, max: usize) {
    slug.truncate(max);
    while slug.ends_with('-') {
        slug.pop();
    }
}

/// ASCII for common accented Latin letters (lowercase input); `None` for everything else.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suggest(org: &str) -> Option<String> {
        suggest_subdomain(org).map(Subdomain::into_string)
    }

    #[test]
    fn suggestions_from_organisation_names() {
        assert_eq!(suggest("Acme Corp").as_deref(), Some("acme-corp"));
        assert_eq!(
            suggest("Müller & Söhne GmbH").as_deref(),
            Some("muller-sohne-gmbh")
        );
        assert_eq!(
            suggest("  O'Brien, Smith & Co. ").as_deref(),
            Some("o-brien-smith-co")
        );
        assert_eq!(
            suggest("Ærøskøbing Œuvre").as_deref(),
            Some("aeroskobing-oeuvre")
        );
        assert_eq!(suggest("Straße 42").as_deref(), Some("strasse-42"));
        assert_eq!(suggest("XN--Evil").as_deref(), Some("xn-evil"));
    }

    #[test]
    fn short_reserved_and_unusable_names() {
        assert_eq!(suggest("AB").as_deref(), Some("ab-co"));
        assert_eq!(suggest("Q").as_deref(), Some("q-co"));
        assert_eq!(suggest("Admin").as_deref(), Some("admin-co"));
        assert_eq!(suggest("WWW").as_deref(), Some("www-co"));
        assert_eq!(suggest("株式会社"), None);
        assert_eq!(suggest(" -- & -- "), None);
        assert_eq!(suggest(""), None);
    }

    #[test]
    fn long_names_are_cut_to_a_label() {
        let s = suggest(&"Very Long Name ".repeat(10)).unwrap();
        assert!(s.len() <= 63 && !s.ends_with('-'), "{s}");
        assert!(Subdomain::parse(&s).is_ok());
    }

    #[test]
    fn alternatives_count_up_and_stay_valid() {
        let taken = Subdomain::parse("acme-corp").unwrap();
        let alts: Vec<String> = suggest_alternatives(&taken, 3)
            .into_iter()
            .map(Subdomain::into_string)
            .collect();
        assert_eq!(alts, ["acme-corp-2", "acme-corp-3", "acme-corp-4"]);
        let long = Subdomain::parse(&"a".repeat(63)).unwrap();
        let alts = suggest_alternatives(&long, 12);
        assert_eq!(alts.len(), 12);
        assert!(alts.iter().all(|a| a.as_str().len() <= 63));
        assert_eq!(alts[10].as_str(), format!("{}-12", "a".repeat(60)));
        assert!(suggest_alternatives(&taken, 0).is_empty());
    }
}
