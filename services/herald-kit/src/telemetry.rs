//! Logging: `tracing` with `RUST_LOG` filtering, plain or JSON lines.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The logging flags every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log line format; the level is set with RUST_LOG (default `info`).
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,rdkafka=warn,librdkafka=warn";

/// Installs the global subscriber with [`DEFAULT_FILTER`]. Safe to call more than once.
pub fn init(format: LogFormat) {
    init_with_default(format, DEFAULT_FILTER);
}

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is not set.
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
