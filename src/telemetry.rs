//! Structured logs: human-readable by default, JSON by configuration; the level comes from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Loggers that may write secrets, silenced below `error` whatever `RUST_LOG` says.
const QUIET: [&str; 1] = ["sqlx_postgres::options::parse=error"];

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // sqlx warns about a connect parameter it does not know with the parameter's value: a password in the
    // URL's query would be logged. Whatever RUST_LOG says, that logger stays quiet.
    for quiet in QUIET {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}
