//! Free loopback ports for test servers, never shared between the tests
//! of one process.

use super::*;

/// Ports handed out in this process, so parallel tests never share one.
pub(super) fn ports_in_use() -> MutexGuard<'static, HashSet<u16>> {
    static PORTS: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(Default::default);
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loopback port nobody listens on (and, for a cluster node, its bus
/// port too).
pub(super) fn free_port(cluster: bool) -> Result<u16> {
    for _ in 0..PORT_ATTEMPTS {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(fail)?;
        let port = listener.local_addr().map_err(fail)?.port();
        if port == 6379 || ports_in_use().contains(&port) {
            continue;
        }
        if cluster {
            let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", bus)).is_err() {
                continue;
            }
        }
        ports_in_use().insert(port);
        return Ok(port);
    }
    Err(fail("no free loopback port found"))
}
