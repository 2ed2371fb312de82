//! gRPC reflection, v1 and v1alpha, on both ports of the gateway, each advertising only what it
//! serves: a stock client (Python's grpcio, whose reflection database asks v1alpha) lists the
//! public port's services and calls CheckSubdomain knowing nothing but the address; v1 lists
//! the same; the operator port lists TenantAdmin only; neither describes what the other — or
//! another service of Tenantry — serves.

mod common;

use common::*;
use tokio_stream::StreamExt as _;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

/// What every port lists besides its own API.
const ALWAYS: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn listing(api: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = api.iter().chain(&ALWAYS).map(|s| (*s).to_owned()).collect();
    all.sort();
    all
}

/// Lists the services at `addr`, finds CheckSubdomain's messages by reflection and calls it
/// with them; prints a JSON line. Exits 3 when a package is missing.
const CLIENT: &str = r#"
import json, sys
try:
    import grpc
    from google.protobuf import descriptor_pool, json_format, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
except ImportError as e:
    print(f"missing Python package: {e}", file=sys.stderr)
    sys.exit(3)

addr, subdomain = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(addr) as channel:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindServiceByName("tenantry.v1.SignupService").FindMethodByName("CheckSubdomain")
    request = message_factory.GetMessageClass(method.input_type)
    response = message_factory.GetMessageClass(method.output_type)
    check = channel.unary_unary(
        "/tenantry.v1.SignupService/CheckSubdomain",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )
    answer = check(request(subdomain=subdomain), timeout=10)
    # What this port does not serve, reflection does not describe. (tonic-reflection ends the
    # stream NOT_FOUND rather than answering an ErrorResponse, which grpcio raises as is.)
    unknown = []
    for name in ["tenantry.v1.TenantAdmin", "tenantry.v1.Vault", "tenantry.v1.TenantDirectory"]:
        try:
            pool.FindServiceByName(name)
        except KeyError:
            unknown.append(name)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            unknown.append(name)
    print(json.dumps({
        "services": services,
        "answer": json_format.MessageToDict(answer, preserving_proto_field_name=True),
        "unknown": unknown,
    }))
"#;

#[tokio::test]
async fn a_python_client_lists_the_public_port_and_calls_check_subdomain_by_reflection() {
    let stack = spawn_stack().await;
    let subdomain = format!("free-{}", tag());
    let run = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(stack.addr.to_string())
        .arg(&subdomain)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the Python client finishes within a minute")
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): `just python-deps` installs it and the packages")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!(
            "{}: `just python-deps` installs the test suite's Python packages \
             (python3 -m pip install --user -r tests/requirements.txt)",
            stderr.trim()
        );
    }
    assert!(
        output.status.success(),
        "the Python client failed:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let out: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: not the client's JSON line: {stdout}\n{stderr}"));

    let services: Vec<String> = serde_json::from_value(out["services"].clone()).unwrap();
    assert_eq!(services, listing(&["tenantry.v1.SignupService"]));
    // proto3 JSON leaves out false and empty fields: valid and available are both there.
    assert_eq!(out["answer"]["valid"], true, "{out}");
    assert_eq!(out["answer"]["available"], true, "{out}");
    assert_eq!(
        out["unknown"],
        serde_json::json!([
            "tenantry.v1.TenantAdmin",
            "tenantry.v1.Vault",
            "tenantry.v1.TenantDirectory"
        ])
    );
}

/// One v1 reflection request on its own stream.
async fn ask(endpoint: String, request: MessageRequest) -> Result<MessageResponse, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .expect("reflection reachable");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let answer: ServerReflectionResponse = answers.next().await.expect("one answer")?;
    Ok(answer.message_response.expect("a message response"))
}

async fn services(endpoint: String) -> Vec<String> {
    match ask(endpoint, MessageRequest::ListServices(String::new())).await {
        Ok(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("not a service list: {other:?}"),
    }
}

/// The fields of `google.protobuf.FileDescriptorProto` this test reads.
#[derive(Clone, PartialEq, prost::Message)]
struct File {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "6")]
    service: Vec<Service>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Service {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
}

/// The services the file declaring `symbol` declares, or the status of the lookup.
async fn services_beside(endpoint: String, symbol: &str) -> Result<Vec<String>, tonic::Status> {
    match ask(
        endpoint,
        MessageRequest::FileContainingSymbol(symbol.to_owned()),
    )
    .await
    {
        Ok(MessageResponse::FileDescriptorResponse(files)) => {
            use prost::Message as _;
            let file = File::decode(files.file_descriptor_proto[0].as_slice()).expect("a file");
            Ok(file.service.into_iter().filter_map(|s| s.name).collect())
        }
        Ok(MessageResponse::ErrorResponse(e)) => Err(tonic::Status::new(
            tonic::Code::from_i32(e.error_code),
            e.error_message,
        )),
        Ok(other) => panic!("not a file: {other:?}"),
        Err(status) => Err(status),
    }
}

#[tokio::test]
async fn v1_reflection_lists_and_describes_only_what_each_port_serves() {
    let stack = spawn_stack().await;
    let public = stack.endpoint();
    let operator = stack.operator_endpoint();

    assert_eq!(
        services(public.clone()).await,
        listing(&["tenantry.v1.SignupService"])
    );
    assert_eq!(
        services(operator.clone()).await,
        listing(&["tenantry.v1.TenantAdmin"])
    );

    // signup.proto declares both APIs; each port's copy declares its own only.
    assert_eq!(
        services_beside(public.clone(), "tenantry.v1.SignupService")
            .await
            .unwrap(),
        ["SignupService"]
    );
    assert_eq!(
        services_beside(operator.clone(), "tenantry.v1.TenantAdmin")
            .await
            .unwrap(),
        ["TenantAdmin"]
    );
    // The messages stay (a TenantAdmin request type is just a message on the public port).
    assert!(
        services_beside(public.clone(), "tenantry.v1.CheckSubdomainRequest")
            .await
            .is_ok()
    );
    for (endpoint, elsewhere) in [
        (&public, "tenantry.v1.TenantAdmin"),
        (&public, "tenantry.v1.Vault"),
        (&public, "tenantry.v1.TenantDirectory"),
        (&public, "tenantry.v1.Billing"),
        (&operator, "tenantry.v1.SignupService"),
        (&operator, "tenantry.v1.Vault"),
    ] {
        let status = services_beside(endpoint.clone(), elsewhere)
            .await
            .expect_err(elsewhere);
        assert_eq!(
            status.code(),
            tonic::Code::NotFound,
            "{elsewhere}: {status:?}"
        );
    }
    // Health and both reflection services are described where they are listed.
    for symbol in ALWAYS {
        assert!(
            services_beside(public.clone(), symbol).await.is_ok(),
            "{symbol}"
        );
    }
}
