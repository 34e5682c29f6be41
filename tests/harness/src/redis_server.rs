//! A real `redis-server` in a temporary directory. By default with append-only persistence
//! fsynced on every write, so that every acknowledged write survives a stop and restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How to run the server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Without persistence, as Redis usually runs as a cache (benchmarks).
    pub volatile: bool,
    /// Serve TLS only, with a self-signed certificate made by `openssl`.
    pub tls: bool,
    /// `requirepass`.
    pub password: Option<String>,
}

pub struct RedisServer {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts a durable server on a free port and waits until it answers PING.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server without persistence.
    pub fn start_volatile() -> std::io::Result<Self> {
        Self::start_with(RedisOptions {
            volatile: true,
            ..RedisOptions::default()
        })
    }

    pub fn start_with(options: RedisOptions) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut server = Self {
            port: crate::free_port(),
            dir,
            child: None,
            options,
        };
        if server.options.tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
            server.make_certificate()?;
        }
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

    /// A URL for the redis crate; TLS without verification of the self-signed certificate.
    pub fn url(&self) -> String {
        let auth = self
            .options
            .password
            .as_ref()
            .map(|password| format!(":{password}@"))
            .unwrap_or_default();
        if self.options.tls {
            format!("rediss://{auth}127.0.0.1:{}/#insecure", self.port)
        } else {
            format!("redis://{auth}127.0.0.1:{}/", self.port)
        }
    }

    fn make_certificate(&self) -> std::io::Result<()> {
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(self.dir.path().join("key.pem"))
            .arg("-out")
            .arg(self.dir.path().join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(
                "openssl could not make a test certificate",
            ))
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--save", ""]);
        if self.options.tls {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .args([
                    "--tls-cert-file",
                    &file("cert.pem"),
                    "--tls-key-file",
                    &file("key.pem"),
                ])
                .args(["--tls-ca-cert-file", &file("cert.pem")]);
        } else {
            command.args(["--port", &port]);
        }
        if self.options.volatile {
            command.args(["--appendonly", "no"]);
        } else {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        }
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        let child = command
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
            let ping = redis::Client::open(self.url())
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
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis-server")
    }
}

impl RedisServer {
    /// How many entries of `stream` the consumer `group` has read but not acknowledged.
    pub async fn pending_count(&self, stream: &str, group: &str) -> u64 {
        let mut direct = self.client().await;
        let summary: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .query_async(&mut direct)
            .await
            .expect("XPENDING");
        match summary.first() {
            Some(redis::Value::Int(count)) => u64::try_from(*count).unwrap_or_default(),
            other => panic!("unexpected XPENDING reply: {other:?}"),
        }
    }

    /// Makes the server unresponsive for `seconds` (`DEBUG SLEEP`, Redis is single-threaded),
    /// so a request through the sidecar stays in flight. Returns once the sleep has begun; the
    /// handle ends when it is over.
    pub async fn hold_busy(&self, seconds: u32) -> tokio::task::JoinHandle<()> {
        let mut direct = self.client().await;
        let sleeper = tokio::spawn(async move {
            // The direct client may stop waiting before the server wakes; the sleep still runs.
            let _ = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(seconds)
                .query_async::<()>(&mut direct)
                .await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        sleeper
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
