//! Path and method to route: the whole URL space of one service. Paths match
//! exactly, but for the actions on one credential (`{api}/{id}/{action}`),
//! whose one parameter is a single non-empty path segment. The bulk route,
//! `{api}/batch`, is an exact path of its own.

use crate::error::ApiError;
use hyper::Method;
use std::sync::Arc;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The service's business endpoint (`POST /issuance/credentials` or `POST /verification/credentials`).
    Api,
    /// The bulk route, `POST {api}/batch`: many of the business route's requests in one.
    Bulk,
    /// An action on one credential, `POST {api}/{id}/{action}` (issuance's `revoke`): the action.
    Action(&'static str),
    /// `GET /health` and `GET /<service>/health`: liveness plus a database check (the ALB's check).
    Health,
    /// `GET /health/live`: the process serves HTTP; never touches the database.
    Live,
    /// `GET /health/ready`: like health, and 503 once draining.
    Ready,
    /// `GET /<service>/openapi.json`: the HTTP contract ([`super::OPENAPI`]).
    Spec,
    /// `OPTIONS` on a known path: a CORS preflight.
    Preflight(&'static str),
}

/// One path of the table, with the method it serves.
pub struct Entry {
    /// The path, or for a parameterised one its template (`/issuance/credentials/{id}/revoke`).
    /// Shared with the metrics' route label, so labelling a request copies nothing.
    path: Arc<str>,
    /// For a parameterised path, what comes before and after its parameter.
    param: Option<(String, String)>,
    method: Method,
    route: Route,
    allow: &'static str,
}

/// The route table of one service.
pub struct Router {
    entries: Vec<Entry>,
}

impl Router {
    /// Routes for the service named `service` whose business endpoint is
    /// `api_path`, with its bulk route `POST {api_path}/batch` and
    /// `POST {api_path}/{id}/{action}` for each of `actions`.
    pub fn new(service: &str, api_path: &str, actions: &[&'static str]) -> Self {
        let get = |path: &str, route| Entry {
            path: path.into(),
            param: None,
            method: Method::GET,
            route,
            allow: "GET, OPTIONS",
        };
        let mut entries = vec![
            Entry {
                path: api_path.into(),
                param: None,
                method: Method::POST,
                route: Route::Api,
                allow: "POST, OPTIONS",
            },
            Entry {
                path: format!("{api_path}/batch").into(),
                param: None,
                method: Method::POST,
                route: Route::Bulk,
                allow: "POST, OPTIONS",
            },
            get("/health", Route::Health),
            get("/health/live", Route::Live),
            get("/health/ready", Route::Ready),
            get(&format!("/{service}/health"), Route::Health),
            get(&format!("/{service}/openapi.json"), Route::Spec),
        ];
        entries.extend(actions.iter().map(|&action| Entry {
            path: format!("{api_path}/{{id}}/{action}").into(),
            param: Some((format!("{api_path}/"), format!("/{action}"))),
            method: Method::POST,
            route: Route::Action(action),
            allow: "POST, OPTIONS",
        }));
        Router { entries }
    }

    /// Resolves a request: the route, or 404 for an unknown path, or 405 with
    /// the allowed methods for a known path and another method.
    pub fn resolve(&self, method: &Method, path: &str) -> Result<Route, ApiError> {
        self.lookup(path).ok_or(ApiError::NotFound)?.route(method)
    }

    /// The table's entry for `path`, None for an unknown path: the pipeline
    /// looks a request up once for both its route and its metrics label.
    pub fn lookup(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| match &e.param {
            None => &*e.path == path,
            Some(_) => e.param(path).is_some(),
        })
    }
}

impl Entry {
    /// The route template (the path itself, or `{id}` in place of the
    /// parameter), for the metrics' label: bounded whatever ids are sent.
    pub fn template(&self) -> &Arc<str> {
        &self.path
    }

    /// The parameter `path` holds if it matches this parameterised entry: the one
    /// non-empty segment between the prefix and the suffix, as sent (not decoded).
    pub fn param<'p>(&self, path: &'p str) -> Option<&'p str> {
        let (prefix, suffix) = self.param.as_ref()?;
        let id = path
            .strip_prefix(prefix.as_str())?
            .strip_suffix(suffix.as_str())?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
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
        let r = Router::new("issuance", "/issuance/credentials", &[]);
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
        assert_eq!(
            r.resolve(&Method::POST, "/issuance/credentials/batch").unwrap(),
            Route::Bulk
        );
        for unknown in ["/issuance/credentials/batch/", "/issuance/credentials/batches"] {
            assert!(
                matches!(r.resolve(&Method::POST, unknown), Err(ApiError::NotFound)),
                "{unknown}"
            );
        }
    }

    #[test]
    fn serves_the_spec_under_the_service_prefix_only() {
        let r = Router::new("verification", "/verification/credentials", &[]);
        assert_eq!(
            r.resolve(&Method::GET, "/verification/openapi.json").unwrap(),
            Route::Spec
        );
        assert_eq!(
            r.resolve(&Method::OPTIONS, "/verification/openapi.json").unwrap(),
            Route::Preflight("GET, OPTIONS")
        );
        assert!(matches!(
            r.resolve(&Method::POST, "/verification/openapi.json"),
            Err(ApiError::MethodNotAllowed("GET, OPTIONS"))
        ));
        // The other service's prefix is the ALB's to route, and the bare path no one's.
        for unknown in [
            "/issuance/openapi.json",
            "/openapi.json",
            "/verification/openapi.json/",
        ] {
            assert!(
                matches!(r.resolve(&Method::GET, unknown), Err(ApiError::NotFound)),
                "{unknown}"
            );
        }
    }

    #[test]
    fn resolves_actions_on_one_credential_by_their_template() {
        let r = Router::new("issuance", "/issuance/credentials", &["revoke"]);
        let path = "/issuance/credentials/550e8400-e29b-41d4-a716-446655440000/revoke";
        assert_eq!(r.resolve(&Method::POST, path).unwrap(), Route::Action("revoke"));
        let entry = r.lookup(path).unwrap();
        assert_eq!(&**entry.template(), "/issuance/credentials/{id}/revoke");
        assert_eq!(entry.param(path), Some("550e8400-e29b-41d4-a716-446655440000"));
        // Any segment is the parameter: the handler decides whether it names a credential.
        assert_eq!(
            r.lookup("/issuance/credentials/x/revoke")
                .unwrap()
                .param("/issuance/credentials/x/revoke"),
            Some("x")
        );
        assert_eq!(
            r.resolve(&Method::OPTIONS, path).unwrap(),
            Route::Preflight("POST, OPTIONS")
        );
        assert!(matches!(
            r.resolve(&Method::GET, path),
            Err(ApiError::MethodNotAllowed("POST, OPTIONS"))
        ));
        for unknown in [
            "/issuance/credentials//revoke",
            "/issuance/credentials/revoke",
            "/issuance/credentials/a/b/revoke",
            "/issuance/credentials/a/revoke/",
            "/issuance/credentials/a/revoked",
            "/issuance/credentialsa/revoke",
        ] {
            assert!(
                matches!(r.resolve(&Method::POST, unknown), Err(ApiError::NotFound)),
                "{unknown}"
            );
        }
        // The exact routes are unchanged.
        assert_eq!(
            r.resolve(&Method::POST, "/issuance/credentials").unwrap(),
            Route::Api
        );
    }
}
