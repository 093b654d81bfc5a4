//! The web dashboard: static assets from `web/`, embedded in the binary so every node serves
//! them with no build step, plus the two things the page needs from the node itself — what
//! this node is (`/api/v1/node`, so a provider-only node's page can read the chain from its
//! upstream) and cross-origin read access to the chain API (so it may).

use super::ApiState;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;

macro_rules! assets {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)))),*]
    };
}

/// Every file of the dashboard, by name (served at `/ui/{name}`; `index.html` also at `/`).
pub const ASSETS: &[(&str, &[u8])] = assets![
    "index.html",
    "style.css",
    "favicon.svg",
    "app.js",
    "api.js",
    "live.js",
    "dom.js",
    "fmt.js",
    "chart.js",
    "view-overview.js",
    "view-market.js",
    "view-jobs.js",
    "view-job.js",
    "view-governance.js",
    "view-explorer.js",
    "view-sessions.js",
];

/// Scripts and styles only from this node; data may come from another node's API (the
/// upstream of a provider-only node), so `connect-src` is open.
const CSP: &str = "default-src 'self'; connect-src *; img-src 'self' data:; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn serve(name: &str) -> Response {
    let Some((_, body)) = ASSETS.iter().find(|(n, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, format!("no dashboard file {name:?}")).into_response();
    };
    (
        [
            (header::CONTENT_TYPE, content_type(name)),
            // Assets change only with the binary; revalidating is cheap on a local node.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        *body,
    )
        .into_response()
}

/// `GET /`: the dashboard page.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /ui/{file}`: a dashboard asset.
pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

/// `GET /api/v1/node`: what this node is. Served by every node, with or without the chain.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Roles it runs.
    pub roles: Vec<String>,
    /// The chain API it follows, when it does not run the chain itself.
    pub upstream: Option<String>,
    /// Software version.
    pub version: &'static str,
}

/// `GET /api/v1/node`
pub async fn node(State(s): State<Arc<ApiState>>) -> Json<NodeView> {
    Json(NodeView {
        name: s.info.name.clone(),
        roles: s.info.roles.clone(),
        upstream: s.info.upstream.clone(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Lets pages from other origins read the chain API (GET under `/api/v1/`): the data is public
/// and no credentials are involved, and it is how a provider-only node's dashboard shows the
/// chain of its upstream.
pub async fn allow_cross_origin_reads(req: Request, next: Next) -> Response {
    let public = req.method() == Method::GET && req.uri().path().starts_with("/api/v1/");
    let mut resp = next.run(req).await;
    if public {
        resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
    }

    #[test]
    fn every_web_file_is_embedded() {
        for entry in std::fs::read_dir(dir()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            assert!(ASSETS.iter().any(|(n, _)| *n == name), "web/{name} is not in ASSETS (dead file?)");
        }
    }

    #[test]
    fn every_reference_names_an_embedded_file() {
        for (name, body) in ASSETS {
            let text = String::from_utf8_lossy(body);
            let refs = text
                .split(['\'', '"'])
                .filter_map(|s| s.strip_prefix("./").or_else(|| s.strip_prefix("/ui/")))
                .filter(|s| s.ends_with(".js") || s.ends_with(".css") || s.ends_with(".svg"));
            for r in refs {
                assert!(ASSETS.iter().any(|(n, _)| *n == r), "{name} refers to {r}, which is not embedded");
            }
        }
    }

    #[test]
    fn assets_have_types_and_unknown_files_are_404() {
        let resp = serve("app.js");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(resp.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert_eq!(serve("../Cargo.toml").status(), StatusCode::NOT_FOUND);
    }
}
