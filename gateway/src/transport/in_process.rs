//! The in-process transport: a subgraph's async-graphql `Schema` called directly, for the
//! all-in-one server. The plan, the query text and the result are exactly what the HTTP
//! transport would send and receive; only the socket and the JSON round trip are gone, and
//! instead of an `Authorization` header the subgraph gets the [`Caller`] the gateway
//! verified.

use async_graphql::{ObjectType, Schema, SubscriptionType, Variables};
use async_trait::async_trait;
use gantry_identity::viewer::Caller;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::{
    SubgraphRequest, SubgraphResponse, SubgraphSubscriber, SubgraphTransport, TransportError,
};

pub struct InProcessTransport<Q, M, S> {
    schema: Schema<Q, M, S>,
    max_response_bytes: Option<usize>,
}

impl<Q, M, S> std::fmt::Debug for InProcessTransport<Q, M, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessTransport").finish_non_exhaustive()
    }
}

impl<Q, M, S> InProcessTransport<Q, M, S> {
    pub fn new(schema: Schema<Q, M, S>) -> Self {
        Self {
            schema,
            max_response_bytes: None,
        }
    }

    /// Fails answers whose JSON would be longer than `limit` bytes, as the HTTP transport
    /// does, before they are copied into the gateway's data.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = Some(limit);
        self
    }
}

#[async_trait]
impl<Q, M, S> SubgraphTransport for InProcessTransport<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    async fn execute(&self, request: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        let response = self.schema.execute(graphql_request(request)).await;
        let cache_control = response.cache_control.value();
        if let Some(limit) = self.max_response_bytes
            && !super::serializes_within(&response, limit)
        {
            return Err(TransportError::ResponseTooLarge { limit });
        }
        let body = serde_json::to_value(&response)
            .map_err(|err| TransportError::InvalidResponse(err.to_string()))?;
        let mut response = SubgraphResponse::from_json(body)?;
        response.cache_control = cache_control;
        Ok(response)
    }
}

/// The subgraph's request, with the caller the gateway verified instead of its token.
fn graphql_request(request: SubgraphRequest) -> async_graphql::Request {
    let caller = request
        .context
        .as_ref()
        .and_then(|context| context.downcast_ref::<Caller>())
        .cloned()
        .unwrap_or_default();
    let mut graphql = async_graphql::Request::new(&*request.query)
        .variables(Variables::from_json(serde_json::Value::Object(
            request.variables,
        )))
        .data(caller.viewer);
    if let Some(client) = caller.client {
        graphql = graphql.data(client);
    }
    if let Some(name) = request.operation_name {
        graphql = graphql.operation_name(name);
    }
    graphql
}

impl<Q, M, S> SubgraphSubscriber for InProcessTransport<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    fn subscribe(&self, request: SubgraphRequest) -> BoxStream<'static, SubgraphResponse> {
        self.schema
            .execute_stream(graphql_request(request))
            .map(|response| {
                serde_json::to_value(&response)
                    .ok()
                    .and_then(|body| SubgraphResponse::from_json(body).ok())
                    .unwrap_or_else(|| SubgraphResponse {
                        errors: vec![
                            serde_json::json!({ "message": "an event could not be read" }),
                        ],
                        ..SubgraphResponse::default()
                    })
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object};
    use serde_json::Map;

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn big(&self) -> String {
            "x".repeat(4096)
        }
    }

    fn request() -> SubgraphRequest {
        SubgraphRequest {
            subgraph_name: "toy".into(),
            query: "{ big }".into(),
            kind: crate::graphql::OperationKind::Query,
            entity_calls: Default::default(),
            operation_name: None,
            variables: Map::new(),
            headers: reqwest::header::HeaderMap::new(),
            extensions: Map::new(),
            context: None,
        }
    }

    #[tokio::test]
    async fn an_answer_that_would_serialize_past_the_byte_limit_fails() {
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let capped = InProcessTransport::new(schema.clone()).with_max_response_bytes(2048);
        let roomy = InProcessTransport::new(schema).with_max_response_bytes(8192);

        let refused = capped.execute(request()).await;
        let answered = roomy.execute(request()).await;

        assert!(
            matches!(
                refused,
                Err(TransportError::ResponseTooLarge { limit: 2048 })
            ),
            "{refused:?}"
        );
        assert!(answered.is_ok_and(|response| response.data.is_some()));
    }
}
