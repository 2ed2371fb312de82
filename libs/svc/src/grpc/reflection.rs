//! gRPC server reflection, v1 and v1alpha, advertising only what one port serves.
//!
//! A port's reflection lists the services it was given, `grpc.health.v1.Health` and both
//! reflection services, and holds only the files those need: the files declaring them and
//! their imports, with every other service taken out of those files (so a symbol lookup for a
//! service served elsewhere — `tenantry.v1.Vault` on the signup port — answers NOT_FOUND).

use std::collections::{HashMap, HashSet};

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use tonic_reflection::server::{Builder, v1, v1alpha};

/// The health service every Tenantry gRPC port serves.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
/// The reflection service, v1.
pub const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
/// The reflection service, v1alpha (what most clients, grpcurl and grpcio among them, ask).
pub const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Both reflection services of one port: add both to the server.
pub struct Reflection<V1, V1Alpha> {
    /// `grpc.reflection.v1.ServerReflection`.
    pub v1: V1,
    /// `grpc.reflection.v1alpha.ServerReflection`.
    pub v1alpha: V1Alpha,
}

/// Why a port's reflection cannot be built (a bug in the compiled-in descriptors).
#[derive(Debug, thiserror::Error)]
pub enum ReflectionError {
    /// A descriptor set does not decode.
    #[error("a file descriptor set does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A service to advertise is in none of the descriptor sets.
    #[error("no file descriptor declares the gRPC service {0}")]
    UnknownService(String),
    /// A file imports one that no descriptor set holds.
    #[error("file {file} imports {import}, which no file descriptor set holds")]
    MissingImport {
        /// The importing file.
        file: String,
        /// The missing one.
        import: String,
    },
    /// tonic-reflection refused the descriptors.
    #[error("cannot build gRPC reflection: {0}")]
    Build(#[from] tonic_reflection::server::Error),
}

/// The reflection services (v1 and v1alpha) of a port serving `services` (fully-qualified
/// names, e.g. `tenantry.v1.SignupService`), declared in `descriptor_sets` (encoded
/// `FileDescriptorSet`s, e.g. `proto::FILE_DESCRIPTOR_SET`). The health and reflection
/// services are always added: every port serves them.
#[allow(clippy::type_complexity)]
pub fn reflection(
    descriptor_sets: &[&[u8]],
    services: &[&str],
) -> Result<
    Reflection<
        v1::ServerReflectionServer<impl v1::ServerReflection + use<>>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection + use<>>,
    >,
    ReflectionError,
> {
    let mut listed: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    for always in [HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA] {
        if !listed.iter().any(|s| s == always) {
            listed.push(always.to_owned());
        }
    }
    let mut sets = descriptor_sets.to_vec();
    sets.extend([
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]);
    let files = serving_only(&sets, &listed)?;
    let builder = || {
        listed.iter().fold(
            Builder::configure()
                // Both reflection files are in `files` already, trimmed like the others.
                .include_reflection_service(false)
                .register_file_descriptor_set(files.clone()),
            |builder, name| builder.with_service_name(name.clone()),
        )
    };
    Ok(Reflection {
        v1: builder().build_v1()?,
        v1alpha: builder().build_v1alpha()?,
    })
}

/// The files declaring `services` and everything they import, in the order the sets give
/// (imports first, as protoc and protox write them), each holding only services of `services`.
fn serving_only(sets: &[&[u8]], services: &[String]) -> Result<FileDescriptorSet, ReflectionError> {
    let mut order = Vec::new();
    let mut by_name: HashMap<String, FileDescriptorProto> = HashMap::new();
    for set in sets {
        for file in FileDescriptorSet::decode(*set)?.file {
            let name = file.name().to_owned();
            // The first set naming a file wins, as in tonic-reflection.
            if let std::collections::hash_map::Entry::Vacant(entry) = by_name.entry(name) {
                order.push(entry.key().clone());
                entry.insert(file);
            }
        }
    }
    let wanted: HashSet<&str> = services.iter().map(String::as_str).collect();
    let mut needed: Vec<String> = Vec::new();
    for service in services {
        let file = order
            .iter()
            .find(|name| {
                let file = &by_name[name.as_str()];
                file.service
                    .iter()
                    .any(|s| qualified(file.package(), s.name()) == *service)
            })
            .ok_or_else(|| ReflectionError::UnknownService(service.clone()))?;
        needed.push(file.clone());
    }
    // Imports, transitively.
    let mut keep: HashSet<String> = HashSet::new();
    while let Some(name) = needed.pop() {
        if !keep.insert(name.clone()) {
            continue;
        }
        let file = &by_name[name.as_str()];
        for import in &file.dependency {
            if !by_name.contains_key(import) {
                return Err(ReflectionError::MissingImport {
                    file: name.clone(),
                    import: import.clone(),
                });
            }
            needed.push(import.clone());
        }
    }
    let file = order
        .into_iter()
        .filter(|name| keep.contains(name))
        .filter_map(|name| by_name.remove(&name))
        .map(|mut file| {
            let package = file.package().to_owned();
            retain_services(&mut file, |name| {
                wanted.contains(qualified(&package, name).as_str())
            });
            file
        })
        .collect();
    Ok(FileDescriptorSet { file })
}

fn qualified(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    }
}

/// `FileDescriptorProto.service`, in source locations.
const SERVICE_FIELD: i32 = 6;

/// Keeps the services of `file` that `keep` names, and the source locations (comments) of
/// those, renumbered: a location's path names a service by its index in the file.
fn retain_services(file: &mut FileDescriptorProto, keep: impl Fn(&str) -> bool) {
    let mut index: Vec<Option<i32>> = Vec::with_capacity(file.service.len());
    let mut next = 0;
    for service in &file.service {
        if keep(service.name()) {
            index.push(Some(next));
            next += 1;
        } else {
            index.push(None);
        }
    }
    if index.iter().all(Option::is_some) {
        return;
    }
    let mut position = 0;
    file.service.retain(|_| {
        let kept = index[position].is_some();
        position += 1;
        kept
    });
    if let Some(info) = file.source_code_info.as_mut() {
        info.location
            .retain_mut(|location| match location.path.as_slice() {
                [SERVICE_FIELD, i, ..] => {
                    match usize::try_from(*i)
                        .ok()
                        .and_then(|i| index.get(i).copied().flatten())
                    {
                        Some(new) => {
                            location.path[1] = new;
                            true
                        }
                        None => false,
                    }
                }
                _ => true,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{ServiceDescriptorProto, SourceCodeInfo, source_code_info::Location};

    fn file(name: &str, deps: &[&str], services: &[&str]) -> FileDescriptorProto {
        FileDescriptorProto {
            name: Some(name.to_owned()),
            package: Some("p".to_owned()),
            dependency: deps.iter().map(|d| (*d).to_owned()).collect(),
            service: services
                .iter()
                .map(|s| ServiceDescriptorProto {
                    name: Some((*s).to_owned()),
                    ..Default::default()
                })
                .collect(),
            source_code_info: Some(SourceCodeInfo {
                location: (0..services.len() as i32)
                    .map(|i| Location {
                        path: vec![SERVICE_FIELD, i],
                        leading_comments: Some(format!("service {i}")),
                        ..Default::default()
                    })
                    .chain([Location {
                        path: vec![4, 0],
                        ..Default::default()
                    }])
                    .collect(),
            }),
            ..Default::default()
        }
    }

    fn encode(files: Vec<FileDescriptorProto>) -> Vec<u8> {
        FileDescriptorSet { file: files }.encode_to_vec()
    }

    #[test]
    fn keeps_the_served_services_their_imports_and_their_comments() {
        let set = encode(vec![
            file("common.proto", &[], &[]),
            file("a.proto", &["common.proto"], &["A", "Other"]),
            file("b.proto", &["common.proto"], &["B"]),
            file("unrelated.proto", &[], &[]),
        ]);
        let kept = serving_only(&[&set], &["p.Other".to_owned()]).unwrap();
        let names: Vec<_> = kept.file.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["common.proto", "a.proto"]);
        let a = &kept.file[1];
        assert_eq!(a.service.len(), 1);
        assert_eq!(a.service[0].name(), "Other");
        let locations = &a.source_code_info.as_ref().unwrap().location;
        // "Other" was service 1 and is service 0 now; "A"'s comment is gone.
        assert_eq!(locations.len(), 2);
        assert_eq!(locations[0].path, [SERVICE_FIELD, 0]);
        assert_eq!(locations[0].leading_comments(), "service 1");
        assert_eq!(locations[1].path, [4, 0]);
    }

    #[test]
    fn an_unknown_service_or_a_missing_import_is_an_error() {
        let set = encode(vec![file("a.proto", &["gone.proto"], &["A"])]);
        assert!(matches!(
            serving_only(&[&set], &["p.Nope".to_owned()]),
            Err(ReflectionError::UnknownService(_))
        ));
        assert!(matches!(
            serving_only(&[&set], &["p.A".to_owned()]),
            Err(ReflectionError::MissingImport { .. })
        ));
    }

    #[test]
    fn health_and_reflection_alone_build() {
        reflection(&[], &[]).expect("reflection of a port serving only health");
    }

    #[test]
    fn every_tenantry_port_builds_holding_only_its_services() {
        for port in [
            &["tenantry.v1.SignupService"][..],
            &["tenantry.v1.TenantAdmin"],
            &["tenantry.v1.TenantDirectory", "tenantry.v1.ProjectionAdmin"],
            &["tenantry.v1.Vault"],
            &["tenantry.v1.Billing"],
        ] {
            reflection(&[proto::FILE_DESCRIPTOR_SET], port).expect("reflection builds");
            let listed: Vec<String> = port.iter().map(|s| (*s).to_owned()).collect();
            let kept = serving_only(&[proto::FILE_DESCRIPTOR_SET], &listed).unwrap();
            let mut services: Vec<String> = kept
                .file
                .iter()
                .flat_map(|f| f.service.iter().map(|s| qualified(f.package(), s.name())))
                .collect();
            services.sort();
            let mut expected = listed.clone();
            expected.sort();
            assert_eq!(services, expected);
            // No events.proto: no service declared there, and no API imports it.
            assert!(
                kept.file
                    .iter()
                    .all(|f| f.name() != "tenantry/v1/events.proto")
            );
        }
    }
}
