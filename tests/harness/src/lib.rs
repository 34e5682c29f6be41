//! Test harness: real `redis-server` and `outrigger` processes on free loopback ports, and an
//! in-process ADS control plane.

pub mod ads_server;
pub mod kafka_broker;
pub mod redis_server;
pub mod sidecar;

pub use ads_server::{AckRecord, SentResponse, TestAdsServer, WaitTimeout};
pub use kafka_broker::{KafkaBroker, KafkaUser, Scram};
pub use redis_server::{RedisOptions, RedisServer};
pub use sidecar::{Sidecar, SidecarBuilder, outrigger_binary};

use std::net::{SocketAddr, TcpListener};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind 127.0.0.1:0")
}

/// A loopback peer that accepts TCP connections and never answers, like a server behind a
/// black-holing firewall: connects succeed, handshakes and requests never complete. Lives as
/// long as the test process.
pub fn silent_peer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the silent peer");
    let address = listener.local_addr().expect("silent peer address");
    std::thread::spawn(move || {
        // Held, never read or closed: the peer neither answers nor hangs up.
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    address
}
