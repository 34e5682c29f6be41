//! A real Kafka-protocol broker (tansu, in-memory storage) on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct KafkaBroker {
    port: u16,
    child: Option<Child>,
}

impl KafkaBroker {
    /// Starts `tansu broker` (install: `cargo install tansu --locked --features dynostore`).
    pub fn start() -> std::io::Result<Self> {
        let mut broker = Self {
            port: crate::free_port(),
            child: None,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// `127.0.0.1:<port>`, the form of the `brokers` metadata.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("cannot start tansu (cargo install tansu --locked --features dynostore): {error}"),
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("tansu did not listen within 10s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
