//! The command line: `run`, `check-config`, `collect`, `cleanup plan|history`, `anomaly score|evaluate`, `--version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::daemon::{cancel_on_signals, Daemon};
use crate::jobs::cost_explorer::CostExplorerDetail;
use crate::jobs::inventory::InventoryDetail;
use crate::runtime::CycleSummary;
use crate::store::RunOutcome;
use crate::telemetry;

/// Exit code of a configuration that does not validate.
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "cloudwarden", version, about = "Observability and cost-governance daemon for AWS")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: collect on schedule, serve /metrics, /healthz and /readyz.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short, env = "CLOUDWARDEN_CONFIG", default_value = "cloudwarden.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and report every problem in it.
    CheckConfig {
        #[arg(long, short, env = "CLOUDWARDEN_CONFIG", default_value = "cloudwarden.toml")]
        config: PathBuf,
    },
    /// Run every enabled collector once (or only `--collector`), store the results, print summaries. The
    /// weekly report's delivery and the retention prune run only when `--collector` names them.
    Collect {
        /// Accepted and ignored: `collect` always runs each job once and exits (the daemon is `run`).
        #[arg(long, hide = true)]
        once: bool,
        #[arg(long, short, env = "CLOUDWARDEN_CONFIG", default_value = "cloudwarden.toml")]
        config: PathBuf,
        /// Print the summaries as a JSON array.
        #[arg(long)]
        json: bool,
        /// Run only this collector (`inventory`, `cost_explorer`, `cloudwatch`, `logs`, `terraform`, `billing_files`, `rules`).
        #[arg(long)]
        collector: Option<String>,
    },
    /// Cleanup plans and their audit trail (reads the database; no AWS call).
    Cleanup {
        #[command(subcommand)]
        command: CleanupCommand,
    },
    /// Reports built from the database (no AWS call).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Metric anomaly detection.
    Anomaly {
        #[command(subcommand)]
        command: AnomalyCommand,
    },
}

/// The subcommands of `cloudwarden cleanup`.
#[derive(Debug, Subcommand)]
pub enum CleanupCommand {
    /// The plans under way: what is due, what would happen now, and why.
    Plan {
        #[arg(long, short, env = "CLOUDWARDEN_CONFIG", default_value = "cloudwarden.toml")]
        config: PathBuf,
        /// Print the plans with their next steps as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The audit trail: every transition, its time, actor and AWS request id.
    History {
        #[arg(long, short, env = "CLOUDWARDEN_CONFIG", default_value = "cloudwarden.toml")]
        config: PathBuf,
        /// Only this plan's transitions.
        #[arg(long)]
        plan: Option<i64>,
        /// The newest this many rows (default 100).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

/// The subcommands of `cloudwarden report`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The weekly cost report of an ISO week, from what the collectors stored.
    Weekly {
        #[arg(long, short, env = "CLOUDWARDEN_CONFIG", default_value = "cloudwarden.toml")]
        config: PathBuf,
        /// The ISO week, e.g. `2026-W49`; default: the last complete week (UTC).
        #[arg(long)]
        week: Option<String>,
        /// `html`, `markdown`, `csv` or `json`.
        #[arg(long, default_value = "markdown")]
        format: String,
        /// Write the report here instead of to standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// The subcommands of `cloudwarden anomaly`.
#[derive(Debug, Subcommand)]
pub enum AnomalyCommand {
    /// Score a `timestamp,value` CSV file; writes `timestamp,value,anomaly_score` (same rows, same order).
    Score {
        /// Input CSV with a `timestamp,value` header (NAB's format).
        #[arg(long)]
        input: PathBuf,
        /// Output CSV; standard output when absent.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Score every file of a labelled corpus (NAB's layout) and print its NAB score: the whole set, each
    /// category, and leave one category out (the configuration and threshold chosen without the category).
    Evaluate {
        /// The corpus folder: `category/file.csv` files of `timestamp,value`.
        #[arg(long)]
        data: PathBuf,
        /// NAB's windows JSON (`labels/combined_windows.json`): `{"category/file.csv": [[start, end], ...]}`.
        #[arg(long)]
        labels: PathBuf,
        /// The detector to judge: `range` (the daemon's) or `novelty` (the candidate).
        #[arg(long, value_enum, default_value = "range")]
        detector: crate::anomaly_cli::DetectorChoice,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        eprintln!("{} error(s) in {}", errors.0.len(), path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Anomaly { command: AnomalyCommand::Score { input, output } } => {
            match crate::anomaly_cli::run(&input, output.as_deref()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Anomaly { command: AnomalyCommand::Evaluate { data, labels, detector } } => {
            match crate::anomaly_cli::evaluate_command(&data, &labels, detector) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Cleanup { command } => {
            let (path, json) = match &command {
                CleanupCommand::Plan { config, json } => (config, *json),
                CleanupCommand::History { config, json, .. } => (config, *json),
            };
            let config = match load(path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            runtime().block_on(async move {
                let shown = match command {
                    CleanupCommand::Plan { .. } => crate::cleanup_cli::plan(&config, chrono::Utc::now())
                        .await
                        .map(|(text, lines)| if json { to_json(&lines) } else { text }),
                    CleanupCommand::History { plan, limit, .. } => {
                        crate::cleanup_cli::history(&config, plan, limit.clamp(1, 1_000_000))
                            .await
                            .map(|(text, rows)| if json { to_json(&rows) } else { text })
                    }
                };
                match shown {
                    Ok(s) => {
                        print!("{s}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fatal(e),
                }
            })
        }
        Command::Report { command: ReportCommand::Weekly { config, week, format, output } } => {
            let Some(format) = crate::report::Format::parse(&format) else {
                eprintln!("error: --format {format:?}: expected html, markdown, csv or json");
                return ExitCode::from(2);
            };
            let week = match week.as_deref().map(crate::report::Week::parse).transpose() {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: --week {e}");
                    return ExitCode::from(2);
                }
            };
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            runtime().block_on(async move {
                let now = chrono::Utc::now();
                let text =
                    match crate::report::weekly(&config, week.unwrap_or(crate::report::Week::last_complete(now)), now)
                        .await
                        .and_then(|r| crate::report::render(&r, format))
                    {
                        Ok(t) => t,
                        Err(e) => return fatal(e),
                    };
                match output {
                    None => {
                        print!("{text}");
                        ExitCode::SUCCESS
                    }
                    Some(path) => match std::fs::write(&path, text) {
                        Ok(()) => {
                            eprintln!("wrote {}", path.display());
                            ExitCode::SUCCESS
                        }
                        Err(e) => fatal(anyhow::anyhow!("cannot write {}: {e}", path.display())),
                    },
                }
            })
        }
        Command::CheckConfig { config } => match load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} account(s), inventory {})",
                    config.display(),
                    c.aws.accounts.len(),
                    c.inventory.as_ref().map_or("disabled".to_string(), |j| format!(
                        "{}, {} region(s)",
                        j.schedule,
                        j.settings.regions.len()
                    ))
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            telemetry::init(config.log_format);
            runtime().block_on(async move {
                let daemon = match Daemon::new(config).await {
                    Ok(d) => d,
                    Err(e) => return fatal(e),
                };
                let shutdown = CancellationToken::new();
                cancel_on_signals(shutdown.clone());
                match daemon.run(shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fatal(e),
                }
            })
        }
        Command::Collect { once: _, config, json, collector } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            telemetry::init(config.log_format);
            runtime().block_on(async move {
                let daemon = match Daemon::new(config).await {
                    Ok(d) => d,
                    Err(e) => return fatal(e),
                };
                // Delivering the weekly report and pruning history are the daemon's: they run here only when
                // named with --collector.
                let jobs: Vec<_> = daemon
                    .jobs()
                    .into_iter()
                    .filter(|name| match collector.as_deref() {
                        Some(c) => c == *name,
                        None => !DAEMON_ONLY.contains(name),
                    })
                    .collect();
                if jobs.is_empty() {
                    eprintln!(
                        "{}",
                        match &collector {
                            Some(c) => format!("collector {c:?} is not enabled in the configuration"),
                            None => "no collector is enabled in the configuration".to_string(),
                        }
                    );
                    return ExitCode::from(EXIT_CONFIG);
                }
                let cancel = CancellationToken::new();
                cancel_on_signals(cancel.clone());
                let mut summaries = Vec::new();
                for name in jobs {
                    summaries.push(daemon.run_job(name, chrono::Utc::now(), &cancel).await);
                }
                daemon.store.close().await;
                if json {
                    println!("{}", serde_json::to_string_pretty(&summaries).expect("summary serializes"));
                } else {
                    for s in &summaries {
                        print!("{}", human_summary(s));
                    }
                }
                if summaries.iter().all(|s| matches!(s.outcome, RunOutcome::Success | RunOutcome::Skipped)) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

fn runtime() -> tokio::runtime::Runtime {
    crate::memory::runtime().expect("cannot start the tokio runtime")
}

fn fatal(e: anyhow::Error) -> ExitCode {
    tracing::error!(error = format!("{e:#}"), "fatal");
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

/// Jobs `collect` runs only when `--collector` names them.
const DAEMON_ONLY: [&str; 2] = [crate::jobs::weekly_report::NAME, crate::jobs::retention::NAME];

/// The summary `collect --once` prints for one run.
pub fn human_summary(s: &CycleSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} run {}: {} in {:.1}s, {} items, {} AWS calls",
        s.collector,
        s.run_id.map_or("-".into(), |i| i.to_string()),
        s.outcome.as_str(),
        s.duration_secs,
        s.items,
        s.api_call_total()
    );
    if let Some(inv) = s.detail::<InventoryDetail>() {
        let _ = writeln!(out, "{} resources marked gone", inv.write.gone);
        if !inv.inventory.is_empty() {
            let _ =
                writeln!(out, "\n{:<14} {:<16} {:<22} {:>7} {:>9}", "ACCOUNT", "REGION", "TYPE", "TOTAL", "UNTAGGED");
            let (mut total, mut untagged) = (0, 0);
            for c in &inv.inventory {
                let _ = writeln!(
                    out,
                    "{:<14} {:<16} {:<22} {:>7} {:>9}",
                    c.account_id, c.region, c.resource_type, c.total, c.untagged
                );
                total += c.total;
                untagged += c.untagged;
            }
            let _ = writeln!(out, "{:<14} {:<16} {:<22} {:>7} {:>9}", "all", "", "", total, untagged);
        }
    }
    if let Some(ce) = s.detail::<CostExplorerDetail>() {
        match (&ce.skipped, ce.window_start, ce.window_end) {
            (Some(why), _, _) => {
                let _ = writeln!(out, "skipped: {why}");
            }
            (None, Some(a), Some(b)) => {
                let _ = writeln!(
                    out,
                    "days {a} to {b} (exclusive): {} requests, {} cost rows stored",
                    ce.requests, ce.rows
                );
            }
            _ => {}
        }
    }
    if !s.api_calls.is_empty() {
        let _ = writeln!(out, "\nAWS calls:");
        for (op, n) in &s.api_calls {
            let _ = writeln!(out, "  {op:<40} {n:>6}");
        }
    }
    if !s.failures.is_empty() {
        let _ = writeln!(out, "\nFailures:");
        for f in &s.failures {
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                f.account,
                f.region.as_deref().unwrap_or("(all regions)"),
                f.source,
                f.error
            );
        }
    } else if let Some(e) = &s.error {
        let _ = writeln!(out, "\nError: {e}");
    }
    out.push('\n');
    out
}
