//! One client subscription: admitted like a query (see [`GatewayService::admit_stream`]),
//! within the process's limit, its variables coerced and its cost admitted; then it joins
//! the upstream subscription of its subscription fetch with how each event is resolved
//! (the rest of the plan run, the response shaped like a query's and serialized), which
//! the upstream's task does once for all identical client subscriptions. When the supergraph is replaced it
//! is prepared and planned again on the new one and goes on, on the same connection (and
//! on the same upstream subscription when its subscription fetch did not change). It ends
//! when the upstream ends, when its client leaves (the stream is dropped: no task outlives
//! it), with the preparation's errors when it is no longer valid on a new supergraph (its
//! field is gone), or with an `UNAUTHENTICATED` error when its access token expires and
//! does not verify any more.

use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures::Stream;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;
use xxhash_rust::xxh3::Xxh3;

use super::hub::{HubEvent, HubSubscription, Payload, Resolve, UpstreamKey};
use super::plan::{SubscriptionPlan, split};
use super::upstream::UpstreamRequest;
use super::{
    ActiveSubscription, SUBGRAPH_ERROR, SUBSCRIPTION_LAGGED, Subscriptions, TOO_MANY_SUBSCRIPTIONS,
};
use crate::execute::{ExecutionContext, execute_after_primary};
use crate::graphql::{GraphQLError, GraphQLResponse, ResponseBody};
use crate::graphql_http::{GraphQLRequest, RequestContext};
use crate::limits::truncate_errors;
use crate::response::shape_response;
use crate::service::{AdmittedSubscription, GatewayService, StreamAdmission};
use crate::transport::SubgraphResponse;
use crate::variables::coerce_variables;

/// What a client transport sends: a GraphQL response body (`{data?, errors?}`).
pub type Event = Value;

/// A live subscription's events, each a response body serialized once for every client
/// subscription that receives it; it ends when the subscription does.
pub(crate) type EventStream = Pin<Box<dyn Stream<Item = Payload> + Send>>;

/// A response body as a transport sends it.
pub(crate) fn payload(event: &Event) -> Payload {
    Payload::from(event.to_string())
}

/// What a request on a streaming transport comes to.
pub(crate) enum Opened {
    /// A subscription's events.
    Stream(EventStream),
    /// A query or mutation's one response: sent, then done.
    Single(Event),
    /// A request that did not run (`{errors}`, no `data`), and the HTTP status a transport
    /// that answers with one uses.
    Refused(Event, StatusCode),
}

/// How often a subscription whose token has expired (but is still within the verifier's
/// leeway) is verified again.
const RECHECK: Duration = Duration::from_secs(1);

fn internal_error(request_id: &str) -> Value {
    json!({ "errors": [{
        "message": "Internal server error",
        "extensions": { "code": "INTERNAL_SERVER_ERROR", "requestId": request_id }
    }] })
}

fn errors_body(errors: Vec<GraphQLError>) -> Value {
    json!({ "errors": errors })
}

/// Opens what `request` asks for on a streaming transport; `headers` in `context` carry
/// the caller's token.
pub(crate) async fn open(
    subscriptions: &Arc<Subscriptions>,
    request: GraphQLRequest,
    context: &RequestContext,
) -> Opened {
    let Some(place) = subscriptions.admit() else {
        let max = subscriptions.settings.max_per_process;
        tracing::warn!(max, "a subscription was refused at the process's limit");
        return Opened::Refused(
            errors_body(vec![
                GraphQLError::with_code(
                    format!("This server holds its limit of {max} subscriptions; try again later"),
                    TOO_MANY_SUBSCRIPTIONS,
                )
                .extension("limit", Value::from(max)),
            ]),
            StatusCode::TOO_MANY_REQUESTS,
        );
    };
    let admitted = match subscriptions.service.admit_stream(request, context).await {
        Ok(StreamAdmission::Subscription(admitted)) => admitted,
        Ok(StreamAdmission::Single(response)) | Err(response) => return answered(*response),
    };
    match Live::start(subscriptions, Arc::new(*admitted), context, place) {
        Ok(live) => Opened::Stream(Box::pin(live.into_stream())),
        Err(refusal) => Opened::Refused(refusal, StatusCode::BAD_REQUEST),
    }
}

/// A response the service gave at once: a refusal when nothing ran (no `data`, as the
/// HTTP layer decides too), else the one result.
fn answered(response: GraphQLResponse) -> Opened {
    let status = response.http_status_hint;
    let executed = response.has_data();
    let body = response.into_json();
    if executed {
        Opened::Single(body)
    } else {
        Opened::Refused(body, status.unwrap_or(StatusCode::BAD_REQUEST))
    }
}

/// A subscription that is running.
struct Live {
    subscriptions: Arc<Subscriptions>,
    admitted: Arc<AdmittedSubscription>,
    running: Running,
    upstream: HubSubscription,
    /// The client headers the token came in, to verify it again at expiry.
    headers: axum::http::HeaderMap,
    /// When the token expires (verified again then), kept from event to event.
    expiry: Pin<Box<tokio::time::Sleep>>,
    /// Done when the supergraph is replaced: the subscription is prepared again. Kept from
    /// event to event, so waiting for the next event registers nothing anew.
    replaced: BoxFuture<'static, Replaced>,
    request_id: String,
    _place: ActiveSubscription,
    ended: bool,
}

/// What an admitted subscription runs: how its events are resolved, and the upstream
/// subscription of its subscription fetch.
struct Running {
    resolver: Arc<Resolver>,
    upstream: UpstreamRequest,
    key: UpstreamKey,
    /// What tells apart client subscriptions whose events resolve differently: those on
    /// one upstream with the same key resolve each event once, together.
    resolution: u64,
}

/// The key of what an upstream event comes to for one client subscription: its
/// operation, coerced variables, caller (and what it may not see) and supergraph.
fn resolution_key(
    admitted: &AdmittedSubscription,
    variables: &Map<String, Value>,
    key: UpstreamKey,
) -> u64 {
    let mut hasher = Xxh3::new();
    key.hash(&mut hasher);
    (Arc::as_ptr(&admitted.runtime) as usize).hash(&mut hasher);
    admitted.prepared.document().to_string().hash(&mut hasher);
    admitted.prepared.operation_name.hash(&mut hasher);
    Value::Object(variables.clone())
        .to_string()
        .hash(&mut hasher);
    admitted.identity.key.hash(&mut hasher);
    admitted
        .denied
        .as_ref()
        .map(|denied| denied.fingerprint)
        .hash(&mut hasher);
    hasher.finish()
}

impl Running {
    fn new(
        subscriptions: &Subscriptions,
        admitted: &Arc<AdmittedSubscription>,
        request_id: &str,
    ) -> Result<Self, Value> {
        let gateway = subscriptions.service.gateway();
        let runtime = &admitted.runtime;
        let supergraph = runtime.supergraph();
        let schema = supergraph.api_schema();
        let max_errors = runtime.preparer().limits().max_errors;
        let variables = coerce_variables(
            schema,
            admitted.prepared.variable_definitions(),
            &admitted.variables,
        )
        .map_err(|errors| errors_body(truncate_errors(errors, max_errors)))?;
        gateway
            .cost()
            .admit(supergraph.costs(), admitted.prepared.for_cost(), &variables)
            .map_err(|refusal| errors_body(vec![*refusal]))?;
        let whole_plan = match &admitted.denied {
            Some(denied) => &denied.plan,
            None => &admitted.prepared.plan,
        };
        let Some(plan) = split(whole_plan) else {
            // The caller may not see the root field: nothing is left to subscribe to, and
            // the answer is the errors that say so, as for a query refused whole.
            if let Some(denied) = &admitted.denied
                && denied.plan.query_plan.node.is_none()
            {
                return Err(errors_body(denied.errors.clone()));
            }
            tracing::error!(
                request_id,
                "a subscription's plan has no subscription fetch first"
            );
            return Err(internal_error(request_id));
        };
        let subgraph = &plan.primary.service_name;
        let in_process = subscriptions.in_process.get(subgraph).cloned();
        let Some(url) = supergraph.subgraph_urls().get(subgraph) else {
            tracing::error!(%subgraph, "no URL for the subgraph a subscription goes to");
            return Err(internal_error(request_id));
        };
        let upstream = UpstreamRequest {
            subgraph: subgraph.clone(),
            url: url.clone(),
            context: admitted.context.context.clone(),
            in_process,
            query: plan.primary.operation.document_str.clone(),
            variables: plan
                .primary
                .variable_usages
                .iter()
                .flatten()
                .filter_map(|name| Some((name.clone(), variables.get(name)?.clone())))
                .collect(),
            headers: admitted.context.forwarded_headers.clone(),
        };
        let key = UpstreamKey::new(subgraph, &upstream, admitted.identity.key);
        let resolution = resolution_key(admitted, &variables, key);
        Ok(Self {
            resolver: Arc::new(Resolver {
                service: subscriptions.service.clone(),
                admitted: admitted.clone(),
                plan,
                variables,
            }),
            upstream,
            key,
            resolution,
        })
    }

    /// Joins the upstream subscription of its subscription fetch.
    fn join(&self, subscriptions: &Subscriptions) -> HubSubscription {
        subscriptions.hub.join(
            self.key,
            self.upstream.clone(),
            self.resolution,
            self.resolver.clone(),
        )
    }
}

impl Live {
    fn start(
        subscriptions: &Arc<Subscriptions>,
        admitted: Arc<AdmittedSubscription>,
        context: &RequestContext,
        place: ActiveSubscription,
    ) -> Result<Self, Value> {
        let running = Running::new(subscriptions, &admitted, &context.request_id)?;
        let upstream = running.join(subscriptions);
        let expires = admitted
            .identity
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .map_or_else(never, expiry_instant);
        let mut supergraphs = subscriptions.service.gateway().supergraph_changes();
        supergraphs.mark_unchanged();
        Ok(Self {
            subscriptions: subscriptions.clone(),
            running,
            upstream,
            headers: context.headers.clone(),
            expiry: Box::pin(tokio::time::sleep_until(expires)),
            replaced: replaced(supergraphs),
            request_id: context.request_id.clone(),
            admitted,
            _place: place,
            ended: false,
        })
    }

    /// Prepares the subscription again on the new supergraph and keeps it going: on the
    /// same upstream subscription when its subscription fetch is unchanged, else on the
    /// new one's. `Err` is the event that ends it (its field is gone, say).
    async fn replan(&mut self) -> Result<(), Event> {
        let readmitted = self
            .subscriptions
            .service
            .readmit(&self.admitted)
            .await
            .map_err(|response| {
                tracing::info!(request_id = %self.request_id, "a subscription ended: it is not valid on the new supergraph");
                response.into_json()
            })?;
        let readmitted = Arc::new(readmitted);
        let running = Running::new(&self.subscriptions, &readmitted, &self.request_id)?;
        if running.key == self.running.key {
            self.upstream
                .resolve_as(running.resolution, running.resolver.clone());
        } else {
            self.upstream = running.join(&self.subscriptions);
        }
        self.running = running;
        self.admitted = readmitted;
        Ok(())
    }

    fn into_stream(self) -> impl Stream<Item = Payload> + Send {
        futures::stream::unfold(self, |mut live| async move {
            if live.ended {
                return None;
            }
            let event = live.next_event().await?;
            Some((event, live))
        })
    }

    /// The next event for the client; `None` when the subscription is over.
    async fn next_event(&mut self) -> Option<Payload> {
        loop {
            let received = tokio::select! {
                received = self.upstream.events.recv() => received,
                Replaced(supergraphs) = &mut self.replaced => {
                    let Some(supergraphs) = supergraphs else {
                        // No more supergraphs to come.
                        self.replaced = Box::pin(std::future::pending());
                        continue;
                    };
                    self.replaced = replaced(supergraphs);
                    match self.replan().await {
                        Ok(()) => continue,
                        Err(event) => {
                            self.ended = true;
                            return Some(payload(&event));
                        }
                    }
                }
                () = &mut self.expiry => {
                    match self.subscriptions.service.reauthenticate(&self.headers).await {
                        Ok(_) => {
                            self.expiry.as_mut().reset(Instant::now() + RECHECK);
                            continue;
                        }
                        Err(refusal) => {
                            self.ended = true;
                            return Some(payload(&errors_body(vec![GraphQLError::with_code(
                                refusal,
                                "UNAUTHENTICATED",
                            )])));
                        }
                    }
                }
            };
            let event = match received {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    self.ended = true;
                    let backlog = self.subscriptions.settings.event_backlog;
                    tracing::warn!(request_id = %self.request_id, missed, backlog, "a subscription ended: its client fell too far behind");
                    return Some(payload(&errors_body(vec![
                        GraphQLError::with_code(
                            format!(
                                "The subscription fell more than {backlog} events behind (its client did not read them in time) and missed {missed}; subscribe again"
                            ),
                            SUBSCRIPTION_LAGGED,
                        )
                        .extension("missed", Value::from(missed))
                        .extension("requestId", Value::String(self.request_id.clone())),
                    ])));
                }
                Err(RecvError::Closed) => return None,
            };
            return match event.as_ref() {
                HubEvent::Next(response, resolutions) => {
                    // Resolved by the upstream's task, as a rule: this only takes it.
                    let resolver = &self.running.resolver;
                    let resolved = resolutions
                        .cell(self.running.resolution)
                        .get_or_init(|| Resolve::resolve(resolver.clone(), response.clone()))
                        .await
                        .clone();
                    Some(resolved)
                }
                HubEvent::Errors(errors) => {
                    self.ended = true;
                    let response = SubgraphResponse {
                        errors: errors.clone(),
                        ..SubgraphResponse::default()
                    };
                    Some(payload(&self.running.resolver.respond(response).await))
                }
                HubEvent::Complete => None,
                HubEvent::Failed(error) => {
                    self.ended = true;
                    let service = &self.running.resolver.plan.primary.service_name;
                    tracing::warn!(request_id = %self.request_id, subgraph = %service, %error, "a subscription ended: its subgraph subscription failed");
                    Some(payload(&errors_body(vec![
                        GraphQLError::with_code(
                            format!(
                                "The subscription to subgraph `{service}` failed: {}",
                                error.summary()
                            ),
                            SUBGRAPH_ERROR,
                        )
                        .extension("serviceName", Value::String(service.clone()))
                        .extension("requestId", Value::String(self.request_id.clone())),
                    ])))
                }
            };
        }
    }
}

/// How one client subscription's events are resolved; the upstream's task resolves each
/// event with it once for every identical client subscription.
struct Resolver {
    service: Arc<GatewayService>,
    admitted: Arc<AdmittedSubscription>,
    plan: SubscriptionPlan,
    variables: Map<String, Value>,
}

impl Resolve for Resolver {
    fn resolve(self: Arc<Self>, event: SubgraphResponse) -> BoxFuture<'static, Payload> {
        Box::pin(async move { payload(&self.respond(event).await) })
    }
}

impl Resolver {
    /// One event resolved through the rest of the plan and shaped for the client.
    async fn respond(&self, event: SubgraphResponse) -> Event {
        let gateway = self.service.gateway();
        let runtime = &self.admitted.runtime;
        let schema = runtime.supergraph().api_schema();
        let context = &self.admitted.context;
        let execution = ExecutionContext {
            transports: gateway.transports(),
            schema,
            variables: &self.variables,
            headers: &context.forwarded_headers,
            context: context.context.clone(),
            deadline: None,
            max_entity_representations: gateway.max_entity_representations(),
        };
        let output = execute_after_primary(
            &self.plan.whole,
            &self.plan.primary,
            event,
            self.plan.rest.as_ref(),
            &execution,
        )
        .await;
        let mut errors = self
            .admitted
            .denied
            .as_ref()
            .map(|denied| denied.errors.clone())
            .unwrap_or_default();
        errors.extend(output.errors);
        let mut response = shape_response(
            schema,
            self.admitted.prepared.shaped(),
            &self.variables,
            output.data,
            errors,
            &output.unresolved,
        );
        let max_errors = runtime.preparer().limits().max_errors;
        if let ResponseBody::Values { errors, .. } = &mut response.body {
            *errors = truncate_errors(std::mem::take(errors), max_errors);
        }
        response.into_json()
    }
}

/// The supergraph was replaced: the receiver to wait for the next one on, or `None` when
/// none will come.
struct Replaced(Option<watch::Receiver<u64>>);

/// Done when `supergraphs` says the supergraph was replaced.
fn replaced(mut supergraphs: watch::Receiver<u64>) -> BoxFuture<'static, Replaced> {
    Box::pin(async move {
        match supergraphs.changed().await {
            Ok(()) => Replaced(Some(supergraphs)),
            Err(_) => Replaced(None),
        }
    })
}

/// An instant no token expires at (a year from now: far enough, and within the timer's
/// range).
fn never() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 60 * 60)
}

/// When a token with `exp` (seconds since the epoch) expires, on the monotonic clock.
fn expiry_instant(exp: i64) -> Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let left = u64::try_from(exp).unwrap_or(0).saturating_sub(now);
    Instant::now() + Duration::from_secs(left)
}
