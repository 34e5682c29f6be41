//! Log output: text or JSON lines on stdout, at the configured level.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` refines the level when set, for debugging.
pub fn init(level: tracing::Level, as_json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},h2=warn,hyper=warn,tower=warn")));
    // A log line that cannot be written (the supervisor reading stdout went away) is dropped.
    // tracing-subscriber would otherwise report it with `eprintln!`, which panics when stderr
    // is closed too, and the panic would end whichever task was logging.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .log_internal_errors(false);
    let result = if as_json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    if let Err(error) = result {
        report_to_stderr(&format!("logging was already initialised: {error}"));
    }
}

/// Writes `outrigger: {message}` to stderr, for failures before or outside logging. A closed
/// stderr is ignored: `eprintln!` would panic instead.
pub fn report_to_stderr(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "outrigger: {message}");
}
