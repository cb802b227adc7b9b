//! Browser sessions: a random cookie value, stored only as its digest, so that any instance
//! can serve the next request.

use crate::db::{self, Conn};
use crate::error::Error;
use crate::secrets::{self, PlainSecret};
use crate::users::User;

const PREFIX: &str = "kf_ss_";

/// Starts a session; the value goes into the cookie and nowhere else.
pub async fn start(conn: &mut Conn, user: &User, ttl: i64, now: i64) -> Result<PlainSecret, Error> {
    let value = PlainSecret::generate(PREFIX);
    db::sessions::insert(conn, &value.digest(), &user.id, now, now + ttl).await?;
    Ok(value)
}

/// The signed-in user, if the session is live and the user still enabled.
pub async fn user(conn: &mut Conn, cookie: &str, now: i64) -> Result<Option<User>, Error> {
    if !cookie.starts_with(PREFIX) {
        return Ok(None);
    }
    let Some(user_id) = db::sessions::live_user(conn, &secrets::digest(cookie), now).await? else {
        return Ok(None);
    };
    Ok(db::users::find_by_id(conn, &user_id)
        .await?
        .filter(|u| !u.disabled))
}

pub async fn end(conn: &mut Conn, cookie: &str) -> Result<(), Error> {
    db::sessions::delete(conn, &secrets::digest(cookie)).await
}
