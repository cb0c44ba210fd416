//! gRPC server reflection: the standard `grpc.reflection.v1.ServerReflection` service, and its
//! predecessor `grpc.reflection.v1alpha.ServerReflection` that older tools still call, describing every
//! service this server serves, so that grpcurl, grpcui, Postman or `buf curl` can list, describe and
//! call them without a copy of the proto files.
//!
//! The descriptors are the committed ones: [`chitty_proto::FILE_DESCRIPTOR_SET`] for
//! `chittychat.v1.ChittyChat` (checked against the proto file by chitty-proto's bootstrap test) and
//! the one tonic-health ships for `grpc.health.v1.Health`; each reflection service adds its own. No
//! system `protoc` is involved.
//!
//! A reflection call is a bidirectional stream that tonic-reflection answers on a task of its own,
//! which ends when the client closes the stream or the connection closes. It is answered under the
//! same transport limits as every other call, each request in it refused past [`MAX_REQUEST_BYTES`] as
//! Chitty-Chat's are (a reflection request is a name, a few dozen bytes), and a client that holds one
//! open cannot hold shutdown beyond its backstop.

use tonic_reflection::server::{Builder, Error, v1, v1alpha};

use super::MAX_REQUEST_BYTES;

/// The encoded descriptor sets of every service the server serves besides reflection itself.
const SERVED_DESCRIPTOR_SETS: [&[u8]; 2] = [
    chitty_proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
];

/// A reflection builder that knows every service the server serves, and (by tonic-reflection's
/// default) the reflection service of the version it builds.
fn builder() -> Builder<'static> {
    SERVED_DESCRIPTOR_SETS
        .into_iter()
        .fold(Builder::configure(), |builder, descriptor_set| {
            builder.register_encoded_file_descriptor_set(descriptor_set)
        })
}

/// The v1 and v1alpha reflection services, or `None` for both when `enabled` is false, to add to the
/// router with `add_optional_service`; a server without them answers reflection calls `UNIMPLEMENTED`.
///
/// It fails only if a committed descriptor set does not decode, which the tests below rule out.
pub(super) fn services(
    enabled: bool,
) -> Result<
    (
        Option<v1::ServerReflectionServer<impl v1::ServerReflection>>,
        Option<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>>,
    ),
    Error,
> {
    if !enabled {
        return Ok((None, None));
    }
    Ok((
        Some(
            builder()
                .build_v1()?
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        ),
        Some(
            builder()
                .build_v1alpha()?
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::services;

    #[test]
    fn both_versions_build_from_the_committed_descriptor_sets() {
        let (v1, v1alpha) = services(true).expect("the committed descriptor sets decode");
        assert!(v1.is_some(), "got no v1 service, want one");
        assert!(v1alpha.is_some(), "got no v1alpha service, want one");
    }

    #[test]
    fn turned_off_there_is_no_reflection_service() {
        let (v1, v1alpha) = services(false).expect("nothing to build");
        assert!(v1.is_none(), "got a v1 service, want none");
        assert!(v1alpha.is_none(), "got a v1alpha service, want none");
    }
}
