//! The signup page (`web/`, built by Vite into `web/dist/`, committed) served by `tenantry dev`
//! on its own port, with `/config.json` telling the page where the gateway is. The files are
//! compiled into the binary, so `tenantry dev` needs no Node.js to show the page.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use svc::Shutdown;
use tokio::net::TcpListener;

const INDEX: &[u8] = include_bytes!("../../../web/dist/index.html");
const APP_JS: &[u8] = include_bytes!("../../../web/dist/assets/app.js");
const APP_CSS: &[u8] = include_bytes!("../../../web/dist/assets/app.css");

/// What the page reads from `/config.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PageConfig {
    /// The gateway's grpc-web base URL, e.g. `http://localhost:50051`.
    pub gateway: String,
    /// The sites' domain, shown after the subdomain field.
    pub domain: String,
}

/// The page's routes.
pub fn router(config: PageConfig) -> Router {
    let page = |body: &'static [u8], kind: &'static str| {
        move || async move {
            (
                [
                    (header::CONTENT_TYPE, kind),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response()
        }
    };
    let json = serde_json::to_vec(&config).unwrap_or_default();
    Router::new()
        .route("/", get(page(INDEX, "text/html; charset=utf-8")))
        .route(
            "/assets/app.js",
            get(page(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/app.css",
            get(page(APP_CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/config.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }
            }),
        )
}

/// Binds `addr` (port 0 picks one); returns the bound address and the serving task's future.
pub async fn bind(
    addr: SocketAddr,
    config: PageConfig,
    shutdown: Shutdown,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let serve = async move {
        axum::serve(listener, router(config))
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
    };
    Ok((local, serve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_page_loads_its_own_script_and_styles() {
        let index = std::str::from_utf8(INDEX).expect("index.html is UTF-8");
        assert!(index.contains("/assets/app.js"), "{index}");
        assert!(index.contains("/assets/app.css"), "{index}");
        assert!(std::str::from_utf8(APP_JS).is_ok_and(|js| js.contains("application/grpc-web")));
    }
}
