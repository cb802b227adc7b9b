use super::dsl::*;

use super::schema::{signing_keys, stream_tokens};
use super::{run, Conn};
use crate::error::Error;
use crate::keys::{StoredKey, ALGORITHM};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
struct KeyRow {
    kid: String,
    algorithm: String,
    private_key: String,
    public_jwk: String,
    created_at: i64,
    retired_at: Option<i64>,
}

impl From<KeyRow> for StoredKey {
    fn from(row: KeyRow) -> Self {
        StoredKey {
            kid: row.kid,
            private_key: row.private_key,
            public_jwk: row.public_jwk,
            created_at: row.created_at,
            retired_at: row.retired_at,
        }
    }
}

pub async fn insert(conn: &mut Conn, key: &StoredKey) -> Result<(), Error> {
    let row = KeyRow {
        kid: key.kid.clone(),
        algorithm: ALGORITHM.into(),
        private_key: key.private_key.clone(),
        public_jwk: key.public_jwk.clone(),
        created_at: key.created_at,
        retired_at: key.retired_at,
    };
    run!(conn, |c| diesel::insert_into(signing_keys::table)
        .values(&row)
        .execute(c))?;
    Ok(())
}

/// The kid of the current key: the newest one not retired.
pub async fn current(conn: &mut Conn) -> Result<Option<String>, Error> {
    Ok(run!(conn, |c| signing_keys::table
        .filter(signing_keys::retired_at.is_null())
        .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
        .select(signing_keys::kid)
        .first(c))
    .optional()?)
}

pub async fn retire_all(conn: &mut Conn, now: i64) -> Result<(), Error> {
    run!(conn, |c| diesel::update(
        signing_keys::table.filter(signing_keys::retired_at.is_null())
    )
    .set(signing_keys::retired_at.eq(now))
    .execute(c))?;
    Ok(())
}

/// Keys still published: current ones, those retired after `retired_after`, and those that
/// signed a stream token still unexpired at `now` (stream tokens may live for days, or for
/// ever with ttl 0, and media servers verify them against the published keys).
pub async fn published(
    conn: &mut Conn,
    retired_after: i64,
    now: i64,
) -> Result<Vec<StoredKey>, Error> {
    let rows = run!(conn, |c| signing_keys::table
        .filter(
            signing_keys::retired_at
                .is_null()
                .or(signing_keys::retired_at.ge(retired_after))
                .or(signs_live_stream_tokens(now)),
        )
        .order(signing_keys::created_at)
        .select(KeyRow::as_select())
        .load(c))?;
    Ok(rows.into_iter().map(StoredKey::from).collect())
}

type ByKey = diesel::dsl::Eq<stream_tokens::kid, signing_keys::kid>;
type Unexpired = diesel::dsl::Or<
    diesel::dsl::IsNull<stream_tokens::expires_at>,
    diesel::dsl::Gt<stream_tokens::expires_at, i64>,
>;
type LiveStreamTokens = diesel::dsl::exists<
    diesel::dsl::Filter<diesel::dsl::Filter<stream_tokens::table, ByKey>, Unexpired>,
>;

/// Whether the key of the row signed a stream token that has not expired at `now`.
fn signs_live_stream_tokens(now: i64) -> LiveStreamTokens {
    diesel::dsl::exists(
        stream_tokens::table
            .filter(stream_tokens::kid.eq(signing_keys::kid))
            .filter(
                stream_tokens::expires_at
                    .is_null()
                    .or(stream_tokens::expires_at.gt(now)),
            ),
    )
}

pub async fn all(conn: &mut Conn) -> Result<Vec<StoredKey>, Error> {
    let rows = run!(conn, |c| signing_keys::table
        .order(signing_keys::created_at)
        .select(KeyRow::as_select())
        .load(c))?;
    Ok(rows.into_iter().map(StoredKey::from).collect())
}

/// Deletes keys retired before `retired_before` that signed no stream token still unexpired at
/// `now`: no unexpired token can carry their kid.
pub async fn purge(conn: &mut Conn, retired_before: i64, now: i64) -> Result<usize, Error> {
    Ok(run!(conn, |c| diesel::delete(
        signing_keys::table
            .filter(signing_keys::retired_at.lt(retired_before))
            .filter(diesel::dsl::not(signs_live_stream_tokens(now)))
    )
    .execute(c))?)
}
