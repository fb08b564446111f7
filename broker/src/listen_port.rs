//! Waiting at start-up until no earlier listener holds the broker's listen address.
//!
//! Shards listen with SO_REUSEPORT, which would also let them join a listener that a previous
//! broker process left behind: after a kill -9, a listener with an io_uring accept in flight
//! outlives the process until the kernel tears the ring down, and connections the kernel hands
//! to it are then reset. The kernel's socket table (`/proc/net/tcp{,6}`) tells when every old
//! listener is gone. (A trial bind cannot: connections the old process accepted hold the port
//! too.) Only listeners that would share the address count: several brokers of one machine may
//! each listen on port 9092 of their own loopback address (`scripts/cluster`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// How long start-up waits for the listen address to be free.
pub const PORT_WAIT_MS_MAX: u64 = 30_000;

/// How often the socket table is read again while an old listener remains.
const PORT_POLL_INTERVAL_MS: u64 = 20;

/// Waits (at most `PORT_WAIT_MS_MAX`) until no socket listens on an address that `addr` would
/// share.
pub fn wait_until_free(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(PORT_WAIT_MS_MAX);
    while has_listener(addr) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "another process listens on {addr} (or on port {} of every address)",
            addr.port()
        );
        std::thread::sleep(Duration::from_millis(PORT_POLL_INTERVAL_MS));
    }
    Ok(())
}

/// Whether `/proc/net/tcp{,6}` lists a socket in LISTEN state that overlaps `addr`.
fn has_listener(addr: SocketAddr) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        let found = listeners(&text).any(|listener| overlaps(listener, addr));
        found
    })
}

/// The local addresses of the LISTEN (state 0A) sockets of one `/proc/net/tcp{,6}` table.
/// Lines that do not parse are skipped: the table is the kernel's, not input to trust blindly.
fn listeners(table: &str) -> impl Iterator<Item = SocketAddr> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() <= 3 || fields[3] != "0A" {
            return None;
        }
        parse_local_address(fields[1])
    })
}

/// Parses the kernel's `ADDRESS:PORT` hex form: the address is printed as 32-bit words in host
/// byte order (one word for IPv4, four for IPv6), the port as a plain 16-bit number.
fn parse_local_address(field: &str) -> Option<SocketAddr> {
    let (address_hex, port_hex) = field.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address_hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address_hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether a listener on `listener` and one on `addr` would take the same connections: same
/// port and the same address, or either of them every address.
fn overlaps(listener: SocketAddr, addr: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    let (a, b) = (canonical(listener.ip()), canonical(addr.ip()));
    listener.port() == addr.port() && (a == b || a.is_unspecified() || b.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as the kernel prints them (little-endian host): 127.0.0.1:9092 listening,
    // 127.0.1.2:9092 listening, 0.0.0.0:9093 listening, and an established 127.0.0.1:9092.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0201007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 00000000:2385 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 0100007F:2384 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
   4: garbage";

    // [::1]:9092 and [::ffff:127.0.1.3]:9092 listening.
    const TCP6: &str = "  sl  local_address remote_address st
   0: 00000000000000000000000001000000:2384 00000000000000000000000000000000:0000 0A 0
   1: 0000000000000000FFFF00000301007F:2384 00000000000000000000000000000000:0000 0A 0";

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_listening_sockets_only() {
        let found: Vec<SocketAddr> = listeners(TCP).collect();
        assert_eq!(
            found,
            [
                addr("127.0.0.1:9092"),
                addr("127.0.1.2:9092"),
                addr("0.0.0.0:9093")
            ]
        );
        let found: Vec<SocketAddr> = listeners(TCP6).collect();
        assert_eq!(found, [addr("[::1]:9092"), addr("[::ffff:127.0.1.3]:9092")]);
    }

    #[test]
    fn only_a_listener_on_the_same_address_or_a_wildcard_blocks() {
        let blocked = |listen: &str| {
            [TCP, TCP6]
                .iter()
                .any(|table| listeners(table).any(|l| overlaps(l, addr(listen))))
        };
        assert!(blocked("127.0.0.1:9092"));
        assert!(blocked("127.0.1.2:9092"));
        assert!(!blocked("127.0.1.1:9092"), "another loopback address");
        assert!(!blocked("127.0.0.1:9094"), "another port");
        assert!(
            blocked("127.0.1.1:9093"),
            "0.0.0.0:9093 takes every address"
        );
        assert!(blocked("0.0.0.0:9092"), "every address includes 127.0.0.1");
        assert!(blocked("127.0.1.3:9092"), "an IPv4-mapped IPv6 listener");
        assert!(blocked("[::1]:9092"));
        assert!(!blocked("[::2]:9092"));
    }

    #[test]
    fn malformed_addresses_are_skipped() {
        for field in [
            "",
            ":",
            "0100007F",
            "0100007F:",
            "01007F:2384",
            "ZZ00007F:2384",
        ] {
            assert_eq!(parse_local_address(field), None, "{field:?}");
        }
    }
}
