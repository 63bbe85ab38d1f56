//! Where the scheduled report goes: `[reports.weekly.deliveries.<name>]`, checked ([`check`]), and each kind
//! of delivery made ([`deliver`]): an email through an SMTP relay (the HTML with a plain-text alternative
//! and the CSV attached), a Slack-compatible webhook (a summary with the top movers and a link), S3 objects
//! under a dated key, and files in a local directory.
//!
//! Which week is delivered where, and what has been, is the report job's (`crate::jobs::weekly_report`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use collector::AwsContext;
use serde_json::{json, Value};

use super::text::{mover_label, signed_percent, signed_usd, usd};
use super::{Format, Week, WeeklyReport};
use crate::config::check::{item, key, named, Checker, Seg, Shared, MAX_CALL_TIMEOUT_SECS};
use crate::config::schema::{DeliverySection, WeeklyReportSection};
use crate::notify::smtp::{send_mail, Mail};
use crate::notify::webhook;
use crate::notify::{escape_slack, is_email, Secret, SmtpSettings};

/// The default schedule: Monday 08:00 UTC.
pub const DEFAULT_CRON: &str = "0 8 * * Mon";
/// The default S3 key prefix.
pub const DEFAULT_PREFIX: &str = "cloudwarden/reports/";
/// Movers listed each way in a webhook message.
pub const WEBHOOK_MOVERS: usize = 5;
const DEFAULT_WEBHOOK_TIMEOUT_SECS: u64 = 10;

/// One configured delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The name in `[reports.weekly.deliveries.<name>]`: the store's key and the metrics' `delivery` label.
    pub name: String,
    pub target: Target,
}

/// Where a delivery goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Email { to: Vec<String>, smtp: SmtpSettings },
    Webhook { url: Secret, timeout: Duration },
    S3 { bucket: String, prefix: String, account: String, region: String },
    Directory { path: PathBuf },
}

impl Target {
    /// `email`, `webhook`, `s3` or `directory`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Email { .. } => "email",
            Target::Webhook { .. } => "webhook",
            Target::S3 { .. } => "s3",
            Target::Directory { .. } => "directory",
        }
    }
}

/// Whether `name` may name a delivery: 1 to 64 of `a-z`, `0-9`, `-`, `_` (it becomes a metric label).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The keys each kind takes, besides `kind`.
fn allowed(kind: &str) -> &'static [&'static str] {
    match kind {
        "email" => &["to"],
        "webhook" => &["url", "timeout_secs"],
        "s3" => &["bucket", "prefix", "account", "region"],
        "directory" => &["path"],
        _ => &[],
    }
}

/// The keys a delivery section sets, besides `kind`.
fn keys_set(d: &DeliverySection) -> Vec<&'static str> {
    let mut set = Vec::new();
    let mut add = |k: &'static str, present: bool| {
        if present {
            set.push(k);
        }
    };
    add("to", !d.to.is_empty());
    add("url", d.url.is_some());
    add("timeout_secs", d.timeout_secs.is_some());
    add("bucket", d.bucket.is_some());
    add("prefix", d.prefix.is_some());
    add("account", d.account.is_some());
    add("region", d.region.is_some());
    add("path", d.path.is_some());
    set
}

/// Checks the deliveries and the formats of `[reports.weekly]`. Email deliveries use the section's own
/// `smtp`, else `fallback_smtp` (`[cleanup.notify.smtp]`).
pub(crate) fn check(
    cx: &mut Checker<'_>,
    s: &WeeklyReportSection,
    shared: &Shared<'_>,
    fallback_smtp: Option<&SmtpSettings>,
) -> (Vec<Format>, Vec<Delivery>) {
    let base = [Seg::Key("reports"), Seg::Key("weekly")];
    let mut formats = Vec::new();
    match &s.formats {
        None => formats = vec![Format::Html, Format::Markdown, Format::Csv, Format::Json],
        Some(list) => {
            if list.is_empty() {
                cx.error(&key(&base, "formats"), "must name at least one format");
            }
            for (i, f) in list.iter().enumerate() {
                match Format::parse(f) {
                    Some(parsed) if formats.contains(&parsed) => {
                        cx.error(&item(&base, "formats", i), format!("{f:?} is listed twice"))
                    }
                    Some(parsed) => formats.push(parsed),
                    None => cx.error(
                        &item(&base, "formats", i),
                        format!("unknown format {f:?}, expected `html`, `markdown`, `csv` or `json`"),
                    ),
                }
            }
        }
    }
    let own_smtp = s.smtp.as_ref().and_then(|m| crate::notify::check_smtp(cx, &key(&base, "smtp"), m, shared));
    let smtp = own_smtp.as_ref().or(fallback_smtp);
    let mut deliveries = Vec::new();
    for (name, d) in &s.deliveries {
        let at = named(&base, "deliveries", name);
        if !valid_name(name) {
            cx.error(&at, format!("{name:?}: a delivery's name is 1 to 64 of a-z, 0-9, - and _"));
        }
        let kind = d.kind.as_str();
        if allowed(kind).is_empty() {
            cx.error(
                &key(&at, "kind"),
                format!("unknown kind {kind:?}, expected `email`, `webhook`, `s3` or `directory`"),
            );
            continue;
        }
        let stray: Vec<&str> = keys_set(d).into_iter().filter(|k| !allowed(kind).contains(k)).collect();
        if !stray.is_empty() {
            cx.error(&at, format!("{} does not apply to a `{kind}` delivery", stray.join(", ")));
            continue;
        }
        let errors = cx.errors.len();
        let target = match kind {
            "email" => {
                if d.to.is_empty() {
                    cx.error(&key(&at, "to"), "an email delivery needs at least one recipient");
                }
                for (i, a) in d.to.iter().enumerate() {
                    if !is_email(a) {
                        cx.error(&item(&at, "to", i), format!("not an email address: {a:?}"));
                    }
                }
                if smtp.is_none() && s.smtp.is_none() {
                    cx.error(&at, "email needs a relay: configure [reports.weekly.smtp] (or [cleanup.notify.smtp])");
                }
                smtp.map(|smtp| Target::Email { to: d.to.clone(), smtp: smtp.clone() })
            }
            "webhook" => {
                let url = match &d.url {
                    None => {
                        cx.error(&at, "a webhook delivery needs `url`");
                        None
                    }
                    Some(u) => {
                        let url = cx.expand(&key(&at, "url"), u);
                        match crate::notify::webhook_target(&url) {
                            Ok(_) => Some(url),
                            Err(e) => {
                                cx.error(&key(&at, "url"), e);
                                None
                            }
                        }
                    }
                };
                let secs = d.timeout_secs.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_SECS);
                if secs == 0 {
                    cx.error(&key(&at, "timeout_secs"), "must be at least 1");
                }
                cx.at_most(&key(&at, "timeout_secs"), secs.into(), MAX_CALL_TIMEOUT_SECS, false);
                url.map(|u| Target::Webhook { url: Secret::new(u), timeout: Duration::from_secs(secs) })
            }
            "s3" => {
                let bucket = d.bucket.clone().unwrap_or_default();
                let bucket_ok = (3..=63).contains(&bucket.len())
                    && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
                if d.bucket.is_none() {
                    cx.error(&at, "an s3 delivery needs `bucket`");
                } else if !bucket_ok {
                    cx.error(&key(&at, "bucket"), format!("not an S3 bucket name: {bucket:?}"));
                }
                let prefix = d.prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.to_string());
                if prefix.starts_with('/') {
                    cx.error(&key(&at, "prefix"), "a key prefix does not start with /");
                }
                let account = cx.account(&at, d.account.as_ref(), shared);
                let region = d.region.clone().unwrap_or_else(|| shared.home_region.to_string());
                if d.region.is_some() {
                    cx.region(&key(&at, "region"), &region);
                }
                account.map(|account| Target::S3 { bucket, prefix, account, region })
            }
            _ => match &d.path {
                None => {
                    cx.error(&at, "a directory delivery needs `path`");
                    None
                }
                Some(p) if p.trim().is_empty() => {
                    cx.error(&key(&at, "path"), "must not be empty");
                    None
                }
                Some(p) => Some(Target::Directory { path: shared.base_dir.join(p) }),
            },
        };
        if cx.errors.len() == errors {
            if let Some(target) = target {
                deliveries.push(Delivery { name: name.clone(), target });
            }
        }
    }
    (formats, deliveries)
}

/// The report of one week in every format, rendered once for all deliveries.
pub struct Rendered {
    pub week: Week,
    pub html: String,
    pub markdown: String,
    pub csv: String,
    pub json: String,
}

impl Rendered {
    pub fn new(report: &WeeklyReport, week: Week) -> anyhow::Result<Rendered> {
        Ok(Rendered {
            week,
            html: super::render(report, Format::Html)?,
            markdown: super::render(report, Format::Markdown)?,
            csv: super::render(report, Format::Csv)?,
            json: super::render(report, Format::Json)?,
        })
    }

    pub fn get(&self, format: Format) -> &str {
        match format {
            Format::Html => &self.html,
            Format::Markdown => &self.markdown,
            Format::Csv => &self.csv,
            Format::Json => &self.json,
        }
    }

    /// `weekly-2026-W49.html`.
    pub fn file_name(&self, format: Format) -> String {
        format!("weekly-{}.{}", self.week, extension(format))
    }
}

pub fn extension(format: Format) -> &'static str {
    match format {
        Format::Html => "html",
        Format::Markdown => "md",
        Format::Csv => "csv",
        Format::Json => "json",
    }
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Html => "text/html; charset=utf-8",
        Format::Markdown => "text/markdown; charset=utf-8",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Json => "application/json",
    }
}

/// The one-line summary: `Weekly cost report 2026-W49: $1,234.56 (+12.3% vs the previous week)`.
pub fn subject(report: &WeeklyReport) -> String {
    format!(
        "Weekly cost report {}: {} ({} vs the previous week)",
        report.week,
        usd(report.total.this_week),
        signed_percent(report.total.change_percent)
    )
}

/// The webhook message: the summary, the top movers each way, the anomalies and budgets at a glance, and
/// the link when one is configured (`{week}` replaced).
pub fn slack(report: &WeeklyReport, link: Option<&str>) -> Value {
    let e = escape_slack;
    let t = &report.total;
    let mut summary = format!(
        "*Total* {} — {} ({}) against the previous week's {}",
        usd(t.this_week),
        signed_usd(t.change),
        signed_percent(t.change_percent),
        usd(t.previous_week)
    );
    if let Some(avg) = t.average {
        summary.push_str(&format!(
            "; {} ({}) against the {}-week average of {}",
            signed_usd(t.change_vs_average.unwrap_or_default()),
            signed_percent(t.change_vs_average_percent),
            t.average_weeks,
            usd(avg)
        ));
    }
    let movers = |title: &str, list: &[super::Mover]| {
        let mut text = format!("*{title}*");
        if list.is_empty() {
            text.push_str("\nnone");
        }
        for m in list.iter().take(WEBHOOK_MOVERS) {
            text.push_str(&format!(
                "\n• {}: {} ({})",
                e(&mover_label(m)),
                signed_usd(m.change),
                signed_percent(m.change_percent)
            ));
        }
        text
    };
    let mut facts = vec![format!("{} cost anomalies", report.anomalies.len())];
    let over = report.budgets.iter().filter(|b| b.status != "ok").count();
    if !report.budgets.is_empty() {
        facts.push(format!("{over} of {} budgets need attention", report.budgets.len()));
    }
    if !report.freshness.estimated_days.is_empty() || !report.freshness.missing_days.is_empty() {
        facts.push(format!(
            "{} days estimated, {} missing",
            report.freshness.estimated_days.len(),
            report.freshness.missing_days.len()
        ));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("Weekly cost report {}", report.week)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": summary}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": movers("Top movers up", &report.movers_up)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": movers("Top movers down", &report.movers_down)}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": e(&facts.join(" · "))}]}),
    ];
    if let Some(link) = link {
        let url = link.replace("{week}", &report.week);
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("<{url}|The full report>")}}));
    }
    json!({"text": subject(report), "blocks": blocks})
}

/// What a delivery did: where the report went and what the receiver said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub target: String,
    pub response: Option<String>,
}

/// What a delivery needs besides the report.
pub(crate) struct Deliverer<'a> {
    pub(crate) aws: &'a AwsContext,
    pub(crate) http: &'a webhook::Client,
    pub(crate) formats: &'a [Format],
    pub(crate) link: Option<&'a str>,
}

impl Deliverer<'_> {
    /// Makes `delivery` of `report` (rendered as `files`). The error names the delivery's target and what
    /// failed, never a secret.
    pub(crate) async fn deliver(
        &self,
        delivery: &Delivery,
        report: &WeeklyReport,
        files: &Rendered,
    ) -> Result<Delivered, String> {
        match &delivery.target {
            Target::Email { to, smtp } => {
                let subject = subject(report);
                let mail = Mail {
                    subject: &subject,
                    text: &files.markdown,
                    html: &files.html,
                    attachments: vec![(
                        files.file_name(Format::Csv),
                        content_type(Format::Csv),
                        files.csv.clone().into_bytes(),
                    )],
                    id: Some(format!("cloudwarden.report.weekly.{}.{}", files.week, delivery.name)),
                };
                let sent = send_mail(smtp, to, &mail).await.map_err(|e| format!("email to {}: {e}", to.join(", ")))?;
                Ok(Delivered {
                    target: to.join(", "),
                    response: Some(format!("{} {}", sent.message_id, sent.response)),
                })
            }
            Target::Webhook { url, timeout } => {
                let body = slack(report, self.link);
                match self.http.post_json(url, *timeout, &body).await {
                    Ok(posted) => Ok(Delivered { target: posted.target, response: Some(posted.response) }),
                    Err((target, failure)) => Err(format!("webhook {target}: {failure}")),
                }
            }
            Target::S3 { bucket, prefix, account, region } => {
                let account = self
                    .aws
                    .accounts
                    .iter()
                    .find(|a| &a.spec.name == account)
                    .ok_or_else(|| format!("s3://{bucket}: no configured account is named {account:?}"))?;
                let dir = s3_dir(prefix, files.week);
                let mut etags = Vec::new();
                for &format in self.formats {
                    let key = format!("{dir}{}", files.file_name(format));
                    let etag = collector::aws::s3::put_object(
                        self.aws,
                        account,
                        region,
                        bucket,
                        &key,
                        content_type(format),
                        files.get(format).as_bytes().to_vec(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    etags.push(format!("{}={}", extension(format), etag.unwrap_or_default().trim_matches('"')));
                }
                Ok(Delivered { target: format!("s3://{bucket}/{dir}"), response: Some(etags.join(" ")) })
            }
            Target::Directory { path } => {
                let written = write_files(path, files, self.formats).await?;
                Ok(Delivered { target: written.join(", "), response: None })
            }
        }
    }
}

/// The dated folder of a week's objects: `{prefix}weekly/2026-W49/`.
pub fn s3_dir(prefix: &str, week: Week) -> String {
    let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
    format!("{prefix}weekly/{week}/")
}

/// Writes each format's file into `dir` (created when missing), each through a temporary file renamed into
/// place, so a reader never sees half a report. Returns the paths written.
async fn write_files(dir: &Path, files: &Rendered, formats: &[Format]) -> Result<Vec<String>, String> {
    let fail = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    tokio::fs::create_dir_all(dir).await.map_err(|e| fail("cannot create", dir, e))?;
    let mut written = Vec::new();
    for &format in formats {
        let path = dir.join(files.file_name(format));
        let tmp = dir.join(format!(".{}.tmp", files.file_name(format)));
        tokio::fs::write(&tmp, files.get(format)).await.map_err(|e| fail("cannot write", &tmp, e))?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(fail("cannot write", &path, e));
        }
        written.push(path.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys() {
        assert!(valid_name("finance-mail") && valid_name("s3_archive") && valid_name("a"));
        assert!(!valid_name("") && !valid_name("Finance") && !valid_name("a b") && !valid_name(&"a".repeat(65)));
        let w = Week::parse("2026-W49").unwrap();
        assert_eq!(s3_dir("cloudwarden/reports/", w), "cloudwarden/reports/weekly/2026-W49/");
        assert_eq!(s3_dir("reports", w), "reports/weekly/2026-W49/");
        assert_eq!(s3_dir("", w), "weekly/2026-W49/");
    }
}
