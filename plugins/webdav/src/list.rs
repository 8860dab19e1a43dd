//! `list`: a walk of the collections under the prefix, one PROPFIND with Depth 1 each.

use std::collections::HashSet;

use sealback_plugin_api::{ObjectInfo, ProviderError, validate_object_name};

use crate::propfind::{self, Depth, Found, Kind};
use crate::server::Server;
use crate::temp;

/// Every object under the base whose name starts with `prefix`, sorted by name.
///
/// The walk starts at the collection the prefix names (`a/b/` for `a/b/c`) and only descends
/// into collections that can hold matching names. Each answer is taken for the direct
/// children of the collection asked about (a server that ignores `Depth: 1` and sends more
/// does no harm). Temporary objects and names that are not valid object names are skipped;
/// a collection that vanishes during the walk (404) is empty.
pub(crate) fn list(server: &Server, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
    let start = match prefix.rfind('/') {
        Some(end) => &prefix[..=end],
        None => "",
    };
    let mut objects = Vec::new();
    let mut seen = HashSet::new();
    let mut pending = vec![start.to_owned()];
    while let Some(collection) = pending.pop() {
        let Some(resources) = children(server, &collection)? else {
            continue;
        };
        for resource in resources {
            let Some(basename) = resource.name.strip_prefix(&collection) else {
                continue;
            };
            if basename.is_empty() || basename.contains('/') {
                continue;
            }
            if validate_object_name(&resource.name).is_err() || temp::is_temp_name(basename) {
                continue;
            }
            if resource.collection {
                let inner = format!("{}/", resource.name);
                if inner.starts_with(prefix) || prefix.starts_with(&inner) {
                    pending.push(inner);
                }
            } else if resource.name.starts_with(prefix) && seen.insert(resource.name.clone()) {
                let size = resource.size.ok_or_else(|| {
                    ProviderError::permanent(format!(
                        "PROPFIND {}: the server does not say how large {} is \
                         (no getcontentlength)",
                        server.base(),
                        resource.name
                    ))
                })?;
                objects.push(ObjectInfo {
                    name: resource.name,
                    size,
                });
            }
        }
    }
    objects.sort_unstable();
    Ok(objects)
}

/// The resources in `collection` (`""` or ending with `/`), or `None` if there is no such
/// collection.
fn children(
    server: &Server,
    collection: &str,
) -> Result<Option<Vec<propfind::Resource>>, ProviderError> {
    match propfind::propfind(server, collection, Depth::One)? {
        Found::Resources(resources) => Ok(Some(resources)),
        Found::Missing => Ok(None),
        // Apache answers 400 for `a/b/` when `a/b` is an object. Only an object (or nothing)
        // in the way means there is nothing to list; anything else is the error it seems.
        Found::BadPath(err) if collection.is_empty() => Err(err),
        Found::BadPath(err) => match propfind::kind(server, collection.trim_end_matches('/')) {
            Ok(Kind::Object | Kind::Missing) => Ok(None),
            _ => Err(err),
        },
    }
}
