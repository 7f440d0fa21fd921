//! The baseline: a bare hyper reverse proxy (pooled upstream connections, bodies streamed both
//! ways, TCP_NODELAY on both sides) and nothing else. What the edge costs is measured against
//! what any proxy costs on the same core in the same run.

use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::Path;
use tokio::net::TcpListener;

/// Serves until killed, forwarding every request to `upstream` (`host:port`); writes its bound
/// address to `address_file` once it listens.
pub async fn serve(upstream: String, address_file: &Path) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    std::fs::write(address_file, listener.local_addr()?.to_string())?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                forward(client.clone(), upstream.clone(), request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: String,
    mut request: Request<Incoming>,
) -> anyhow::Result<Response<Incoming>> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let uri: Uri = format!("http://{upstream}{path}").parse()?;
    *request.uri_mut() = uri;
    request.headers_mut().remove(http::header::HOST);
    Ok(client.request(request).await?)
}
