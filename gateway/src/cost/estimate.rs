//! The walk over the operation. Iterative (an explicit stack of selection sets, so no depth
//! of document reaches the thread's stack), and every fragment is costed once per sizing
//! context: a spread costs its fragment's memoized cost, multiplied by its context, so a
//! document whose spreads double at every level is computed in time linear in its text.

use std::collections::HashMap;

use graphql_tools::static_graphql::query::{
    Definition, Document, Field, FragmentDefinition, OperationDefinition, Selection, TypeCondition,
    Value,
};
use serde_json::{Map, Value as Json};

use super::CostError;
use super::model::{CostModel, FieldCost, ListSize};

/// A mutation's root fields each cost this much on top of what they select: a write is
/// dearer than any read of the same shape.
const MUTATION_FIELD_COST: u64 = 10;

/// The static cost of the operation `operation_name` selects in `document` (the single
/// operation when `None`), with `variables` (coerced) filling slicing arguments and
/// `default_list_size` sizing lists nothing else sizes.
pub(crate) fn estimate(
    costs: &CostModel,
    document: &Document,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
    default_list_size: u64,
) -> Result<u64, CostError> {
    let (root_type, selection_set) = select(costs, document, operation_name)?;
    let fragments: HashMap<&str, &FragmentDefinition> = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            Definition::Fragment(fragment) => Some((fragment.name.as_str(), fragment)),
            Definition::Operation(_) => None,
        })
        .collect();
    let mutation_root = costs.mutation_type() == Some(root_type);
    let mut walk = Walk {
        costs,
        variables,
        default_list_size,
        fragments,
        memo: HashMap::new(),
        stack: Vec::new(),
    };
    walk.push(Frame {
        items: &selection_set.items,
        type_name: Some(root_type),
        sized: None,
        mutation_root,
        multiplier: 1,
        addend: 0,
        memo: None,
        next: 0,
        total: 0,
    });
    walk.run()
}

/// The root type and selection set of the selected operation.
fn select<'d>(
    costs: &'d CostModel,
    document: &'d Document,
    operation_name: Option<&str>,
) -> Result<
    (
        &'d str,
        &'d graphql_tools::static_graphql::query::SelectionSet,
    ),
    CostError,
> {
    let operation = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            Definition::Operation(operation) => Some(operation),
            Definition::Fragment(_) => None,
        })
        .find(|operation| {
            let name = match operation {
                OperationDefinition::SelectionSet(_) => None,
                OperationDefinition::Query(q) => q.name.as_deref(),
                OperationDefinition::Mutation(m) => m.name.as_deref(),
                OperationDefinition::Subscription(s) => s.name.as_deref(),
            };
            operation_name.is_none() || name == operation_name
        })
        .ok_or(CostError::UnknownOperation)?;
    Ok(match operation {
        OperationDefinition::SelectionSet(set) => ("Query", set),
        OperationDefinition::Query(q) => ("Query", &q.selection_set),
        OperationDefinition::Mutation(m) => (
            costs.mutation_type().unwrap_or("Mutation"),
            &m.selection_set,
        ),
        OperationDefinition::Subscription(s) => ("Subscription", &s.selection_set),
    })
}

/// The size a parent's `@listSize(sizedFields:)` gives some of the fields directly below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Sized<'m> {
    fields: &'m [String],
    size: u64,
}

/// A fragment's cost depends on its own text and on the sizes its context gives its
/// fields, never on how many times the context repeats it.
type MemoKey<'d, 'm> = (&'d str, Option<Sized<'m>>);

/// One selection set being summed.
struct Frame<'d, 'm> {
    items: &'d [Selection],
    type_name: Option<&'d str>,
    sized: Option<Sized<'m>>,
    mutation_root: bool,
    /// The parent adds `multiplier × total + addend` when this set is done.
    multiplier: u64,
    addend: u64,
    /// Where to remember the total (a fragment's selection set).
    memo: Option<MemoKey<'d, 'm>>,
    next: usize,
    total: u64,
}

struct Walk<'d, 'm, 'v> {
    costs: &'m CostModel,
    variables: &'v Map<String, Json>,
    default_list_size: u64,
    fragments: HashMap<&'d str, &'d FragmentDefinition>,
    /// `None` while a fragment is being costed (a cycle, which validation refuses, is an
    /// error rather than a loop).
    memo: HashMap<MemoKey<'d, 'm>, Option<u64>>,
    stack: Vec<Frame<'d, 'm>>,
}

impl<'d, 'm> Walk<'d, 'm, '_>
where
    'm: 'd,
{
    fn push(&mut self, frame: Frame<'d, 'm>) {
        if let Some(key) = frame.memo {
            self.memo.insert(key, None);
        }
        self.stack.push(frame);
    }

    fn run(&mut self) -> Result<u64, CostError> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(0);
            };
            let Some(selection) = frame.items.get(frame.next) else {
                let done = self.stack.pop().ok_or(CostError::UnknownOperation)?;
                if let Some(key) = done.memo {
                    self.memo.insert(key, Some(done.total));
                }
                let cost = done
                    .multiplier
                    .saturating_mul(done.total)
                    .saturating_add(done.addend);
                match self.stack.last_mut() {
                    Some(parent) => parent.total = parent.total.saturating_add(cost),
                    None => return Ok(cost),
                }
                continue;
            };
            frame.next += 1;
            let (type_name, sized, mutation_root) =
                (frame.type_name, frame.sized, frame.mutation_root);
            match selection {
                Selection::Field(field) => {
                    self.field(field, type_name, sized, mutation_root)?;
                }
                Selection::InlineFragment(fragment) => {
                    let type_name = match &fragment.type_condition {
                        Some(TypeCondition::On(name)) => Some(name.as_str()),
                        None => type_name,
                    };
                    self.push(Frame {
                        items: &fragment.selection_set.items,
                        type_name,
                        sized,
                        mutation_root,
                        multiplier: 1,
                        addend: 0,
                        memo: None,
                        next: 0,
                        total: 0,
                    });
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    let fragment = self
                        .fragments
                        .get(name)
                        .copied()
                        .ok_or_else(|| CostError::UnknownFragment(name.to_owned()))?;
                    let key = (fragment.name.as_str(), sized);
                    match self.memo.get(&key) {
                        Some(Some(cost)) => self.add(*cost),
                        Some(None) => return Err(CostError::FragmentCycle(name.to_owned())),
                        None => {
                            let TypeCondition::On(on) = &fragment.type_condition;
                            self.push(Frame {
                                items: &fragment.selection_set.items,
                                type_name: Some(on.as_str()),
                                sized,
                                mutation_root,
                                multiplier: 1,
                                addend: 0,
                                memo: Some(key),
                                next: 0,
                                total: 0,
                            });
                        }
                    }
                }
            }
        }
    }

    fn add(&mut self, cost: u64) {
        if let Some(frame) = self.stack.last_mut() {
            frame.total = frame.total.saturating_add(cost);
        }
    }

    /// Costs one field: `instances × (type weight + selections) + argument weights`, plus
    /// [`MUTATION_FIELD_COST`] at a mutation's root.
    fn field(
        &mut self,
        field: &'d Field,
        parent: Option<&'d str>,
        sized: Option<Sized<'m>>,
        mutation_root: bool,
    ) -> Result<(), CostError> {
        let base = if mutation_root {
            MUTATION_FIELD_COST
        } else {
            0
        };
        let definition = parent.and_then(|parent| self.costs.field(parent, &field.name));
        let Some(definition) = definition else {
            // `__typename` costs nothing; other fields outside the supergraph (introspection)
            // cost what any object costs, without list multipliers.
            let weight = u64::from(!field.selection_set.items.is_empty());
            self.child(field, None, None, 1, weight.saturating_add(base));
            return Ok(());
        };
        let own_size = match &definition.list_size {
            Some(list_size) => self.size_of(field, definition, list_size)?,
            None => None,
        };
        let parent_size = sized
            .filter(|s| s.fields.contains(&field.name))
            .map(|s| s.size);
        let instances = if definition.is_list {
            own_size.or(parent_size).unwrap_or(self.default_list_size)
        } else {
            1
        };
        let weight = definition
            .weight
            .unwrap_or_else(|| self.costs.type_weight(&definition.type_name));
        let arguments = field
            .arguments
            .iter()
            .filter_map(|(name, _)| definition.arguments.get(name)?.weight)
            .fold(0u64, u64::saturating_add);
        let child_sized = match (&definition.list_size, own_size) {
            (Some(list_size), Some(size)) if !list_size.sized_fields.is_empty() => Some(Sized {
                fields: &list_size.sized_fields,
                size,
            }),
            _ => None,
        };
        let addend = instances
            .saturating_mul(weight)
            .saturating_add(arguments)
            .saturating_add(base);
        let type_name = self
            .costs
            .type_cost(&definition.type_name)
            .map(|_| definition.type_name.as_str());
        self.child(field, type_name, child_sized, instances, addend);
        Ok(())
    }

    /// Adds a field's cost: at once when it selects nothing, else once its selection set
    /// is summed.
    fn child(
        &mut self,
        field: &'d Field,
        type_name: Option<&'d str>,
        sized: Option<Sized<'m>>,
        multiplier: u64,
        addend: u64,
    ) {
        if field.selection_set.items.is_empty() {
            return self.add(addend);
        }
        self.push(Frame {
            items: &field.selection_set.items,
            type_name,
            sized,
            mutation_root: false,
            multiplier,
            addend,
            memo: None,
            next: 0,
            total: 0,
        });
    }

    /// The size `@listSize` gives this use of the field: the largest slicing argument with
    /// a value (in the operation, literal or variable, else the argument's default), else
    /// `assumedSize`; `None` leaves it to the parent's `sizedFields` or the default size.
    fn size_of(
        &self,
        field: &Field,
        definition: &FieldCost,
        list_size: &ListSize,
    ) -> Result<Option<u64>, CostError> {
        let values: Vec<u64> = list_size
            .slicing_arguments
            .iter()
            .filter_map(|name| {
                let default = || definition.arguments.get(name).and_then(|a| a.default);
                let given = field
                    .arguments
                    .iter()
                    .find_map(|(arg, value)| (arg == name).then_some(value));
                let value = match given {
                    Some(Value::Int(n)) => n.as_i64(),
                    // An absent variable leaves the argument to its default.
                    Some(Value::Variable(variable)) => match self.variables.get(variable) {
                        Some(value) => value.as_i64(),
                        None => default(),
                    },
                    Some(_) => None,
                    None => default(),
                };
                value.map(|n| u64::try_from(n).unwrap_or(0))
            })
            .collect();
        if list_size.require_one_slicing_argument
            && !list_size.slicing_arguments.is_empty()
            && values.len() != 1
        {
            return Err(CostError::SlicingArguments {
                field: field.name.clone(),
                arguments: list_size.slicing_arguments.join(", "),
                given: values.len(),
            });
        }
        Ok(values.into_iter().max().or(list_size.assumed_size))
    }
}
