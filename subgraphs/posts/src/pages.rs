//! Keyset pages, alone or many at once. A page is fetched with one row more than asked
//! for, which tells whether another page follows. Many parents' first pages (the first
//! comments of every post in a feed, say) come from one statement: on PostgreSQL a
//! `LATERAL` top-N per parent that reads only the rows it returns; on SQLite rows numbered
//! per parent with `ROW_NUMBER() OVER (PARTITION BY …)` and cut at the page size.

use std::collections::HashMap;

use gantry_kit::ApiError;
use sea_orm::sea_query::{
    Alias, Asterisk, Expr, ExprTrait, Func, IntoIden, JoinType, Order, Query, SelectStatement,
    WindowStatement,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryFilter, QueryOrder, QuerySelect, Select,
};
use uuid::Uuid;

/// One page of items, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

impl<T> Page<T> {
    /// Cuts `rows` (fetched with one extra) to `first` items.
    pub fn from_rows(mut rows: Vec<T>, first: u64) -> Self {
        let has_next = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Self {
            items: rows,
            has_next,
        }
    }

    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            has_next: false,
        }
    }
}

/// Direction of a list: newest first (posts, follows) or oldest first (comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    NewestFirst,
    OldestFirst,
}

impl Direction {
    fn order(self) -> Order {
        match self {
            Self::NewestFirst => Order::Desc,
            Self::OldestFirst => Order::Asc,
        }
    }
}

/// Fetches one page of `select`, keyed on `id_col` (a UUIDv7 column), after `after`.
pub async fn page<E, C>(
    db: &C,
    select: Select<E>,
    id_col: E::Column,
    direction: Direction,
    first: u64,
    after: Option<Uuid>,
) -> Result<Page<E::Model>, ApiError>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let select = match (after, direction) {
        (Some(after), Direction::NewestFirst) => select.filter_col_lt(id_col, after),
        (Some(after), Direction::OldestFirst) => select.filter_col_gt(id_col, after),
        (None, _) => select,
    };
    let rows = select
        .order_by(id_col, direction.order())
        .limit(first + 1)
        .all(db)
        .await?;
    Ok(Page::from_rows(rows, first))
}

trait FilterCol<E: EntityTrait> {
    fn filter_col_lt(self, col: E::Column, value: Uuid) -> Self;
    fn filter_col_gt(self, col: E::Column, value: Uuid) -> Self;
}

impl<E: EntityTrait> FilterCol<E> for Select<E> {
    fn filter_col_lt(self, col: E::Column, value: Uuid) -> Self {
        sea_orm::QueryFilter::filter(self, col.lt(value))
    }
    fn filter_col_gt(self, col: E::Column, value: Uuid) -> Self {
        sea_orm::QueryFilter::filter(self, col.gt(value))
    }
}

/// A list that hangs off a parent row: which column names the parent, which orders the
/// list, in which direction, and how to read the parent back from a row.
#[derive(Debug)]
pub struct ParentList<E: EntityTrait> {
    pub parent_col: E::Column,
    pub id_col: E::Column,
    pub direction: Direction,
    pub parent_of: fn(&E::Model) -> Uuid,
}

/// The first page after `after` of each parent in `parents`, in one statement.
pub async fn pages_per_parent<E, C>(
    db: &C,
    list: &ParentList<E>,
    parents: &[Uuid],
    first: u64,
    after: Option<Uuid>,
) -> Result<HashMap<Uuid, Page<E::Model>>, ApiError>
where
    E: EntityTrait,
    E::Model: FromQueryResult,
    C: ConnectionTrait,
{
    if parents.is_empty() {
        return Ok(HashMap::new());
    }
    let parent_of = list.parent_of;
    let outer = match db.get_database_backend() {
        DbBackend::Postgres => top_n_lateral(list, parents, first, after),
        _ => top_n_numbered(list, parents, first, after),
    };
    let statement = db.get_database_backend().build(&outer);
    let rows = E::Model::find_by_statement(statement).all(db).await?;

    let mut grouped: HashMap<Uuid, Vec<E::Model>> = HashMap::new();
    for row in rows {
        grouped.entry(parent_of(&row)).or_default().push(row);
    }
    Ok(parents
        .iter()
        .map(|parent| {
            let rows = grouped.remove(parent).unwrap_or_default();
            (*parent, Page::from_rows(rows, first))
        })
        .collect())
}

/// PostgreSQL only: one page of the lists of all `parents` merged (a feed: the posts of the
/// viewer and of everyone they follow, newest first). Each parent's list yields at most
/// `first + 1` ids from its `(parent, id)` index, without reading a row; the rows of the
/// winning ids are read last. Costs a few index probes per parent, however old their
/// latest rows are, where a filtered walk of the whole list's `id` order could read the
/// table back to the oldest match.
pub async fn merged_page_lateral<E, C>(
    db: &C,
    list: &ParentList<E>,
    parents: &[Uuid],
    first: u64,
    after: Option<Uuid>,
) -> Result<Page<E::Model>, ApiError>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    if parents.is_empty() {
        return Ok(Page::empty());
    }
    let ParentList {
        id_col, direction, ..
    } = *list;
    let mut merged = lateral_pages(list, parents, first, after, [id_col]);
    merged
        .column((Alias::new("page"), id_col))
        .order_by((Alias::new("page"), id_col), direction.order())
        .limit(first + 1);
    let rows = E::find()
        .filter(Expr::col(id_col).in_subquery(merged))
        .order_by(id_col, direction.order())
        .all(db)
        .await?;
    Ok(Page::from_rows(rows, first))
}

/// `(VALUES parents…) AS parent JOIN LATERAL (SELECT columns … WHERE parent_col = parent
/// ORDER BY id LIMIT first + 1) AS page ON TRUE`: each parent's first `first + 1` rows after
/// `after`, read from its `(parent, id)` index. Callers pick what of `page` to select and
/// in which order.
fn lateral_pages<E: EntityTrait>(
    list: &ParentList<E>,
    parents: &[Uuid],
    first: u64,
    after: Option<Uuid>,
    columns: impl IntoIterator<Item = E::Column>,
) -> SelectStatement {
    let ParentList {
        parent_col,
        id_col,
        direction,
        ..
    } = *list;
    let mut top = Query::select();
    top.columns(columns)
        .from(E::default())
        .and_where(Expr::col(parent_col).eq(values_column("parent")))
        .order_by(id_col, direction.order())
        .limit(first + 1);
    if let Some(after) = after {
        top.and_where(after_cursor(id_col, direction, after));
    }
    let mut outer = Query::select();
    outer
        .from_values(parents.iter().copied(), Alias::new("parent"))
        .join_lateral(
            JoinType::InnerJoin,
            top,
            Alias::new("page"),
            Expr::value(true),
        );
    outer
}

/// The only column of `(VALUES …) AS alias`, which PostgreSQL names `column1`.
fn values_column(alias: &str) -> Expr {
    Expr::col((Alias::new(alias), Alias::new("column1")))
}

/// PostgreSQL: for each parent, a `LATERAL` subquery walks the `(parent, id)` index and
/// stops after `first + 1` rows, so a post with 5,000 comments costs what one with 5 does.
fn top_n_lateral<E: EntityTrait>(
    list: &ParentList<E>,
    parents: &[Uuid],
    first: u64,
    after: Option<Uuid>,
) -> SelectStatement {
    let ParentList {
        parent_col,
        id_col,
        direction,
        ..
    } = *list;
    let mut outer = lateral_pages(list, parents, first, after, E::Column::iter());
    outer
        .column((Alias::new("page"), Asterisk))
        .order_by(
            (Alias::new("page"), Alias::new(parent_col.as_str())),
            Order::Asc,
        )
        .order_by(
            (Alias::new("page"), Alias::new(id_col.as_str())),
            direction.order(),
        );
    outer
}

/// Elsewhere (SQLite has no `LATERAL`): rows numbered per parent with
/// `ROW_NUMBER() OVER (PARTITION BY …)` and cut at `first + 1`.
fn top_n_numbered<E: EntityTrait>(
    list: &ParentList<E>,
    parents: &[Uuid],
    first: u64,
    after: Option<Uuid>,
) -> SelectStatement {
    let ParentList {
        parent_col,
        id_col,
        direction,
        ..
    } = *list;
    let mut window = WindowStatement::partition_by(parent_col);
    window.order_by(id_col, direction.order());
    let mut numbered = Query::select();
    numbered
        .columns(E::Column::iter())
        .from(E::default())
        .expr_window_as(Func::cust("ROW_NUMBER"), window, Alias::new("rn"))
        .and_where(Expr::col(parent_col).is_in(parents.iter().copied()));
    if let Some(after) = after {
        numbered.and_where(after_cursor(id_col, direction, after));
    }
    let mut outer = Query::select();
    outer
        .column(Asterisk)
        .from_subquery(numbered, Alias::new("numbered"))
        .and_where(Expr::col(Alias::new("rn")).lte((first + 1) as i64))
        .order_by(Alias::new(parent_col.as_str()), Order::Asc)
        .order_by(Alias::new(id_col.as_str()), direction.order());
    outer
}

/// Rows strictly past the cursor in the list's direction.
fn after_cursor<C: IntoIden + IdenStatic>(id_col: C, direction: Direction, after: Uuid) -> Expr {
    match direction {
        Direction::NewestFirst => Expr::col(id_col).lt(after),
        Direction::OldestFirst => Expr::col(id_col).gt(after),
    }
}
