//! diesel's prelude without its `RunQueryDsl`: the statement modules build queries with these,
//! and `run!` brings the `RunQueryDsl` of the backend's driver (diesel's or diesel-async's; with
//! both in scope every method call would be ambiguous).

pub use diesel::expression::{Expression, Selectable, SelectableHelper};
pub use diesel::expression_methods::*;
pub use diesel::query_dsl::{JoinOnDsl, QueryDsl};
pub use diesel::result::OptionalExtension;
pub use diesel::{AsChangeset, Insertable, Queryable, QueryableByName};
