//! Free local TCP ports for the processes a test starts.

use std::net::TcpListener;

/// A port on 127.0.0.1 that nothing listened on a moment ago.
///
/// The port is released before it is returned, so another process can take it first: only for
/// addresses that must not be in use at all (e.g. `--metrics-listen`). Processes a test starts
/// listen on port 0 and report theirs ([`bound_port`]); dead addresses hold a socket
/// ([`refusing_port`]).
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("bind an ephemeral port on 127.0.0.1");
    listener
        .local_addr()
        .expect("local address of an ephemeral listener")
        .port()
}

/// A port on 127.0.0.1 that refuses connections for as long as the returned socket lives: it
/// is bound (so no other process can take it) but never listens.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("create a TCP socket");
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .expect("bind an ephemeral port on 127.0.0.1");
    let port = socket.local_addr().expect("local address").port();
    (socket, port)
}

/// The port a process wrote to its `--listen-address-file` once bound; an error until then.
/// The processes a test starts listen on port 0 and report the port the kernel chose, so no
/// two tests can ever race for one.
pub fn bound_port(address_file: &std::path::Path) -> Result<u16, String> {
    let text = std::fs::read_to_string(address_file)
        .map_err(|error| format!("{} not written yet: {error}", address_file.display()))?;
    text.trim()
        .parse::<std::net::SocketAddr>()
        .map(|address| address.port())
        .map_err(|error| format!("{} holds {text:?}: {error}", address_file.display()))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` right now.
pub async fn accepts_connections(port: u16) -> Result<(), String> {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map(drop)
        .map_err(|error| format!("127.0.0.1:{port} does not accept connections yet: {error}"))
}
