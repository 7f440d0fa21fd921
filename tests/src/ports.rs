//! Free local TCP ports for the processes a test starts.

use std::net::TcpListener;

/// A port on 127.0.0.1 that nothing listened on a moment ago.
///
/// The port is released before it is returned, so another process could take it first; the
/// kernel hands out ephemeral ports round-robin, which makes that rare enough for tests.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("bind an ephemeral port on 127.0.0.1");
    listener
        .local_addr()
        .expect("local address of an ephemeral listener")
        .port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` right now.
pub async fn accepts_connections(port: u16) -> Result<(), String> {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map(drop)
        .map_err(|error| format!("127.0.0.1:{port} does not accept connections yet: {error}"))
}
