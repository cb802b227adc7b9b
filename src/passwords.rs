//! User passwords: argon2id with OWASP's recommended parameters (m = 19 MiB, t = 2, p = 1).
//!
//! Each argon2id computation needs 19 MiB of working memory. Allocated the ordinary way, that
//! memory ended up in glibc's per-thread arenas and stayed there: a benchmark of concurrent
//! sign-ins grew the server to 1.2 GB. So computations borrow one of at most one buffer per core
//! the process may run on (more at once would not run faster; the others queue). Mapping fresh
//! memory for every computation instead cost a third of the sign-in rate in page faults, so
//! buffers are kept while sign-ins keep coming and given back to the system once they stop
//! (`release_idle`).
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::error::Error;

/// Long enough for any passphrase; bounded so that nobody makes us hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;
const OUTPUT_BYTES: usize = 32;

fn owasp() -> Params {
    Params::new(19 * 1024, 2, 1, Some(OUTPUT_BYTES)).expect("OWASP argon2 parameters are valid")
}

/// glibc serves an allocation above its largest dynamic mmap threshold (32 MiB on 64-bit
/// systems) with a mapping of its own and unmaps it on free; a smaller one may come out of an
/// arena and stay resident after it is freed. A buffer's capacity is therefore just above that:
/// only the pages argon2 touches (19 MiB) become resident, and dropping it returns them.
const RETURNED_ON_FREE_BYTES: usize = 33 * 1024 * 1024;

struct Buffers {
    state: Mutex<Pool>,
    returned: Condvar,
}

struct Pool {
    /// Buffers not in use (empty ones are allocated on first use).
    free: Vec<Vec<Block>>,
    last_used: Instant,
}

static BUFFERS: OnceLock<Buffers> = OnceLock::new();

fn buffers() -> &'static Buffers {
    BUFFERS.get_or_init(|| Buffers::new(crate::config::usable_cores()))
}

/// Runs `work` with a working memory of `blocks` argon2 blocks, reusing a pooled buffer.
fn with_memory<T>(blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    buffers().with_memory(blocks, work)
}

/// Gives the buffers' memory back to the system when no password was hashed for `idle`.
/// True when it did.
pub fn release_idle(idle: Duration) -> bool {
    BUFFERS.get().is_some_and(|pool| pool.release_idle(idle))
}

impl Buffers {
    /// At most one computation per core: more at once would not run faster.
    fn new(cores: usize) -> Self {
        Self {
            state: Mutex::new(Pool {
                free: (0..cores).map(|_| Vec::new()).collect(),
                last_used: Instant::now(),
            }),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_memory<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut buffer = {
            let mut state = self.lock();
            loop {
                if let Some(buffer) = state.free.pop() {
                    break buffer;
                }
                state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        if buffer.capacity() < blocks {
            let capacity = blocks.max(RETURNED_ON_FREE_BYTES / std::mem::size_of::<Block>());
            buffer = Vec::with_capacity(capacity);
        }
        buffer.resize(blocks, Block::default());
        let result = work(&mut buffer);
        let mut state = self.lock();
        state.free.push(buffer);
        state.last_used = Instant::now();
        drop(state);
        self.returned.notify_one();
        result
    }

    fn release_idle(&self, idle: Duration) -> bool {
        let mut state = self.lock();
        let holding = state.free.iter().any(|b| b.capacity() > 0);
        if !holding || state.last_used.elapsed() < idle {
            return false;
        }
        for buffer in &mut state.free {
            *buffer = Vec::new();
        }
        true
    }

    #[cfg(test)]
    fn held_blocks(&self) -> usize {
        self.lock().free.iter().map(Vec::capacity).sum()
    }
}

/// A turn to verify a password, taken by a request handler before it takes a database
/// connection and a blocking thread. More verifications at once than buffers would only wait
/// for one inside the blocking thread, each holding a pooled connection: a storm of sign-ins
/// (credential stuffing, a mass re-login) then left refreshes and introspections waiting for
/// connections. Waiting here holds neither, and the queue is first come, first served.
pub async fn turn() -> Option<tokio::sync::SemaphorePermit<'static>> {
    static TURNS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let turns = TURNS.get_or_init(|| tokio::sync::Semaphore::new(crate::config::usable_cores()));
    // Only a closed semaphore refuses, and this one is never closed.
    turns.acquire().await.ok()
}

pub fn validate(password: &str) -> Result<(), Error> {
    if password.is_empty() {
        return Err(Error::Invalid("the password is empty".into()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Invalid(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// An argon2id hash in the PHC string format (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash(password: &str) -> Result<String, Error> {
    validate(password)?;
    let params = owasp();
    let salt = crate::secrets::random_bytes::<16>();
    let mut out = [0u8; OUTPUT_BYTES];
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    with_memory(params.block_count(), |memory| {
        hasher.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)
    })
    .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

/// True when `password` matches `stored`. A malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    if Algorithm::try_from(parsed.algorithm) != Ok(Algorithm::Argon2id) {
        return false;
    }
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .unwrap_or(Version::V0x13);
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let hasher = Argon2::new(Algorithm::Argon2id, version, params.clone());
    let computed = with_memory(params.block_count(), |memory| {
        hasher.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
    });
    computed.is_ok() && bool::from(out.ct_eq(expected.as_bytes()))
}

/// Spends the same time as a real verification, for users that do not exist, so that the
/// answer time does not reveal who has an account.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("keyframe-dummy-password").unwrap_or_default());
    let _ = verify(password, stored);
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};

    #[test]
    fn idle_memory_is_released_and_allocated_again_when_needed() {
        // A pool of its own: the process-wide one is shared with tests hashing concurrently.
        let pool = Buffers::new(1);
        let blocks = owasp().block_count();
        pool.with_memory(blocks, |memory| assert_eq!(memory.len(), blocks));
        assert!(
            pool.held_blocks() >= blocks,
            "the buffer is kept for the next hash"
        );
        assert!(
            !pool.release_idle(Duration::from_secs(3600)),
            "a buffer used just now is kept"
        );
        assert!(pool.release_idle(Duration::ZERO));
        assert_eq!(pool.held_blocks(), 0, "released");
        assert!(
            !pool.release_idle(Duration::ZERO),
            "nothing left to release"
        );
        pool.with_memory(blocks, |memory| assert_eq!(memory.len(), blocks));
        assert!(pool.held_blocks() >= blocks, "allocated again");
    }

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("correct horse", "not a hash"));
    }

    /// The PHC strings interoperate with the argon2 crate's own hasher and verifier.
    #[test]
    fn hashes_interoperate_with_the_reference_implementation() {
        let ours = hash("pässwörd").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("PHC string");
        assert!(Argon2::default()
            .verify_password("pässwörd".as_bytes(), &parsed)
            .is_ok());
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, owasp())
            .hash_password("pässwörd".as_bytes(), &salt)
            .expect("hash")
            .to_string();
        assert!(verify("pässwörd", &theirs));
        assert!(!verify("password", &theirs));
        // Other parameters (an older or stronger setting) still verify.
        let stronger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32 * 1024, 3, 1, None).expect("params"),
        )
        .hash_password(b"x", &salt)
        .expect("hash")
        .to_string();
        assert!(verify("x", &stronger));
    }

    #[test]
    fn empty_and_oversized_passwords_are_refused() {
        assert!(matches!(hash(""), Err(Error::Invalid(_))));
        assert!(matches!(
            hash(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(Error::Invalid(_))
        ));
    }
}
