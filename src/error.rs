//! The error shared by the domain services, the CLI and (through their own mappings) the HTTP
//! surfaces. Variants say what kind of failure it is; the message says what exactly.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not acceptable (a bad slug, an empty password, an unknown role, ...).
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change would break a uniqueness rule (an id or a username already taken, ...).
    #[error("{0}")]
    Conflict(String),
    /// A single-use thing (an authorization code) was consumed by another request first:
    /// the write that would have used it changed nothing.
    #[error("already used")]
    AlreadyUsed,
    /// A setting is invalid (a bad URL, an address that cannot be bound, ...).
    #[error("{0}")]
    Config(String),
    /// The database cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("database error: {0}")]
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for Error {
    /// A connection the database closed (a restart, `pg_terminate_backend`, a network cut)
    /// fails the statement in flight; that is the database being unavailable, not a fault of
    /// the request, and the pool replaces the connection.
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as Diesel};
        match &error {
            Diesel::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => Error::Unavailable(format!("the database connection was lost: {error}")),
            // SQLSTATE 57P01-57P03 (shutdown, termination) carry no kind of their own.
            Diesel::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().starts_with("terminating connection") =>
            {
                Error::Unavailable(format!("the database connection was lost: {error}"))
            }
            _ => Error::Database(error),
        }
    }
}

impl Error {
    /// Exit code of the CLI: 2 when Keyframe cannot work at all (configuration, database down),
    /// 1 when the request itself was refused.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Unavailable(_) => 2,
            _ => 1,
        }
    }
}
