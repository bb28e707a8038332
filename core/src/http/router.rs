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

struct Entry {
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
        self.resolve_labelled(method, path).1
    }

    /// [`Router::resolve`], with the route template the path matched (it is
    /// its own: there are no parameters) for the metrics' label; None for an
    /// unknown path. One scan of the table serves both.
    pub fn resolve_labelled(
        &self,
        method: &Method,
        path: &str,
    ) -> (Option<Arc<str>>, Result<Route, ApiError>) {
        let Some(entry) = self.entries.iter().find(|e| &*e.path == path) else {
            return (None, Err(ApiError::NotFound));
        };
        let route = if *method == entry.method {
            Ok(entry.route)
        } else if *method == Method::OPTIONS {
            Ok(Route::Preflight(entry.allow))
        } else {
            Err(ApiError::MethodNotAllowed(entry.allow))
        };
        (Some(entry.path.clone()), route)
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
