//! Requests the gateway cannot decode are the caller's mistake: bytes that are not the method's
//! protobuf message answer INVALID_ARGUMENT ("the request is not a valid SignupRequest protobuf
//! message") and a message over 64 KiB RESOURCE_EXHAUSTED ("the request is N bytes; at most
//! 65536 are accepted") — never tonic's own INTERNAL or a bare OUT_OF_RANGE, on either port
//! and over grpc-web too. The answers never echo what was sent.

mod common;

use bytes::{Buf as _, BufMut as _, Bytes};
use common::*;
use http::uri::PathAndQuery;
use prost::Message as _;
use proto::v1::{CheckSubdomainRequest, SuspendTenantRequest};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Sends and receives raw bytes: what a broken or hostile client puts on the wire.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn channel(endpoint: String) -> Channel {
    Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .expect("signup reachable")
}

/// `bytes` as the request message of unary method `path`.
async fn unary(
    channel: &Channel,
    path: &'static str,
    request: tonic::Request<Bytes>,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    grpc.unary(request, PathAndQuery::from_static(path), Raw)
        .await
        .map(tonic::Response::into_inner)
}

/// `bytes` as the request message of server-streaming method `path`.
async fn streaming(channel: &Channel, path: &'static str, bytes: Bytes) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    match grpc
        .server_streaming(
            tonic::Request::new(bytes),
            PathAndQuery::from_static(path),
            Raw,
        )
        .await
    {
        Err(status) => status,
        Ok(response) => match response.into_inner().message().await {
            Err(status) => status,
            Ok(m) => panic!("{path} answered {m:?} to bytes that are not its request"),
        },
    }
}

/// Not protobuf SignupRequests, each differently: field 1 (`email`, a string) as a varint; a
/// string that is not UTF-8; a length running past the end; a field number 0. The marker
/// bytes must never come back in an answer.
fn not_signup_requests() -> Vec<Bytes> {
    vec![
        Bytes::from_static(&[0x08, 0x01]),
        Bytes::from_static(b"\x0a\x04\xffMRK"),
        Bytes::from_static(b"\x0a\x40MRK"),
        Bytes::from_static(&[0x00, 0x01]),
    ]
}

fn assert_not_valid(status: &Status, message: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        format!("the request is not a valid {message} protobuf message"),
        "{status:?}"
    );
    assert!(!status.message().contains("MRK"), "{status:?}");
    assert!(status.details().is_empty(), "{status:?}");
}

#[tokio::test]
async fn bytes_that_are_not_the_request_message_are_invalid_argument_on_both_ports() {
    let stack = spawn_stack().await;
    let public = channel(stack.endpoint()).await;
    for bytes in not_signup_requests() {
        let status = unary(
            &public,
            "/tenantry.v1.SignupService/Signup",
            tonic::Request::new(bytes.clone()),
        )
        .await
        .expect_err("not a SignupRequest");
        assert_not_valid(&status, "SignupRequest");
    }
    // CheckSubdomainRequest's field 1 is a string too.
    let status = unary(
        &public,
        "/tenantry.v1.SignupService/CheckSubdomain",
        tonic::Request::new(Bytes::from_static(&[0x08, 0x01])),
    )
    .await
    .expect_err("not a CheckSubdomainRequest");
    assert_not_valid(&status, "CheckSubdomainRequest");
    // A server stream decodes its request before answering too.
    let status = streaming(
        &public,
        "/tenantry.v1.SignupService/WatchSignup",
        Bytes::from_static(&[0x08, 0x01]),
    )
    .await;
    assert_not_valid(&status, "WatchSignupRequest");

    // The operator port: an authorized operator's broken request.
    let operator = channel(stack.operator_endpoint()).await;
    let status = unary(
        &operator,
        "/tenantry.v1.TenantAdmin/SuspendTenant",
        authorized(Bytes::from_static(&[0x08, 0x01])),
    )
    .await
    .expect_err("not a SuspendTenantRequest");
    assert_not_valid(&status, "SuspendTenantRequest");

    // A valid message still works after all that, on the same connection.
    let valid = CheckSubdomainRequest {
        subdomain: format!("free-{}", tag()),
        organisation: String::new(),
    };
    let answer = unary(
        &public,
        "/tenantry.v1.SignupService/CheckSubdomain",
        tonic::Request::new(valid.encode_to_vec().into()),
    )
    .await
    .expect("a valid CheckSubdomainRequest");
    let answer = proto::v1::CheckSubdomainResponse::decode(answer).expect("a response");
    assert!(answer.valid && answer.available, "{answer:?}");
}

#[tokio::test]
async fn a_request_over_64_kib_is_resource_exhausted() {
    let stack = spawn_stack().await;
    let mut request = request(&tag());
    request.full_name = "J".repeat(100 * 1024);
    let size = request.encoded_len();
    let status = expect_code(
        stack.client().await.signup(request).await,
        Code::ResourceExhausted,
    );
    assert_eq!(
        status.message(),
        format!("the request is {size} bytes; at most 65536 are accepted")
    );

    // The same on the operator port, which the limit also guards.
    let suspend = SuspendTenantRequest {
        tenant_id: "t".repeat(100 * 1024),
        ..Default::default()
    };
    let size = suspend.encoded_len();
    let status = expect_code(
        stack
            .admin()
            .await
            .suspend_tenant(authorized(suspend))
            .await,
        Code::ResourceExhausted,
    );
    assert_eq!(
        status.message(),
        format!("the request is {size} bytes; at most 65536 are accepted")
    );

    // The gateway took no harm: a small request is answered.
    let check = stack
        .client()
        .await
        .check_subdomain(CheckSubdomainRequest {
            subdomain: format!("free-{}", tag()),
            organisation: String::new(),
        })
        .await
        .expect("a small request")
        .into_inner();
    assert!(check.valid, "{check:?}");
}

/// A grpc-web frame: flag 0 (data, uncompressed), big-endian length, message.
fn grpc_web_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap());
    frame.put_slice(message);
    frame
}

#[tokio::test]
async fn grpc_web_callers_get_the_same_answers() {
    let stack = spawn_stack().await;
    let http = reqwest::Client::new();
    let call = |body: Vec<u8>| {
        http.post(format!(
            "{}/tenantry.v1.SignupService/Signup",
            stack.endpoint()
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "https://app.example.com")
        .body(body)
        .send()
    };
    // Trailers-only: the status travels in the headers.
    let status_of = |response: &reqwest::Response| {
        assert_eq!(response.status(), 200);
        Status::from_header_map(response.headers())
            .unwrap_or_else(|| panic!("no grpc-status in {:?}", response.headers()))
    };

    let response = call(grpc_web_frame(&[0x08, 0x01])).await.expect("answered");
    assert_not_valid(&status_of(&response), "SignupRequest");

    let big = vec![b'x'; 100 * 1024];
    let response = call(grpc_web_frame(&big)).await.expect("answered");
    let status = status_of(&response);
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "the request is 102400 bytes; at most 65536 are accepted"
    );
}
