//! The wire vocabulary outside the messages: the metadata keys of the contract, and the form of their
//! values. The service writes them and the participant reads them (and the other way round for
//! `authorization`), so both take them from here.

/// The request metadata key that carries the session token, as `Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// What comes before the session token in the `authorization` value.
pub const BEARER_PREFIX: &str = "Bearer ";

/// The status metadata key in which every refusal and every stream's end carries the service's Lamport
/// time (a decimal number), for the caller to witness.
pub const LAMPORT: &str = "lamport";

/// On `RESOURCE_EXHAUSTED` from a rate limit, the status metadata key with how many milliseconds to wait
/// before publishing again.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// On `OUT_OF_RANGE`, the status metadata key with the oldest seq the service still holds.
pub const FIRST_HELD_SEQ: &str = "first-held-seq";

/// On `OUT_OF_RANGE`, the status metadata key with the newest seq.
pub const LAST_SEQ: &str = "last-seq";

/// The `authorization` value that carries `token`.
pub fn bearer(token: &str) -> String {
    format!("{BEARER_PREFIX}{token}")
}

/// The session token in an `authorization` value, if it has the `Bearer ` form and a token.
pub fn token_of(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix(BEARER_PREFIX)
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_value_carries_its_token_back() {
        assert_eq!(token_of(&bearer("abc")), Some("abc"));
        assert_eq!(token_of("Bearer "), None, "no token");
        assert_eq!(token_of("Basic abc"), None, "not a bearer");
    }
}
