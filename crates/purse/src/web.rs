//! The one HTTP service: the API under `/v1` and the portal at `/`, over one application,
//! measured by one metrics layer. A path neither knows is JSON inside the API's paths and a
//! page outside them.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::middleware::from_fn_with_state;
use axum::Router;
use purse_app::{App, AppConfig};
use purse_http::{ApiSettings, AppState};
use purse_portal::{PortalSettings, PortalState};

/// Settings of the application and of its two edges.
#[derive(Clone, Debug, Default)]
pub struct WebSettings {
    pub app: AppConfig,
    pub api: ApiSettings,
    pub portal: PortalSettings,
}

/// The API and the portal over `app`.
pub fn router(app: Arc<App>, api: ApiSettings, portal: PortalSettings) -> Router {
    router_of(AppState::new(app, api), portal)
}

/// The API of `api_state` and the portal over the same application.
pub fn router_of(api_state: AppState, portal: PortalSettings) -> Router {
    purse_http::api(api_state.clone())
        .merge(purse_portal::routes(PortalState::new(api_state.app.clone(), portal)))
        .layer(DefaultBodyLimit::max(purse_http::routes::BODY_BYTES_MAX))
        .route_layer(from_fn_with_state(api_state, purse_http::metrics::observe))
        .fallback(|uri: Uri| async move {
            if purse_http::routes::is_api_path(uri.path()) {
                purse_http::routes::not_found()
            } else {
                purse_portal::not_found()
            }
        })
        .method_not_allowed_fallback(|uri: Uri| async move {
            if purse_http::routes::is_api_path(uri.path()) {
                purse_http::routes::method_not_allowed()
            } else {
                purse_portal::method_not_allowed()
            }
        })
}
