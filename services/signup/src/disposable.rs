//! Disposable-address screening: a signup whose email is at a throw-away mail service is
//! refused (`DISPOSABLE_EMAIL` on the `email` field), so a site is not built for an inbox
//! nobody keeps. The list is the maintained `disposable-email-domains` one
//! (`data/disposable-domains.txt`, its provenance in the file's header).

use std::collections::HashSet;
use std::sync::LazyLock;

static DOMAINS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/disposable-domains.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// Whether mail to `email` goes to a disposable service: its domain, or a parent of it
/// (`x.mailinator.com`), is listed.
pub fn is_disposable(email: &str) -> bool {
    let Some((_, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut rest = domain.as_str();
    loop {
        if DOMAINS.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            // A bare TLD is never listed; stop before it.
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

/// How many domains the list holds (for the start-up log).
pub fn listed() -> usize {
    DOMAINS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_domains_and_their_subdomains_are_disposable() {
        assert!(is_disposable("x@mailinator.com"));
        assert!(is_disposable("x@MAILINATOR.com"));
        assert!(is_disposable("x@inbox.mailinator.com"));
        assert!(!is_disposable("ada@example.com"));
        assert!(!is_disposable("ada@gmail.com"));
        assert!(!is_disposable("not an email"));
        assert!(listed() > 100_000);
    }
}
