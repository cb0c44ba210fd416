//! [`Cluster::connect`] against a server that announces a version it must refuse. The server is a
//! stand-in that only lets a client connect (`chitty_cluster::testing::VersionOnlyServer`), so these
//! tests need no nats-server and never skip.

use std::time::Duration;

use chitty_cluster::testing::VersionOnlyServer;
use chitty_cluster::version::OLDEST_NATS_SERVER;
use chitty_cluster::{Cluster, ClusterConfig, ClusterError};

/// The bound on each connect: generous against the 1 s the configuration allows.
const WAIT: Duration = Duration::from_secs(15);

/// Connects a node to a stand-in server announcing `version`, and returns the error it must fail with.
async fn connect_to(version: &str) -> ClusterError {
    let server = VersionOnlyServer::start(version)
        .await
        .expect("the stand-in server listens");
    let mut config = ClusterConfig::new(vec![server.url()], "node-1");
    config.timeout = Duration::from_secs(1);
    match tokio::time::timeout(WAIT, Cluster::connect(config)).await {
        Err(_) => panic!("connecting to a server announcing {version} took over {WAIT:?}"),
        Ok(Ok(_)) => panic!("connected to a stand-in that answers no JetStream request"),
        Ok(Err(error)) => error,
    }
}

#[tokio::test]
async fn a_nats_server_older_than_the_floor_is_refused_saying_which_versions_and_why() {
    let error = connect_to("2.9.10").await;
    match &error {
        ClusterError::ServerTooOld { found, oldest } => {
            assert_eq!(found, &semver::Version::new(2, 9, 10), "the version found");
            assert_eq!(oldest, &OLDEST_NATS_SERVER, "the oldest supported");
        }
        other => panic!("got {other:?}, want ServerTooOld"),
    }
    assert!(
        !error.is_transient(),
        "an old server does not pass by trying again"
    );
    assert_eq!(
        error.to_string(),
        "nats-server 2.9.10 is older than 2.11.0, the oldest supported: cluster mode relies on the \
         publish header Nats-Expected-Last-Subject-Sequence-Subject, which nats-server added in 2.11.0"
    );
}

#[tokio::test]
async fn a_release_candidate_of_the_floor_is_refused() {
    let error = connect_to("2.11.0-RC.1").await;
    assert!(
        matches!(&error, ClusterError::ServerTooOld { found, .. } if found.to_string() == "2.11.0-RC.1"),
        "got {error:?}, want ServerTooOld 2.11.0-RC.1"
    );
}

#[tokio::test]
async fn a_version_that_does_not_parse_is_refused_quoting_it() {
    let error = connect_to("two point nine").await;
    assert!(
        matches!(&error, ClusterError::ServerVersion { found, .. } if found == "two point nine"),
        "got {error:?}, want ServerVersion"
    );
    assert!(!error.is_transient(), "an unknown version stays unknown");
}

#[tokio::test]
async fn a_supported_version_gets_past_the_check() {
    // The stand-in answers no JetStream request, so the connect then fails creating the stream.
    for version in ["2.11.0", "2.15.1"] {
        let error = connect_to(version).await;
        assert!(
            !matches!(
                error,
                ClusterError::ServerTooOld { .. } | ClusterError::ServerVersion { .. }
            ),
            "{version}: got {error:?}, want a failure after the version check"
        );
    }
}
