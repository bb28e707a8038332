//! Path and method to route: the whole URL space of one service.

use crate::error::ApiError;
use hyper::Method;
use std::sync::Arc;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The service's business endpoint (`POST /issuance/credentials` or `POST /verification/credentials`).
    Api,
    /// `GET /health` and `GET /<service>/health`: liveness plus a database check (the ALB's check).
    Health,
    /// `GET /health/live`: the process serves HTTP; never touches the database.
    Live,
    /// `GET /health/ready`: like health, and 503 once draining.
    Ready,
    /// `OPTIONS` on a known path: a CORS preflight.
    Preflight(&'static str),
}

/// One path of the table, with the method it serves.
pub struct Entry {
    /// Shared with the metrics' route label, so labelling a request copies nothing.
    path: Arc<str>,
    method: Method,
    route: Route,
    allow: &'static str,
}

/// The route table of one service.
pub struct Router {
    entries: Vec<Entry>,
}

impl Router {
    /// Routes for the service named `service` whose business endpoint is `api_path`.
    pub fn new(service: &str, api_path: &str) -> Self {
        let get = |path: &str, route| Entry {
            path: path.into(),
            method: Method::GET,
            route,
            allow: "GET, OPTIONS",
        };
        Router {
            entries: vec![
                Entry {
                    path: api_path.into(),
                    method: Method::POST,
                    route: Route::Api,
                    allow: "POST, OPTIONS",
                },
                get("/health", Route::Health),
                get("/health/live", Route::Live),
                get("/health/ready", Route::Ready),
                get(&format!("/{service}/health"), Route::Health),
            ],
        }
    }

    /// Resolves a request: the route, or 404 for an unknown path, or 405 with
    /// the allowed methods for a known path and another method.
    pub fn resolve(&self, method: &Method, path: &str) -> Result<Route, ApiError> {
        self.lookup(path).ok_or(ApiError::NotFound)?.route(method)
    }

    /// The table's entry for `path`, None for an unknown path: the pipeline
    /// looks a request up once for both its route and its metrics label.
    pub fn lookup(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| &*e.path == path)
    }
}

impl Entry {
    /// The route template (the path itself: there are no parameters), for the
    /// metrics' label.
    pub fn template(&self) -> &Arc<str> {
        &self.path
    }

    /// The route for `method` on this path, or 405 with the allowed methods.
    pub fn route(&self, method: &Method) -> Result<Route, ApiError> {
        if *method == self.method {
            Ok(self.route)
        } else if *method == Method::OPTIONS {
            Ok(Route::Preflight(self.allow))
        } else {
            Err(ApiError::MethodNotAllowed(self.allow))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_and_methods() {
        let r = Router::new("issuance", "/issuance/credentials");
        assert_eq!(
            r.resolve(&Method::POST, "/issuance/credentials").unwrap(),
            Route::Api
        );
        assert_eq!(
            r.resolve(&Method::GET, "/issuance/health").unwrap(),
            Route::Health
        );
        assert_eq!(r.resolve(&Method::GET, "/health").unwrap(), Route::Health);
        assert_eq!(r.resolve(&Method::GET, "/health/live").unwrap(), Route::Live);
        assert_eq!(r.resolve(&Method::GET, "/health/ready").unwrap(), Route::Ready);
        assert_eq!(
            r.resolve(&Method::OPTIONS, "/issuance/credentials").unwrap(),
            Route::Preflight("POST, OPTIONS")
        );
        assert!(matches!(
            r.resolve(&Method::GET, "/issuance/credentials"),
            Err(ApiError::MethodNotAllowed("POST, OPTIONS"))
        ));
        assert!(matches!(
            r.resolve(&Method::POST, "/health"),
            Err(ApiError::MethodNotAllowed("GET, OPTIONS"))
        ));
        assert!(matches!(
            r.resolve(&Method::POST, "/verification/credentials"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            r.resolve(&Method::GET, "/issuance/credentials/"),
            Err(ApiError::NotFound)
        ));
    }
}
