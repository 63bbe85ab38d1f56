//! What a digest says: its subject, a plain-text body, an HTML body (one table, inline styles, everything
//! escaped) and a Slack-compatible JSON message (short: long lists end with "and N more").

use std::fmt::Write as _;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

use super::{Digest, DigestItem, Notice};

/// The items a Slack message lists before "and N more" (Slack allows 50 blocks per message).
pub const SLACK_MAX_ITEMS: usize = 10;
/// The longest [`Message::short_subject`]: SNS's limit on a subject.
pub const SHORT_SUBJECT_CHARS: usize = 100;
/// Slack's limits on the text of a header block and of a section block.
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_SECTION_CHARS: usize = 3000;

/// A digest rendered for every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// One line.
    pub subject: String,
    /// The subject in at most [`SHORT_SUBJECT_CHARS`] characters (SNS's limit): without the savings when
    /// they do not fit.
    pub short_subject: String,
    /// The email's text part, and the SNS message.
    pub text: String,
    /// The email's HTML part.
    pub html: String,
    /// The webhook's body: `{"text": ..., "blocks": [...]}`.
    pub slack: Value,
}

/// Renders `digest` for every channel.
pub fn render(digest: &Digest) -> Message {
    Message {
        subject: subject(digest),
        short_subject: subject_within(digest, SHORT_SUBJECT_CHARS),
        text: text(digest),
        html: html(digest),
        slack: slack(digest),
    }
}

/// `$1,234.57`: US dollars rounded half away from zero to cents, thousands separated.
pub fn usd(amount: Decimal) -> String {
    let mut cents = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    cents.rescale(2);
    let sign = if cents.is_sign_negative() && !cents.is_zero() { "-" } else { "" };
    let digits = cents.abs().to_string();
    let (whole, fraction) = digits.split_once('.').unwrap_or((&digits, "00"));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}${grouped}.{fraction}")
}

/// What an action code means, in words.
pub fn action_words(action: &str) -> String {
    match action {
        "stop" => "stop".into(),
        "snapshot_delete" => "snapshot, then delete".into(),
        "release" => "release".into(),
        "delete" => "delete".into(),
        "set_retention" => "set a log retention".into(),
        other => other.replace('_', " "),
    }
}

/// The digest's savings: the sum of the items' known monthly amounts, and how many items have one. `None`
/// when the sum leaves the decimal range (the amounts are then shown one by one only).
fn savings(d: &Digest) -> Option<(Decimal, usize)> {
    let known: Vec<Decimal> = d.items.iter().filter_map(|i| i.monthly_usd).collect();
    let n = known.len();
    collector::money::sum(known).ok().map(|total| (total, n))
}

/// The earliest due date, and whether every item has it.
fn due(d: &Digest) -> Option<(chrono::NaiveDate, bool)> {
    let first = d.items.iter().map(|i| i.due).min()?;
    Some((first, d.items.iter().all(|i| i.due == first)))
}

fn count(n: usize) -> String {
    format!("{n} resource{}", if n == 1 { "" } else { "s" })
}

/// `[cloudwarden] 3 resources will be cleaned up from 2026-04-10 (saves $42.10/month)`; a final warning says
/// so first.
pub fn subject(d: &Digest) -> String {
    subject_with(d, true)
}

/// The subject in at most `max` characters: without the savings when they do not fit, cut when even that
/// does not.
pub fn subject_within(d: &Digest, max: usize) -> String {
    let full = subject_with(d, true);
    if full.chars().count() <= max {
        return full;
    }
    truncate(&subject_with(d, false), max)
}

fn subject_with(d: &Digest, savings_too: bool) -> String {
    let mut s = String::from("[cloudwarden] ");
    if d.notice == Notice::FinalWarning {
        s.push_str("FINAL WARNING: ");
    }
    s.push_str(&count(d.items.len()));
    s.push_str(" will be cleaned up");
    if let Some((date, all)) = due(d) {
        let _ = write!(s, " {} {date}", if all { "on" } else { "from" });
    }
    if let Some((total, n)) = savings(d).filter(|(_, n)| savings_too && *n > 0) {
        let _ = write!(s, " (saves {}/month{})", usd(total), if n < d.items.len() { " or more" } else { "" });
    }
    one_line(&s)
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The opening sentences, shared by the text and HTML bodies.
fn intro(d: &Digest) -> Vec<String> {
    let mut lines = vec![format!(
        "cloudwarden will clean up {} you own unless you keep {}: each is listed below with why, what will be done, when, and how to keep it.",
        count(d.items.len()),
        if d.items.len() == 1 { "it" } else { "them" }
    )];
    if d.notice == Notice::FinalWarning {
        if let Some((date, _)) = due(d) {
            lines.push(format!("This is the final warning: the first action is due on {date}."));
        }
    }
    match savings(d) {
        Some((total, n)) if n == d.items.len() => {
            lines.push(format!("Estimated savings: {} per month.", usd(total)));
        }
        Some((total, n)) if n > 0 => lines.push(format!(
            "Estimated savings: {} per month for the {n} of {} resources with a known cost.",
            usd(total),
            d.items.len()
        )),
        _ => {}
    }
    lines
}

/// How to keep resources in general, after the list.
fn footer(d: &Digest) -> String {
    format!(
        "Resources marked for cleanup carry the tag {}. To keep a resource, follow its \"to keep\" line; to exempt it from cleanup for good, add the tag {}.",
        d.mark_tag_key, d.protect_tag_key
    )
}

fn title(i: &DigestItem) -> String {
    match &i.name {
        Some(name) if !name.is_empty() && name != &i.resource_id => format!("{} \"{name}\"", i.resource_id),
        _ => i.resource_id.clone(),
    }
}

fn account(i: &DigestItem) -> String {
    match &i.account_name {
        Some(name) if !name.is_empty() => format!("{name} ({})", i.account_id),
        _ => i.account_id.clone(),
    }
}

fn monthly(i: &DigestItem) -> String {
    i.monthly_usd.map(|m| format!("{} per month", usd(m))).unwrap_or_else(|| "unknown".into())
}

/// The plain-text body (also the SNS message).
pub fn text(d: &Digest) -> String {
    let mut s = format!("Hello {},\n\n", d.contact);
    for line in intro(d) {
        s.push_str(&line);
        s.push('\n');
    }
    let n = d.items.len();
    for (k, i) in d.items.iter().enumerate() {
        let _ = write!(
            s,
            "\n{}/{n}  {}\n  Type:     {}\n  Account:  {}\n  Region:   {}\n  ARN:      {}\n  Why:      {} (rule {})\n  Action:   {}\n  Due:      {}\n  Savings:  {}\n  To keep:  {}\n",
            k + 1,
            title(i),
            i.resource_type,
            account(i),
            i.region,
            i.arn,
            i.reason,
            i.rule,
            action_words(&i.action),
            i.due,
            monthly(i),
            i.keep,
        );
    }
    let _ = write!(s, "\n{}\n\n-- \ncloudwarden\n", footer(d));
    s
}

/// `s` with HTML's special characters escaped, for text and attribute values alike.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const TH: &str = "text-align:left;padding:6px 8px;border-bottom:2px solid #999;background:#f2f2f2;";
const TD: &str = "padding:6px 8px;border-bottom:1px solid #ddd;vertical-align:top;";

/// The HTML body: the same as the text, with the resources in one table.
pub fn html(d: &Digest) -> String {
    let e = escape_html;
    let mut s = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n<body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222;\">\n",
    );
    if d.notice == Notice::FinalWarning {
        s.push_str("<p style=\"color:#b00020;font-weight:bold;\">Final warning</p>\n");
    }
    let _ = writeln!(s, "<p>Hello {},</p>", e(&d.contact));
    for line in intro(d) {
        let _ = writeln!(s, "<p>{}</p>", e(&line));
    }
    s.push_str("<table style=\"border-collapse:collapse;font-size:13px;\" cellspacing=\"0\">\n<tr>");
    for h in ["Resource", "Account / region", "Why", "Action", "Due", "Savings / month", "To keep"] {
        let _ = write!(s, "<th style=\"{TH}\">{h}</th>");
    }
    s.push_str("</tr>\n");
    for i in &d.items {
        let _ = writeln!(
            s,
            "<tr><td style=\"{TD}\"><b>{}</b><br><span style=\"color:#666;\">{}</span><br><span style=\"color:#666;font-size:11px;\">{}</span></td><td style=\"{TD}\">{}<br>{}</td><td style=\"{TD}\">{}<br><span style=\"color:#666;\">rule {}</span></td><td style=\"{TD}\">{}</td><td style=\"{TD}white-space:nowrap;\">{}</td><td style=\"{TD}text-align:right;white-space:nowrap;\">{}</td><td style=\"{TD}\">{}</td></tr>",
            e(&title(i)),
            e(&i.resource_type),
            e(&i.arn),
            e(&account(i)),
            e(&i.region),
            e(&i.reason),
            e(&i.rule),
            e(&action_words(&i.action)),
            i.due,
            e(&i.monthly_usd.map(usd).unwrap_or_else(|| "unknown".into())),
            e(&i.keep),
        );
    }
    if let Some((total, n)) = savings(d).filter(|(_, n)| *n > 0) {
        let _ = writeln!(
            s,
            "<tr><td style=\"{TD}\" colspan=\"5\"><b>Total{}</b></td><td style=\"{TD}text-align:right;white-space:nowrap;\"><b>{}</b></td><td style=\"{TD}\"></td></tr>",
            if n < d.items.len() { " (known costs)" } else { "" },
            e(&usd(total))
        );
    }
    let _ = write!(s, "</table>\n<p>{}</p>\n<p style=\"color:#666;\">cloudwarden</p>\n</body></html>\n", e(&footer(d)));
    s
}

/// `s` with Slack's control characters escaped (`&`, `<`, `>`), so user text never becomes a link or a
/// mention.
pub fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `s` cut to at most `max` characters, ending with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The webhook body: a `text` fallback (the subject) and at most [`SLACK_MAX_ITEMS`] resources as blocks.
pub fn slack(d: &Digest) -> Value {
    let e = escape_slack;
    let subject = subject(d);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": subject_within(d, SLACK_HEADER_CHARS)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&e(&intro(d).join("\n")), SLACK_SECTION_CHARS)}}),
    ];
    for i in d.items.iter().take(SLACK_MAX_ITEMS) {
        let savings = i.monthly_usd.map(|m| format!(" · saves {}/month", usd(m))).unwrap_or_default();
        let text = format!(
            "*{}* `{}` · {} · {}\n{} (rule {})\n*{}* on *{}*{savings}\nTo keep: {}",
            e(&title(i)),
            e(&i.resource_type),
            e(&account(i)),
            e(&i.region),
            e(&i.reason),
            e(&i.rule),
            e(&action_words(&i.action)),
            i.due,
            e(&i.keep),
        );
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, SLACK_SECTION_CHARS)}}));
    }
    if d.items.len() > SLACK_MAX_ITEMS {
        let more = d.items.len() - SLACK_MAX_ITEMS;
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("…and {more} more (the email digest lists them all).")}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&e(&footer(d)), SLACK_SECTION_CHARS)}]}));
    json!({"text": subject, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn item(id: &str, due: &str, monthly: Option<&str>) -> DigestItem {
        DigestItem {
            arn: format!("arn:aws:ec2:us-east-1:123456789012:instance/{id}"),
            account_id: "123456789012".into(),
            account_name: Some("prod".into()),
            region: "us-east-1".into(),
            resource_type: "ec2:instance".into(),
            resource_id: id.into(),
            name: Some(format!("web-{id}")),
            rule: "idle-ec2".into(),
            reason: "CPU below 2% for 14 days".into(),
            action: "stop".into(),
            due: NaiveDate::parse_from_str(due, "%Y-%m-%d").unwrap(),
            monthly_usd: monthly.map(|m| m.parse().unwrap()),
            keep: "add the tag keep=true".into(),
        }
    }

    fn digest(notice: Notice, items: Vec<DigestItem>) -> Digest {
        Digest {
            contact: "team-a".into(),
            notice,
            items,
            mark_tag_key: "cloudwarden:cleanup".into(),
            protect_tag_key: "cloudwarden:protect".into(),
        }
    }

    #[test]
    fn money() {
        let check = |amount: &str, shown: &str| assert_eq!(usd(amount.parse().unwrap()), shown, "{amount}");
        check("0", "$0.00");
        check("0.004", "$0.00");
        check("0.005", "$0.01");
        check("12.345", "$12.35");
        check("999.999", "$1,000.00");
        check("1234567.8", "$1,234,567.80");
        check("100", "$100.00");
        check("-1234.5", "-$1,234.50");
        check("-0.001", "$0.00");
        check("1000000000000000", "$1,000,000,000,000,000.00");
    }

    #[test]
    fn subjects() {
        let one = digest(Notice::First, vec![item("i-1", "2026-04-10", Some("12.5"))]);
        assert_eq!(subject(&one), "[cloudwarden] 1 resource will be cleaned up on 2026-04-10 (saves $12.50/month)");
        let mixed = digest(
            Notice::FinalWarning,
            vec![
                item("i-1", "2026-04-12", Some("1000")),
                item("i-2", "2026-04-10", None),
                item("i-3", "2026-04-11", Some("0.333")),
            ],
        );
        assert_eq!(
            subject(&mixed),
            "[cloudwarden] FINAL WARNING: 3 resources will be cleaned up from 2026-04-10 (saves $1,000.33/month or more)"
        );
        assert_eq!(
            subject_within(&mixed, SHORT_SUBJECT_CHARS),
            "[cloudwarden] FINAL WARNING: 3 resources will be cleaned up from 2026-04-10"
        );
        assert_eq!(subject_within(&mixed, 20), "[cloudwarden] FINAL…");
        assert_eq!(subject_within(&one, SHORT_SUBJECT_CHARS), subject(&one));
        let unknown = digest(Notice::First, vec![item("i-1", "2026-04-10", None)]);
        assert_eq!(subject(&unknown), "[cloudwarden] 1 resource will be cleaned up on 2026-04-10");
        // A sum beyond the decimal range is left out, never a panic.
        let huge = digest(
            Notice::First,
            vec![
                item("i-1", "2026-04-10", Some("79228162514264337593543950335")),
                item("i-2", "2026-04-10", Some("1")),
            ],
        );
        assert_eq!(subject(&huge), "[cloudwarden] 2 resources will be cleaned up on 2026-04-10");
    }

    #[test]
    fn text_lists_everything() {
        let d =
            digest(Notice::FinalWarning, vec![item("i-1", "2026-04-10", Some("30")), item("i-2", "2026-04-11", None)]);
        let t = text(&d);
        assert_eq!(
            t,
            "Hello team-a,

cloudwarden will clean up 2 resources you own unless you keep them: each is listed below with why, what will be done, when, and how to keep it.
This is the final warning: the first action is due on 2026-04-10.
Estimated savings: $30.00 per month for the 1 of 2 resources with a known cost.

1/2  i-1 \"web-i-1\"
  Type:     ec2:instance
  Account:  prod (123456789012)
  Region:   us-east-1
  ARN:      arn:aws:ec2:us-east-1:123456789012:instance/i-1
  Why:      CPU below 2% for 14 days (rule idle-ec2)
  Action:   stop
  Due:      2026-04-10
  Savings:  $30.00 per month
  To keep:  add the tag keep=true

2/2  i-2 \"web-i-2\"
  Type:     ec2:instance
  Account:  prod (123456789012)
  Region:   us-east-1
  ARN:      arn:aws:ec2:us-east-1:123456789012:instance/i-2
  Why:      CPU below 2% for 14 days (rule idle-ec2)
  Action:   stop
  Due:      2026-04-11
  Savings:  unknown
  To keep:  add the tag keep=true

Resources marked for cleanup carry the tag cloudwarden:cleanup. To keep a resource, follow its \"to keep\" line; to exempt it from cleanup for good, add the tag cloudwarden:protect.

-- 
cloudwarden
"
        );
    }

    #[test]
    fn html_escapes_everything() {
        let mut evil = item("i-1", "2026-04-10", Some("5"));
        evil.name = Some("<script>alert('x')</script>".into());
        evil.reason = "a & b > c".into();
        evil.keep = "tag \"keep\" = <yes>".into();
        let mut d = digest(Notice::First, vec![evil, item("i-2", "2026-04-10", Some("7.255"))]);
        d.contact = "R&D <team>".into();
        let h = html(&d);
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("i-1 &quot;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;"), "{h}");
        assert!(h.contains("a &amp; b &gt; c"));
        assert!(h.contains("tag &quot;keep&quot; = &lt;yes&gt;"));
        assert!(h.contains("<p>Hello R&amp;D &lt;team&gt;,</p>"));
        assert!(h.contains("<b>$12.26</b>"), "the total: {h}");
        assert!(h.contains(">$7.26<"));
        assert!(!h.contains("Final warning"));
        // Every tag opened is closed (a crude balance check of the table).
        assert_eq!(h.matches("<tr>").count(), h.matches("</tr>").count());
        assert_eq!(h.matches("<td").count(), h.matches("</td>").count());
        assert_eq!(h.matches("<tr>").count(), 4, "header, two resources, total");
        let fin = html(&digest(Notice::FinalWarning, vec![item("i-1", "2026-04-10", None)]));
        assert!(fin.contains("Final warning") && !fin.contains("Total"), "{fin}");
    }

    #[test]
    fn slack_stays_short() {
        let items: Vec<DigestItem> = (0..25).map(|k| item(&format!("i-{k}"), "2026-04-10", Some("1"))).collect();
        let v = slack(&digest(Notice::First, items));
        assert_eq!(v["text"], "[cloudwarden] 25 resources will be cleaned up on 2026-04-10 (saves $25.00/month)");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2 + SLACK_MAX_ITEMS + 2);
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[12]["text"]["text"], "…and 15 more (the email digest lists them all).");
        assert_eq!(blocks[13]["type"], "context");

        let mut long = item("i-1", "2026-04-10", None);
        long.reason = "x".repeat(5000);
        long.keep = "<@U123> & <!channel>".into();
        let v = slack(&digest(Notice::FinalWarning, vec![long]));
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 4);
        let section = blocks[2]["text"]["text"].as_str().unwrap();
        assert_eq!(section.chars().count(), SLACK_SECTION_CHARS);
        assert!(section.ends_with('…'));
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(header.starts_with("[cloudwarden] FINAL WARNING: 1 resource"), "{header}");
        assert!(header.chars().count() <= SLACK_HEADER_CHARS);

        let mut item = item("i-1", "2026-04-10", Some("3"));
        item.keep = "<@U123> & <!channel>".into();
        let v = slack(&digest(Notice::First, vec![item]));
        let section = v["blocks"][2]["text"]["text"].as_str().unwrap();
        assert_eq!(
            section,
            "*i-1 \"web-i-1\"* `ec2:instance` · prod (123456789012) · us-east-1\nCPU below 2% for 14 days (rule idle-ec2)\n*stop* on *2026-04-10* · saves $3.00/month\nTo keep: &lt;@U123&gt; &amp; &lt;!channel&gt;"
        );
    }

    #[test]
    fn actions_in_words() {
        assert_eq!(action_words("snapshot_delete"), "snapshot, then delete");
        assert_eq!(action_words("set_retention"), "set a log retention");
        assert_eq!(action_words("shrink_volume"), "shrink volume");
    }
}
