use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::startup::AppState;

/// Short, so that a load balancer sees a dead database quickly.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 when the database answers, 503 otherwise (and 200 again once it is back: the pool
/// reconnects by itself).
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping(PING_TIMEOUT).await {
        Ok(()) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({ "status": "ok" })),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Cache-Control", "no-store"))
                .json(json!({ "status": "unavailable", "database": "unreachable" }))
        }
    }
}
