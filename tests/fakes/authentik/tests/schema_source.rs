//! The checked-in schema subset was extracted from the checked-in Authentik schema, so the fake
//! cannot drift from the contract without this failing (re-run `schema/extract.py`).

use sha2::{Digest, Sha256};

#[test]
fn the_subset_comes_from_the_schema_beside_the_contract() {
    let full = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/authentik/authentik-schema.yml"
    ))
    .expect("tests/fixtures/authentik/authentik-schema.yml");
    let digest = hex::encode(Sha256::digest(&full));
    let subset = authentik_fake::schema_subset();
    assert_eq!(
        subset["x-source-sha256"].as_str(),
        Some(digest.as_str()),
        "the subset is stale: run python3 tests/fakes/authentik/schema/extract.py"
    );
    // The shapes the identity service relies on are in it.
    for component in [
        "OAuth2ProviderRequest",
        "GroupRequest",
        "UserRequest",
        "ApplicationRequest",
        "PolicyBindingRequest",
        "PaginatedGroupList",
    ] {
        assert!(
            subset["components"]["schemas"][component].is_object(),
            "{component} missing from the subset"
        );
    }
}
