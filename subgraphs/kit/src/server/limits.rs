//! What every server command (`serve`, `gateway`, `subgraph`) limits about its connections
//! and requests, with the defaults, defined here once.

use std::time::Duration;

/// Connection and request limits of one HTTP server. The defaults are for production: a
/// client on a slow mobile link still gets through, a client that holds connections open
/// or sends a byte a second does not hold them for long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time from the first byte of a request to its last header byte; a client that sends
    /// its headers slower is disconnected. Default: 10 s.
    pub header_read_timeout: Duration,
    /// Time a connection may wait with no request in progress (a new connection that sends
    /// nothing, or a kept-alive one between requests) before it is closed. Keep it above the
    /// idle timeout of a load balancer in front, so the balancer closes first. Default:
    /// 75 s.
    pub idle_timeout: Duration,
    /// Time to receive a whole request body, counted from the end of its headers (waiting
    /// for room under [`ServerLimits::body_bytes_in_flight`] included); slower: `408`.
    /// Default: 30 s.
    pub body_read_timeout: Duration,
    /// Time to answer a request once its body is in. The gateway answers `504` with
    /// `GATEWAY_TIMEOUT` and the data that is complete; a subgraph answers `504`. Default:
    /// 30 s.
    pub request_timeout: Duration,
    /// Connections open at once. Past it, new connections wait in the listen backlog until
    /// one closes. Never more than three quarters of the process's open-file limit, so
    /// sockets to the database, Redis and the subgraphs can still be opened. Default:
    /// 10,000.
    pub max_connections: usize,
    /// Bytes of request bodies held in memory at once, across every request; a body waits
    /// for room before it is read. Never less than the largest accepted body. Default:
    /// 64 MiB.
    pub body_bytes_in_flight: usize,
    /// How long in-flight requests may run on after SIGTERM or Ctrl-C. Default: 10 s.
    pub shutdown_grace: Duration,
    /// Time a client has, from connecting, to finish the TLS handshake when the server
    /// speaks TLS; slower, the connection is closed. Default: 10 s.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            body_bytes_in_flight: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    /// [`ServerLimits::max_connections`], lowered to three quarters of the open-file limit
    /// (`RLIMIT_NOFILE`) when that is lower: past the file limit `accept` fails and the
    /// process stops answering anyone.
    pub fn effective_max_connections(&self) -> usize {
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let cap = files.map_or(usize::MAX, |files| {
            usize::try_from(files / 4 * 3).unwrap_or(usize::MAX)
        });
        self.max_connections.min(cap).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_under_the_open_file_limit() {
        let limits = ServerLimits {
            max_connections: usize::MAX,
            ..ServerLimits::default()
        };
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        if let Some(files) = files {
            assert!(limits.effective_max_connections() as u64 <= files / 4 * 3);
        }
        let small = ServerLimits {
            max_connections: 3,
            ..ServerLimits::default()
        };
        assert_eq!(small.effective_max_connections(), 3);
    }
}
