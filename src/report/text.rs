//! The report as Markdown and CSV, and the number formats every format shares. Amounts are rounded here, to
//! the cent (half away from zero), and nowhere before.

use std::fmt::Write;

use rust_decimal::{Decimal, RoundingStrategy};

use super::{Line, Mover, WeeklyReport};

/// `amount` to the cent: `1234.5` → `1234.50`.
pub fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// `$1,234.50`, `-$3.20`: the notifications' money format.
pub use crate::notify::render::usd;

/// `+$12.00`, `-$3.20`, `$0.00`.
pub fn signed_usd(amount: Decimal) -> String {
    let c = cents(amount);
    if c > Decimal::ZERO {
        format!("+{}", usd(c))
    } else {
        usd(c)
    }
}

/// `+12.3%`, `-4.0%`, `n/a` (no base to compare with).
pub fn signed_percent(p: Option<Decimal>) -> String {
    match p {
        None => "n/a".into(),
        Some(p) => {
            let r = p.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero);
            if r > Decimal::ZERO {
                format!("+{r:.1}%")
            } else {
                format!("{r:.1}%")
            }
        }
    }
}

/// `12.3%`.
pub fn share(p: Option<Decimal>) -> String {
    p.map_or("n/a".into(), |p| format!("{:.1}%", p.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero)))
}

/// `+1.5 pts`, `-2.0 pts`, `n/a`.
pub fn points(p: Option<Decimal>) -> String {
    match p {
        None => "n/a".into(),
        Some(p) => {
            let r = p.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero);
            if r > Decimal::ZERO {
                format!("+{r:.1} pts")
            } else {
                format!("{r:.1} pts")
            }
        }
    }
}

/// Days as `2026-12-01, 2026-12-02`, or `none`.
pub fn day_list(days: &[chrono::NaiveDate]) -> String {
    if days.is_empty() {
        "none".to_string()
    } else {
        days.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// A Markdown table cell: pipes and line breaks cannot end it early.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// An account as the report names it: `name (id)`, or the id.
pub fn account_label(id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) if n != id => format!("{n} ({id})"),
        _ if id.is_empty() => "(no account)".into(),
        _ => id.to_string(),
    }
}

pub fn mover_label(m: &Mover) -> String {
    match &m.account_id {
        Some(id) => format!("{} in {}", m.service, account_label(id, m.account.as_deref())),
        None => m.service.clone(),
    }
}

/// The lines a reader sees: those with at least a cent in either week once rounded, and how many others
/// there are (the JSON and CSV keep every line).
pub fn shown_lines(lines: &[Line]) -> (Vec<&Line>, usize) {
    let (shown, hidden): (Vec<&Line>, Vec<&Line>) =
        lines.iter().partition(|l| !cents(l.this_week).is_zero() || !cents(l.previous_week).is_zero());
    (shown, hidden.len())
}

/// `…and 12 more under half a cent in both weeks`.
pub fn hidden_note(hidden: usize) -> String {
    format!("…and {hidden} more under half a cent in both weeks")
}

fn line_rows(out: &mut String, lines: &[Line], label: impl Fn(&Line) -> String) {
    let _ = writeln!(out, "| | this week | previous week | change | |\n|---|---:|---:|---:|---:|");
    let (lines, hidden) = shown_lines(lines);
    for l in lines {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            cell(&label(l)),
            usd(l.this_week),
            usd(l.previous_week),
            signed_usd(l.change),
            signed_percent(l.change_percent)
        );
    }
    if hidden > 0 {
        let _ = writeln!(out, "| {} | | | | |", hidden_note(hidden));
    }
}

/// The report as Markdown.
pub fn markdown(r: &WeeklyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Weekly cost report {}: {} to {}\n", r.week, r.start, r.end);
    let _ = writeln!(
        out,
        "Amortized cost in USD from {}, built {}.\n",
        r.source.replace('_', " "),
        r.generated_at.format("%Y-%m-%d %H:%M UTC")
    );
    for n in &r.notes {
        let _ = writeln!(out, "> **Note:** {}", cell(n));
    }
    if !r.notes.is_empty() {
        out.push('\n');
    }
    let t = &r.total;
    let _ = writeln!(out, "## Total\n");
    let _ = writeln!(out, "| | amount | change |\n|---|---:|---:|");
    let _ = writeln!(out, "| this week | {} | |", usd(t.this_week));
    let _ = writeln!(
        out,
        "| previous week | {} | {} ({}) |",
        usd(t.previous_week),
        signed_usd(t.change),
        signed_percent(t.change_percent)
    );
    if let (Some(a), Some(c)) = (t.average, t.change_vs_average) {
        let _ = writeln!(
            out,
            "| average of {} week(s) before | {} | {} ({}) |",
            t.average_weeks,
            usd(a),
            signed_usd(c),
            signed_percent(t.change_vs_average_percent)
        );
    }
    for c in &r.other_currencies {
        let _ = writeln!(
            out,
            "| in {} (not in the USD figures) | {:.2} {} | previous week {:.2} {} |",
            cell(&c.currency),
            cents(c.this_week),
            cell(&c.currency),
            cents(c.previous_week),
            cell(&c.currency)
        );
    }

    let _ = writeln!(out, "\n## By service\n");
    line_rows(&mut out, &r.by_service, |l| l.key.clone());
    let _ = writeln!(out, "\n## By account\n");
    line_rows(&mut out, &r.by_account, |l| account_label(&l.key, l.name.as_deref()));
    for tag in &r.by_tag {
        let _ = writeln!(out, "\n## By tag `{}`\n", cell(&tag.key));
        line_rows(&mut out, &tag.lines, |l| l.key.clone());
        let u = &tag.untagged;
        let _ = writeln!(
            out,
            "| (untagged: {} of the week) | {} | {} | {} | {} |",
            share(tag.untagged_share_percent),
            usd(u.this_week),
            usd(u.previous_week),
            signed_usd(u.change),
            signed_percent(u.change_percent)
        );
    }

    for (title, movers) in [("Top movers up", &r.movers_up), ("Top movers down", &r.movers_down)] {
        let _ = writeln!(out, "\n## {title}\n");
        if movers.is_empty() {
            let _ = writeln!(out, "None.");
            continue;
        }
        let _ = writeln!(out, "| | this week | previous week | change | |\n|---|---:|---:|---:|---:|");
        for m in movers.iter() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&mover_label(m)),
                usd(m.this_week),
                usd(m.previous_week),
                signed_usd(m.change),
                signed_percent(m.change_percent)
            );
        }
    }

    let _ = writeln!(out, "\n## Cost anomalies\n");
    if r.anomalies.is_empty() {
        let _ = writeln!(out, "None found this week.");
    } else {
        let _ = writeln!(out, "| day | series | severity | actual | expected | impact | root cause |");
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|");
        for a in &r.anomalies {
            let _ = writeln!(
                out,
                "| {} | {} {} | {} | {} | {} | {} | {} |",
                a.day,
                cell(&a.series_kind),
                cell(&a.key),
                cell(&a.severity),
                a.actual_usd.map(usd).unwrap_or_default(),
                a.expected_usd.map(usd).unwrap_or_default(),
                a.impact_usd.map(signed_usd).unwrap_or_default(),
                cell(&a.root_cause.join("; "))
            );
        }
    }

    if !r.budgets.is_empty() {
        let _ = writeln!(out, "\n## Budgets at the week's end\n");
        let _ = writeln!(out, "| budget | scope | period | amount | spent | forecast | status |");
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|");
        for b in &r.budgets {
            let _ = writeln!(
                out,
                "| {} | {} | {} to {} | {} | {} | {} | {} |",
                cell(&b.name),
                cell(&b.scope),
                b.period_start,
                b.period_end,
                usd(b.amount_usd),
                usd(b.actual_usd),
                usd(b.forecast_usd),
                b.status.replace('_', " ")
            );
        }
    }

    let c = &r.compliance;
    let _ = writeln!(out, "\n## Tag compliance\n");
    match c.as_of {
        None => {
            let _ = writeln!(out, "No tagging evaluation on or before {}.", r.end);
        }
        Some(day) => {
            let _ = writeln!(
                out,
                "Resources in scope of a tagging rule that comply with every rule, as of {day} against {}.\n",
                c.previous_as_of.map_or("no earlier evaluation".into(), |d| d.to_string())
            );
            let _ = writeln!(out, "| account | in scope | compliant | previous | change |\n|---|---:|---:|---:|---:|");
            for a in &c.accounts {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    cell(&account_label(&a.account_id, a.account.as_deref())),
                    a.in_scope,
                    share(a.percent),
                    share(a.previous_percent),
                    points(a.change_points)
                );
            }
        }
    }

    if let Some(c) = &r.cleanup {
        let _ = writeln!(out, "\n## Cleanup\n");
        let done: u64 = c.actions_done.values().sum();
        let by: Vec<String> = c.actions_done.iter().map(|(a, n)| format!("{n} {a}")).collect();
        let _ = writeln!(
            out,
            "- Actions done this week: {done}{}; failed: {}",
            if by.is_empty() { String::new() } else { format!(" ({})", by.join(", ")) },
            c.actions_failed
        );
        let _ = writeln!(
            out,
            "- Saved this week: {}; since the first action: {}; monthly rate of everything cleaned up: {}",
            usd(c.saved_this_week_usd),
            usd(c.saved_since_start_usd),
            usd(c.monthly_rate_usd)
        );
        let _ = writeln!(
            out,
            "- Plans under way: {}, estimated to save {} a month",
            c.pending_plans,
            usd(c.pending_monthly_usd)
        );
    }

    let f = &r.freshness;
    let _ = writeln!(out, "\n## Data freshness\n");
    let _ = writeln!(out, "- Newest day with costs: {}", f.newest_day.map_or("none".into(), |d| d.to_string()));
    let _ = writeln!(out, "- Days of the week without data: {}", day_list(&f.missing_days));
    let _ = writeln!(out, "- Days of the week still estimated by AWS: {}", day_list(&f.estimated_days));
    out
}

/// The report as CSV: one row per figure, `section,key,name,this_week,previous_week,change,change_percent`,
/// amounts to the cent.
pub fn csv(r: &WeeklyReport) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["week", "section", "key", "name", "this_week", "previous_week", "change", "change_percent"])?;
    let money = |d: Decimal| format!("{:.2}", cents(d));
    let pct = |p: Option<Decimal>| {
        p.map(|p| format!("{:.1}", p.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero)))
            .unwrap_or_default()
    };
    let t = &r.total;
    w.write_record([
        r.week.as_str(),
        "total",
        "",
        "",
        &money(t.this_week),
        &money(t.previous_week),
        &money(t.change),
        &pct(t.change_percent),
    ])?;
    if let Some(a) = t.average {
        w.write_record([
            r.week.as_str(),
            "total_vs_average",
            &t.average_weeks.to_string(),
            "",
            &money(t.this_week),
            &money(a),
            &t.change_vs_average.map(money).unwrap_or_default(),
            &pct(t.change_vs_average_percent),
        ])?;
    }
    let lines = |section: &str, lines: &[Line], w: &mut csv::Writer<Vec<u8>>| -> Result<(), csv::Error> {
        for l in lines {
            w.write_record([
                r.week.as_str(),
                section,
                &l.key,
                l.name.as_deref().unwrap_or(""),
                &money(l.this_week),
                &money(l.previous_week),
                &money(l.change),
                &pct(l.change_percent),
            ])?;
        }
        Ok(())
    };
    lines("service", &r.by_service, &mut w)?;
    lines("account", &r.by_account, &mut w)?;
    for tag in &r.by_tag {
        lines(&format!("tag:{}", tag.key), &tag.lines, &mut w)?;
        lines(&format!("untagged:{}", tag.key), std::slice::from_ref(&tag.untagged), &mut w)?;
    }
    for (section, movers) in [("mover_up", &r.movers_up), ("mover_down", &r.movers_down)] {
        for m in movers.iter() {
            w.write_record([
                r.week.as_str(),
                section,
                &format!("{}|{}", m.service, m.account_id.as_deref().unwrap_or("")),
                m.account.as_deref().unwrap_or(""),
                &money(m.this_week),
                &money(m.previous_week),
                &money(m.change),
                &pct(m.change_percent),
            ])?;
        }
    }
    for a in &r.compliance.accounts {
        w.write_record([
            r.week.as_str(),
            "tag_compliance_percent",
            &a.account_id,
            a.account.as_deref().unwrap_or(""),
            &pct(a.percent),
            &pct(a.previous_percent),
            &pct(a.change_points),
            "",
        ])?;
    }
    for c in &r.other_currencies {
        let change = c.this_week.checked_sub(c.previous_week).map(money).unwrap_or_default();
        w.write_record([
            r.week.as_str(),
            "currency",
            &c.currency,
            "",
            &money(c.this_week),
            &money(c.previous_week),
            &change,
            "",
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
