//! Helpers the benchmark programs share.

/// A byte-for-byte TCP relay on its own thread to `upstream_port` on loopback: the cost of one
/// extra loopback hop on this machine, the floor for any proxy or sidecar in a path.
pub fn spawn_tcp_relay(upstream_port: u16) -> anyhow::Result<u16> {
    spawn_loopback_server(move |mut inbound| async move {
        let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
        else {
            return;
        };
        let _ = outbound.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    })
}

/// A TCP echo server on its own thread on loopback: one round trip to it is what any request
/// to another local process costs on this machine before that process does anything.
pub fn spawn_tcp_echo() -> anyhow::Result<u16> {
    spawn_loopback_server(|mut stream| async move {
        let (mut reader, mut writer) = stream.split();
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
    })
}

/// A loopback listener served by `serve` (one task per accepted connection, `TCP_NODELAY` set)
/// on a current-thread runtime of its own thread, apart from the benchmark's client; returns
/// its port.
fn spawn_loopback_server<Serve, Served>(serve: Serve) -> anyhow::Result<u16>
where
    Serve: Fn(tokio::net::TcpStream) -> Served + Send + 'static,
    Served: Future<Output = ()> + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        let tasks = tokio::task::LocalSet::new();
        tasks.block_on(&runtime, async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(serve(stream));
            }
        });
    });
    Ok(port)
}

/// One round trip of `message` through an echo server's connection.
pub async fn echo_round_trip(
    stream: &mut tokio::net::TcpStream,
    message: &[u8],
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(message).await?;
    let mut answer = vec![0; message.len()];
    stream.read_exact(&mut answer).await?;
    anyhow::ensure!(answer == message, "the echo answered other bytes");
    Ok(())
}

/// User and system CPU seconds of a process so far.
pub fn cpu_seconds(pid: u32) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let per_second = clock_ticks_per_second();
    (ticks(11) / per_second, ticks(12) / per_second)
}

/// Asked of `getconf` once: `cpu_seconds` is read around every bulk batch.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
