//! `@defer`: a query answered in parts. The primary part (the query without its deferred
//! fragments) is sent first; each deferred fragment runs as its own operation, with its
//! own plan and fetches, at the same time, and is sent as it completes, as the
//! incremental-delivery format the client asked for in `Accept` says.
//!
//! The whole operation was prepared, authorized, rate limited and is cost-admitted before
//! any part runs; every part is then prepared and authorized like any operation. A part
//! that cannot be prepared (a limit on its text) makes the whole query run as one answer,
//! with its deferred fragments inlined — as does a client that accepts no incremental
//! format, a mutation, and `@defer(if: false)`.
//!
//! Deferred requests bypass the response cache: parts are neither looked up nor stored.
//!
//! Cutting the operation into its parts is [`crate::defer_split`]'s job.

use std::sync::Arc;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value, json};

use crate::auth::Identity;
use crate::authorization::AuthorizationSettings;
use crate::authorization::operation::Denied;
use crate::cache::Operation;
use crate::defer_split::{self as split, PLACEHOLDER};
use crate::graphql::{GraphQLResponse, IncrementalFormat, IncrementalParts, ResponseBody};
use crate::pipeline::{self, execute_prepared};
use crate::prepare::PreparedOperation;
use crate::runtime::Authorized;
use crate::variables::coerce_variables;

/// One part, ready to run.
struct Part {
    prepared: Arc<PreparedOperation>,
    denied: Option<Arc<Denied>>,
}

/// Answers `operation` in parts, when the request's variables leave one of its `@defer`s
/// on. `None`: answer it whole through the request path (nothing ran yet).
pub(crate) async fn run_deferred(
    operation: &Operation,
    variables: &Map<String, Value>,
    context: pipeline::RequestContext,
    identity: &Identity,
    authorization: &AuthorizationSettings,
    format: IncrementalFormat,
) -> Option<GraphQLResponse> {
    let prepared = &operation.prepared;
    if !prepared.defers {
        return None;
    }
    let runtime = &operation.runtime;
    let schema = runtime.supergraph().api_schema();
    // Variable errors are reported by the whole path.
    let coerced = coerce_variables(schema, prepared.variable_definitions(), variables).ok()?;
    let split = split::split(prepared.document(), prepared.operation()?, &coerced)?;
    // Limits and cost hold for the whole operation, whatever the parts cost one by one.
    if let Err(refusal) =
        operation
            .gateway
            .cost()
            .admit(runtime.supergraph().costs(), prepared.for_cost(), &coerced)
    {
        return Some(GraphQLResponse::request_errors(vec![*refusal]));
    }
    let name = prepared.operation_name.as_deref();
    let mut parts = Vec::with_capacity(split.deferred.len() + 1);
    for text in std::iter::once(&split.primary).chain(split.deferred.iter().map(|d| &d.operation)) {
        let part = match runtime
            .prepare_for(text, name, &prepared.override_labels)
            .await
        {
            Ok(part) => part,
            Err(error) => {
                tracing::debug!(%error, "a deferred part was refused: answering whole");
                return None;
            }
        };
        let denied = match runtime.authorize(&part, identity, authorization).await {
            Ok(Authorized::Whole) => None,
            Ok(Authorized::Partly(denied)) => Some(denied),
            Ok(Authorized::Refused(_)) | Err(_) => return None,
        };
        parts.push(Part {
            prepared: part,
            denied,
        });
    }
    let mut parts = parts.into_iter();
    let primary = parts.next()?;
    // Every deferred part starts now, alongside the primary one; dropping its handle (the
    // client went away, or nothing of it is to be sent) stops it.
    let running: Vec<_> = parts
        .map(|part| {
            let operation = operation.clone();
            let variables = variables.clone();
            let context = context.clone();
            let (work, handle) = async move {
                execute_prepared(
                    &operation.gateway,
                    &operation.runtime,
                    &part.prepared,
                    part.denied.as_deref(),
                    &variables,
                    context,
                )
                .await
                .body
                .into_values()
                .into_json()
            }
            .remote_handle();
            tokio::spawn(work);
            handle
        })
        .collect();
    let answered = execute_prepared(
        &operation.gateway,
        runtime,
        &primary.prepared,
        primary.denied.as_deref(),
        variables,
        context,
    )
    .await;
    let mut primary = answered.body.into_values();
    if let ResponseBody::Values {
        data: Some(data), ..
    } = &mut primary
    {
        remove_placeholders(data);
    }
    let data = match &primary {
        ResponseBody::Values {
            data: Some(data), ..
        } if data.is_object() => data,
        _ => return Some(whole(primary)),
    };
    let deliveries: Vec<Delivery> = split
        .deferred
        .into_iter()
        .zip(running)
        .filter_map(|(fragment, handle)| {
            let targets = targets(data, &fragment.path);
            (!targets.is_empty()).then_some(Delivery {
                label: fragment.label,
                targets,
                handle,
            })
        })
        .collect();
    if deliveries.is_empty() {
        return Some(whole(primary));
    }
    Some(incremental(primary.into_json(), deliveries, format))
}

/// The primary part as the whole answer: nothing deferred is left to send.
fn whole(primary: ResponseBody) -> GraphQLResponse {
    GraphQLResponse {
        body: primary,
        ..GraphQLResponse::default()
    }
}

/// A deferred fragment to send: where it applies in the primary data, and its run.
struct Delivery {
    label: Option<String>,
    /// Paths in the primary data, as JSON arrays of keys and indices.
    targets: Vec<Vec<Value>>,
    handle: futures::future::RemoteHandle<Value>,
}

/// A target of a deferred fragment, with the id the current format announces it by.
struct Announced {
    id: String,
    path: Vec<Value>,
}

/// The first payload, and the later ones — one per deferred fragment — as each completes.
fn incremental(
    mut first: Value,
    deliveries: Vec<Delivery>,
    format: IncrementalFormat,
) -> GraphQLResponse {
    let total = deliveries.len();
    let mut pending = Vec::new();
    let waiting = FuturesUnordered::new();
    for delivery in deliveries {
        let mut announced = Vec::with_capacity(delivery.targets.len());
        for path in delivery.targets {
            let id = pending.len().to_string();
            let mut entry = json!({ "id": id, "path": path });
            if let Some(label) = &delivery.label {
                entry["label"] = Value::String(label.clone());
            }
            pending.push(entry);
            announced.push(Announced { id, path });
        }
        let label = delivery.label;
        waiting.push(
            delivery
                .handle
                .map(move |result| (label, announced, result)),
        );
    }
    if format == IncrementalFormat::IncrementalV02 {
        first["pending"] = Value::Array(pending);
    }
    first["hasNext"] = Value::Bool(true);
    let later = waiting
        .enumerate()
        .map(move |(index, (label, announced, result))| {
            payload(
                format,
                label.as_deref(),
                &announced,
                &result,
                index + 1 < total,
            )
        });
    // The first payload is written now: it is the response's body, as it goes out.
    let mut response = GraphQLResponse::new(first);
    response.incremental = Some(IncrementalParts::new(format, later.boxed()));
    response
}

/// The payload that delivers a completed deferred part (`result`, its `{data, errors}`) to
/// every object it applies to. Where the part's data is null at a target (a non-null field
/// in it failed), that target gets `null` and the errors.
fn payload(
    format: IncrementalFormat,
    label: Option<&str>,
    announced: &[Announced],
    result: &Value,
    has_next: bool,
) -> Value {
    let data = result.get("data").unwrap_or(&Value::Null);
    let mut errors: Vec<Vec<Value>> = vec![Vec::new(); announced.len()];
    for error in result
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = error.get("path").and_then(Value::as_array);
        let owner = announced
            .iter()
            .position(|target| path.is_some_and(|path| path.starts_with(&target.path)))
            .unwrap_or(0);
        if let Some(owned) = errors.get_mut(owner) {
            owned.push(error.clone());
        }
    }
    let mut incremental = Vec::new();
    let mut completed = Vec::new();
    for (target, errors) in announced.iter().zip(errors) {
        let object = at(data, &target.path).filter(|value| value.is_object());
        match format {
            IncrementalFormat::DeferSpec20220824 => {
                let mut entry = json!({
                    "data": object.cloned().unwrap_or(Value::Null),
                    "path": target.path,
                });
                if let Some(label) = label {
                    entry["label"] = Value::String(label.to_owned());
                }
                if !errors.is_empty() {
                    entry["errors"] = Value::Array(errors);
                }
                incremental.push(entry);
            }
            IncrementalFormat::IncrementalV02 => {
                let mut done = json!({ "id": target.id });
                match object {
                    Some(object) => {
                        let mut entry = json!({ "id": target.id, "data": object });
                        if !errors.is_empty() {
                            entry["errors"] = Value::Array(errors);
                        }
                        incremental.push(entry);
                    }
                    None => done["errors"] = Value::Array(errors),
                }
                completed.push(done);
            }
        }
    }
    let mut payload = Map::new();
    if !incremental.is_empty() {
        payload.insert("incremental".into(), Value::Array(incremental));
    }
    if format == IncrementalFormat::IncrementalV02 {
        payload.insert("completed".into(), Value::Array(completed));
    }
    payload.insert("hasNext".into(), Value::Bool(has_next));
    Value::Object(payload)
}

/// The paths of the objects `path` leads to in `data`, every list item expanded; objects
/// that are null (or missing) are not there to receive a fragment.
fn targets(data: &Value, path: &[String]) -> Vec<Vec<Value>> {
    let mut found = Vec::new();
    let mut pending: Vec<(&Value, usize, Vec<Value>)> = vec![(data, 0, Vec::new())];
    while let Some((value, depth, at)) = pending.pop() {
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate().rev() {
                    let mut next = at.clone();
                    next.push(Value::from(index));
                    pending.push((item, depth, next));
                }
            }
            Value::Object(object) => match path.get(depth) {
                None => found.push(at),
                Some(key) => {
                    if let Some(child) = object.get(key) {
                        let mut next = at;
                        next.push(Value::String(key.clone()));
                        pending.push((child, depth + 1, next));
                    }
                }
            },
            _ => {}
        }
    }
    found
}

/// The value at `path` (keys and indices), when every step of it is there.
fn at<'v>(mut value: &'v Value, path: &[Value]) -> Option<&'v Value> {
    for segment in path {
        value = match segment {
            Value::String(key) => value.get(key)?,
            Value::Number(index) => value.get(usize::try_from(index.as_u64()?).ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Removes the placeholder fields the primary operation selected where its deferred
/// fragments left a selection empty.
fn remove_placeholders(data: &mut Value) {
    let mut pending = vec![data];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                object.remove(PLACEHOLDER);
                pending.extend(object.values_mut());
            }
            Value::Array(items) => pending.extend(items.iter_mut()),
            _ => {}
        }
    }
}
