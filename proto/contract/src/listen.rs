//! `--listen-address-file`, the same on the control plane and the edge: after binding (port 0
//! included), the bound address is written to a file, so a supervisor or a test harness learns
//! the port the kernel chose instead of guessing a free one and racing other processes for it.

use std::net::SocketAddr;
use std::path::Path;

/// Writes `address` (e.g. `127.0.0.1:41234`) to `path` through a temp file and a rename, so a
/// reader never sees half of it.
pub fn write_listen_address(path: &Path, address: SocketAddr) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    std::fs::write(&temp, address.to_string())?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_exactly_the_address() {
        let dir = std::env::temp_dir().join(format!("tollgate-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("address");
        let address: SocketAddr = "127.0.0.1:41234".parse().expect("an address");
        write_listen_address(&path, address).expect("written");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1:41234"
        );
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
