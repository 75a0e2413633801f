//! `schema.graphql` is what `gantry schema` prints; a stale copy fails here.

#[tokio::test]
async fn schema_graphql_is_the_current_api_schema() {
    let common =
        crate::helpers::settings(std::path::Path::new("/nonexistent"), "sqlite::memory:", &[]);
    let current = gantry::commands::schema::api_sdl(&common).await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql` and commit it"
    );
    for field in [
        "feed(first: Int = 20, after: String): PostConnection!",
        "register(input: RegisterInput!): AuthPayload!",
    ] {
        assert!(
            current.contains(field),
            "{field} missing from the API schema"
        );
    }
    assert!(
        !current.contains("join__"),
        "federation internals leak into the API schema"
    );
    assert!(
        !current.contains("_entities"),
        "federation internals leak into the API schema"
    );
}
