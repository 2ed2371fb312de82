//! Clear answers to requests tonic cannot decode.
//!
//! tonic decodes a request before the handler runs and answers what it cannot decode itself:
//! a message that is not valid protobuf gets INTERNAL ("failed to decode Protobuf message: …",
//! prost's error), a truncated one INTERNAL ("Unexpected EOF decoding stream."), a unary call
//! without a message INTERNAL ("Missing request message."), and a message over the service's
//! `max_decoding_message_size` OUT_OF_RANGE ("Error, decoded message length too large: found N
//! bytes, the limit is: L bytes"). Those are the caller's mistakes, not the server's:
//! [`RequestErrorsLayer`] answers them INVALID_ARGUMENT ("the request is not a valid
//! SignupRequest protobuf message") and RESOURCE_EXHAUSTED ("the request is N bytes; at most L
//! are accepted"), naming the method's request message and never echoing what was sent.
//!
//! For unary and server-streaming methods (every Tenantry API) the request is decoded before
//! any answer, so these errors always travel trailers-only, in the response headers, which is
//! where the layer looks. A client-streaming method sees its decode errors in its own request
//! stream, where the handler decides (tonic-reflection, for one, ends the stream).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message as _;
use prost_types::FileDescriptorSet;
use tonic::{Code, Status};

/// A tower layer for a tonic server rewriting tonic's own answers to undecodable and oversized
/// requests (see the module). Add it last (innermost), after the observing layer, so metrics
/// and traces count what the caller gets.
#[derive(Clone, Debug, Default)]
pub struct RequestErrorsLayer {
    /// `/package.Service/Method` → the request message's name.
    inputs: Arc<HashMap<String, Arc<str>>>,
}

impl RequestErrorsLayer {
    /// Names each method's request message after `descriptor_sets` (encoded
    /// `FileDescriptorSet`s, e.g. `proto::FILE_DESCRIPTOR_SET`); a method none of them
    /// declares is answered without a message name.
    pub fn new(descriptor_sets: &[&[u8]]) -> Self {
        let mut inputs = HashMap::new();
        for set in descriptor_sets {
            let set = match FileDescriptorSet::decode(*set) {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(error = %e, "a file descriptor set does not decode; its request messages go unnamed");
                    continue;
                }
            };
            for file in &set.file {
                let package = file.package();
                for service in &file.service {
                    let service_name = if package.is_empty() {
                        service.name().to_owned()
                    } else {
                        format!("{package}.{}", service.name())
                    };
                    for method in &service.method {
                        let input = method.input_type();
                        let short = input.rsplit('.').next().unwrap_or(input);
                        inputs.insert(
                            format!("/{service_name}/{}", method.name()),
                            Arc::from(short),
                        );
                    }
                }
            }
        }
        Self {
            inputs: Arc::new(inputs),
        }
    }
}

impl<S> tower::Layer<S> for RequestErrorsLayer {
    type Service = RequestErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestErrors {
            inner,
            inputs: Arc::clone(&self.inputs),
        }
    }
}

/// A service wrapped by [`RequestErrorsLayer`].
#[derive(Clone, Debug)]
pub struct RequestErrors<S> {
    inner: S,
    inputs: Arc<HashMap<String, Arc<str>>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> tower::Service<http::Request<B>> for RequestErrors<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let message = self.inputs.get(request.uri().path()).cloned();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            rewrite(&mut response, message.as_deref());
            Ok(response)
        })
    }
}

/// Replaces tonic's answer to a request it could not decode, when that is what `response` is.
fn rewrite<R>(response: &mut http::Response<R>, message: Option<&str>) {
    // Cheap first: only an error answer carries grpc-status in its headers.
    let code = match response.headers().get(Status::GRPC_STATUS) {
        Some(code) => Code::from_bytes(code.as_bytes()),
        None => return,
    };
    if !matches!(code, Code::Internal | Code::OutOfRange) {
        return;
    }
    let Some(status) = Status::from_header_map(response.headers()) else {
        return;
    };
    let Some(replacement) = replacement(&status, message) else {
        return;
    };
    tracing::debug!(tonic = %status.message(), answer = %replacement.message(), "undecodable request");
    let headers = response.headers_mut();
    headers.remove(Status::GRPC_MESSAGE);
    headers.remove(Status::GRPC_STATUS_DETAILS);
    if replacement.add_header(headers).is_ok() {
        response.extensions_mut().insert(replacement);
    }
}

/// What a caller is told instead of tonic's `status`, if it is one of tonic's decode errors.
fn replacement(status: &Status, message: Option<&str>) -> Option<Status> {
    let text = status.message();
    let not_valid = || match message {
        Some(m) => format!("the request is not a valid {m} protobuf message"),
        None => "the request is not a valid protobuf message".to_owned(),
    };
    match status.code() {
        // tonic-prost's decode error is prost's `DecodeError`, displayed.
        Code::Internal
            if text.starts_with("failed to decode Protobuf message")
                || text == "Unexpected EOF decoding stream." =>
        {
            Some(Status::invalid_argument(not_valid()))
        }
        Code::Internal if text == "Missing request message." => {
            Some(Status::invalid_argument(match message {
                Some(m) => format!("the request carries no {m} message"),
                None => "the request carries no message".to_owned(),
            }))
        }
        Code::OutOfRange => {
            // "Error, decoded message length too large: found {len} bytes, the limit is: {limit} bytes"
            let rest = text.strip_prefix("Error, decoded message length too large: found ")?;
            let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
            let limit = rest.strip_suffix(" bytes")?;
            let found: u64 = found.parse().ok()?;
            let limit: u64 = limit.parse().ok()?;
            Some(Status::resource_exhausted(format!(
                "the request is {found} bytes; at most {limit} are accepted"
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: Status, message: Option<&str>) -> Status {
        let mut response: http::Response<()> = status.into_http();
        rewrite(&mut response, message);
        let from_headers = Status::from_header_map(response.headers()).expect("a status");
        let from_extension = response.extensions().get::<Status>().expect("the status");
        assert_eq!(from_headers.code(), from_extension.code());
        assert_eq!(from_headers.message(), from_extension.message());
        from_headers
    }

    #[test]
    fn a_protobuf_decode_error_is_invalid_argument_naming_the_message() {
        // Field 1 (seconds, a varint) sent length-delimited.
        let prost_error = prost_types::Duration::decode(&[0x0a, 0x00][..]).unwrap_err();
        let status = answered(
            Status::internal(prost_error.to_string()),
            Some("SignupRequest"),
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "the request is not a valid SignupRequest protobuf message"
        );
        let truncated = answered(Status::internal("Unexpected EOF decoding stream."), None);
        assert_eq!(truncated.code(), Code::InvalidArgument);
        assert_eq!(
            truncated.message(),
            "the request is not a valid protobuf message"
        );
        let missing = answered(
            Status::internal("Missing request message."),
            Some("CheckSubdomainRequest"),
        );
        assert_eq!(missing.code(), Code::InvalidArgument);
        assert_eq!(
            missing.message(),
            "the request carries no CheckSubdomainRequest message"
        );
    }

    #[test]
    fn an_oversized_request_is_resource_exhausted() {
        let status = answered(
            Status::out_of_range(
                "Error, decoded message length too large: found 102400 bytes, the limit is: 65536 bytes",
            ),
            Some("SignupRequest"),
        );
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "the request is 102400 bytes; at most 65536 are accepted"
        );
    }

    #[test]
    fn the_services_own_errors_pass_unchanged() {
        for status in [
            Status::internal("internal error; it has been logged"),
            Status::out_of_range("page 7 does not exist"),
            Status::invalid_argument("email: not an address"),
            Status::unimplemented(""),
        ] {
            let (code, message) = (status.code(), status.message().to_owned());
            let after = answered(status, Some("SignupRequest"));
            assert_eq!((after.code(), after.message()), (code, message.as_str()));
        }
    }

    #[test]
    fn method_paths_name_their_request_message() {
        let set = prost_types::FileDescriptorSet {
            file: vec![prost_types::FileDescriptorProto {
                name: Some("a.proto".into()),
                package: Some("p.v1".into()),
                service: vec![prost_types::ServiceDescriptorProto {
                    name: Some("Api".into()),
                    method: vec![prost_types::MethodDescriptorProto {
                        name: Some("Call".into()),
                        input_type: Some(".p.v1.CallRequest".into()),
                        output_type: Some(".p.v1.CallReply".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let layer = RequestErrorsLayer::new(&[&set, b"\xff not a descriptor set"]);
        assert_eq!(
            layer.inputs.get("/p.v1.Api/Call").map(|m| &**m),
            Some("CallRequest")
        );
    }
}
