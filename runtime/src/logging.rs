//! Log output: text or JSON lines on stdout, at the configured level.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` refines the level when set, for debugging.
pub fn init(level: tracing::Level, as_json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},h2=warn,hyper=warn,tower=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if as_json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    if let Err(error) = result {
        eprintln!("outrigger: logging was already initialised: {error}");
    }
}
