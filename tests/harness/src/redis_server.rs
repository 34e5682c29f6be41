//! A real `redis-server` in a temporary directory, with append-only persistence so that every
//! acknowledged write survives a stop and restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct RedisServer {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    durable: bool,
}

impl RedisServer {
    /// Starts `redis-server` on a free port with every write fsynced, and waits until it
    /// accepts connections.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(true)
    }

    /// Starts a server without persistence, for benchmarks (as Redis is usually run as a cache).
    pub fn start_volatile() -> std::io::Result<Self> {
        Self::start_with(false)
    }

    fn start_with(durable: bool) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut server = Self {
            port: crate::free_port(),
            dir,
            child: None,
            durable,
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the form of Dapr's `redisHost`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            // Tests use DEBUG SLEEP to hold a request in flight.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("cannot start redis-server (install it: apt-get install redis-server): {error}"),
                )
            })?;
        self.child = Some(child);
        self.wait_until_ready()
    }

    fn wait_until_ready(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
                .and_then(|client| client.get_connection())
                .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection));
            if ping.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "redis-server on port {} did not answer PING within 10s",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: nothing gets a chance to flush beyond what was fsynced).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// A direct async connection, for checks and baselines that bypass the sidecar.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
