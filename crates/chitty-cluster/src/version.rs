//! Which nats-server versions cluster mode runs on.
//!
//! [`Cluster::connect`](crate::Cluster::connect) reads the version the server it connected to
//! announces, and refuses to go on with one older than [`OLDEST_NATS_SERVER`]
//! ([`ClusterError::ServerTooOld`]) or one it cannot read ([`ClusterError::ServerVersion`]): the
//! cluster relies on JetStream behaviour that older servers lack, and would otherwise fail later,
//! in ways far harder to trace. The test harness (`testing`, feature `testing`) applies the same
//! floor to the nats-server binary it finds, and skips instead of failing on an older one.
//!
//! Only the server the node first connects to is checked: the servers of one NATS cluster are
//! meant to run one version, and a node that fails over meets a server the operator chose in the
//! same way.
//!
//! # Versions
//!
//! A nats-server version is a semantic version: `2.15.1`, or a pre-release such as `2.11.0-RC.1`.
//! [`parse`] also takes the leading `v` that `nats-server --version` prints (`v2.12.3`). Versions
//! compare as semantic versions do, so a pre-release comes before its release: `2.11.0-RC.1`
//! counts as older than 2.11.0, and is refused. A release candidate may well carry what 2.11.0
//! brought, but only the release is promised to; `2.12.0-RC.1` and later pre-releases are above
//! the floor.

use semver::Version;

use crate::ClusterError;

/// The oldest nats-server cluster mode supports: 2.11.0, the first release that honours the publish
/// header `Nats-Expected-Last-Subject-Sequence-Subject`, on which the cluster's appends rely. A
/// pre-release of 2.11.0 counts as older (see "Versions" in the module documentation).
///
/// `scripts/nats-server.sh` (CI and the Docker end-to-end test) holds the same floor, as
/// `NATS_SERVER_OLDEST`; a test keeps the two equal.
pub const OLDEST_NATS_SERVER: Version = Version::new(2, 11, 0);

/// Why the floor is [`OLDEST_NATS_SERVER`], for error messages.
pub const WHY_OLDEST: &str = "cluster mode relies on the publish header \
    Nats-Expected-Last-Subject-Sequence-Subject, which nats-server added in 2.11.0";

/// Reads a nats-server version: `2.15.1`, `2.11.0-RC.1`, or `v2.12.3` as `nats-server --version`
/// prints it after `nats-server: `. Surrounding white space is ignored; anything else that is not a
/// semantic version is an error.
pub fn parse(text: &str) -> Result<Version, semver::Error> {
    let text = text.trim();
    let text = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    Version::parse(text)
}

/// Checks the version a nats-server announced (its `INFO`'s `version`): returns it if it is
/// [`OLDEST_NATS_SERVER`] or newer, [`ClusterError::ServerTooOld`] if it is older, and
/// [`ClusterError::ServerVersion`] if it does not parse.
pub fn check(announced: &str) -> Result<Version, ClusterError> {
    let found = parse(announced).map_err(|source| ClusterError::ServerVersion {
        found: announced.to_owned(),
        source,
    })?;
    if found < OLDEST_NATS_SERVER {
        return Err(ClusterError::ServerTooOld {
            found,
            oldest: OLDEST_NATS_SERVER,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_pre_releases_and_a_leading_v_parse() {
        for (text, want) in [
            ("2.15.1", (2, 15, 1, "")),
            ("2.11.0-RC.1", (2, 11, 0, "RC.1")),
            ("v2.12.3", (2, 12, 3, "")),
            (" 2.9.10\n", (2, 9, 10, "")),
            ("2.10.0-beta.45", (2, 10, 0, "beta.45")),
        ] {
            let got =
                parse(text).unwrap_or_else(|error| panic!("{text:?} does not parse: {error}"));
            let got = (got.major, got.minor, got.patch, got.pre.as_str());
            assert_eq!(got, want, "parsing {text:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "v",
            "nats-server: v2.15.1",
            "2.15",
            "2",
            "2.x.1",
            "2.15.1.4",
            "-2.15.1",
            "2.15.1 beta",
            "99999999999999999999999.0.0",
        ] {
            assert!(
                parse(text).is_err(),
                "{text:?} parsed as {:?}, want an error",
                parse(text)
            );
        }
    }

    #[test]
    fn the_floor_and_newer_pass_and_older_is_refused_with_both_versions() {
        for passes in [
            "2.11.0",
            "2.11.1",
            "2.12.0-RC.1",
            "2.15.1",
            "v2.15.1",
            "3.0.0",
        ] {
            let got = check(passes);
            assert!(got.is_ok(), "{passes}: got {got:?}, want it supported");
        }
        for (older, found) in [
            ("2.9.10", Version::new(2, 9, 10)),
            ("2.10.29", Version::new(2, 10, 29)),
            ("1.99.99", Version::new(1, 99, 99)),
        ] {
            match check(older) {
                Err(ClusterError::ServerTooOld { found: got, oldest }) => {
                    assert_eq!(got, found, "{older}: the version found");
                    assert_eq!(oldest, OLDEST_NATS_SERVER, "{older}: the floor");
                }
                other => panic!("{older}: got {other:?}, want ServerTooOld"),
            }
        }
    }

    #[test]
    fn a_pre_release_of_the_floor_counts_as_older() {
        for pre_release in ["2.11.0-RC.1", "2.11.0-beta.2", "2.11.0-preview.1"] {
            let got = check(pre_release);
            assert!(
                matches!(got, Err(ClusterError::ServerTooOld { .. })),
                "{pre_release}: got {got:?}, want ServerTooOld"
            );
        }
    }

    #[test]
    fn an_unreadable_version_is_refused_saying_what_was_announced() {
        let got = check("not a version");
        match &got {
            Err(ClusterError::ServerVersion { found, .. }) => assert_eq!(found, "not a version"),
            other => panic!("got {other:?}, want ServerVersion"),
        }
        let message = got.unwrap_err().to_string();
        assert!(
            message.contains("\"not a version\""),
            "got {message:?}, want it to quote the version"
        );
    }

    #[test]
    fn the_message_says_what_was_found_the_floor_and_why() {
        let message = check("2.9.10").unwrap_err().to_string();
        for part in [
            "2.9.10",
            "2.11.0",
            "Nats-Expected-Last-Subject-Sequence-Subject",
        ] {
            assert!(
                message.contains(part),
                "got {message:?}, want it to mention {part}"
            );
        }
        assert!(!message.contains('\n'), "got {message:?}, want one line");
    }

    #[test]
    fn the_scripts_hold_the_same_floor() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/nats-server.sh");
        let text = std::fs::read_to_string(script)
            .unwrap_or_else(|error| panic!("cannot read {script}: {error}"));
        let want = format!("NATS_SERVER_OLDEST={OLDEST_NATS_SERVER}");
        assert!(
            text.lines().any(|line| line.trim() == want),
            "{script} does not set {want}: the scripts and the product must agree on the oldest nats-server"
        );
    }
}
