//! One path and the methods it answers. Any other method gets 405 with `Allow` (RFC 9110
//! §15.5.6) instead of the 404 that separate per-method routes would give.

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::{header, StatusCode};
use actix_web::{guard, web, FromRequest, Handler, Resource, Responder};

use super::json_error;

pub struct Endpoint {
    resource: Resource,
    allow: Vec<&'static str>,
}

impl Endpoint {
    pub fn new(path: &str) -> Self {
        Self {
            resource: web::resource(path),
            allow: Vec::new(),
        }
    }

    /// GET, and HEAD with it (RFC 9110 §9.3.2; the server sends the headers without the body).
    pub fn get<F, Args>(mut self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.allow.extend(["GET", "HEAD"]);
        self.resource = self.resource.route(
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(handler),
        );
        self
    }

    pub fn post<F, Args>(mut self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.allow.push("POST");
        self.resource = self.resource.route(web::post().to(handler));
        self
    }

    pub fn delete<F, Args>(mut self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.allow.push("DELETE");
        self.resource = self.resource.route(web::delete().to(handler));
        self
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        let allow = self.allow.join(", ");
        self.resource
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move {
                    let mut response = json_error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        &format!("this endpoint answers {allow}"),
                    );
                    if let Ok(value) = header::HeaderValue::from_str(&allow) {
                        response.headers_mut().insert(header::ALLOW, value);
                    }
                    response
                }
            }))
            .register(config);
    }
}
