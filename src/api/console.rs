//! The built-in console at `/`, for people without Grafana: services with their KPIs and SLO
//! state, a page per service with its charts, forecast band and recommended replicas, the
//! dependency graph and a SQL box. It is a static page over the HTTP API, compiled into the
//! binary: nothing to install, no CDN. Charts are uPlot 1.6.32 (MIT, `console/vendor/`, taken
//! from npm as published), the rest is plain JavaScript with no build step.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// Path, content type, body.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("console/index.html"),
    ),
    (
        "/console/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/app.js"),
    ),
    (
        "/console/app.css",
        "text/css; charset=utf-8",
        include_bytes!("console/app.css"),
    ),
    (
        "/console/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/vendor/uPlot.iife.min.js"),
    ),
    (
        "/console/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("console/vendor/uPlot.min.css"),
    ),
];

/// The console's routes, to merge into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, content_type),
                            // Assets change with the binary: revalidate rather than go stale.
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        body,
                    )
                        .into_response()
                }),
            )
        })
}
