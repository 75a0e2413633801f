//! A subscription's plan, as hive-router-query-planner makes it: a `Subscription` node with
//! the fetch to the subgraph that owns the root field, alone or first in a `Sequence` whose
//! other nodes resolve each event's fields owned by other subgraphs.

use std::sync::Arc;

use hive_router_query_planner::planner::plan_nodes::{FetchNode, PlanNode, SequenceNode};

use crate::fetch::Plan;

/// The subscription fetch, and what runs for each of its events.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionPlan {
    /// The whole plan, whose entity fetches `rest` names.
    pub whole: Arc<Plan>,
    pub primary: FetchNode,
    pub rest: Option<PlanNode>,
}

/// Splits a subscription's plan; `None` when it has no subscription fetch first (a plan
/// shape the gateway does not run).
pub(crate) fn split(plan: &Arc<Plan>) -> Option<SubscriptionPlan> {
    match plan.query_plan.node.as_ref()? {
        PlanNode::Subscription(subscription) => Some(SubscriptionPlan {
            whole: plan.clone(),
            primary: subscription.primary.clone(),
            rest: None,
        }),
        PlanNode::Sequence(sequence) => {
            let (first, others) = sequence.nodes.split_first()?;
            let PlanNode::Subscription(subscription) = first else {
                return None;
            };
            let rest = match others {
                [] => None,
                [only] => Some(only.clone()),
                many => Some(PlanNode::Sequence(SequenceNode {
                    nodes: many.to_vec(),
                })),
            };
            Some(SubscriptionPlan {
                whole: plan.clone(),
                primary: subscription.primary.clone(),
                rest,
            })
        }
        _ => None,
    }
}
