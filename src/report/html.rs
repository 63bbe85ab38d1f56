//! The report as one mail-safe HTML page: inline CSS only, no script, no external resource, tables that wrap
//! at 600 px, and two charts drawn here as inline SVG with plotters (text is SVG `<text>`, drawn by the
//! reader's own fonts): the daily cost of five weeks stacked by the top services, and the movers as bars.

use std::fmt::Write;

use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::text::{account_label, day_list, mover_label, share, signed_percent, signed_usd, usd};
use super::{Line, Mover, WeeklyReport};
use crate::notify::render::escape_html as escape;

/// The charts' drawing size; they scale down to the width they are shown at.
const CHART_WIDTH: u32 = 640;
const CHART_HEIGHT: u32 = 300;

/// One color per series of the daily chart (the top services, then `Other` in grey), and the movers' up and
/// down colors: distinguishable in print and for the common color vision deficiencies.
const SERIES: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x7f, 0x7f, 0x7f),
];
const UP: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const DOWN: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);

fn f64_of(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Makes plotters' fixed-size `<svg>` scale to its container, and names it for screen readers.
fn scalable(svg: String, label: &str) -> String {
    let Some(end) = svg.find('>') else { return svg };
    let open = &svg[..end];
    let mut attrs = String::new();
    if !open.contains("viewBox") {
        let _ = write!(attrs, " viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\"");
    }
    let open = open.replacen(&format!("width=\"{CHART_WIDTH}\""), "width=\"100%\"", 1).replacen(
        &format!("height=\"{CHART_HEIGHT}\""),
        "",
        1,
    );
    format!(
        "{open}{attrs} role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMidYMid meet\" style=\"display:block;max-width:{CHART_WIDTH}px;height:auto\">{}",
        escape(label),
        &svg[end + 1..]
    )
}

/// The daily cost of the five weeks, stacked by series.
fn daily_chart(r: &WeeklyReport) -> Result<String, String> {
    let mut svg = String::new();
    let max = r.daily.iter().map(|d| f64_of(d.total)).fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let days = r.daily.len();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, CHART_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..days.max(1) as f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        let daily = &r.daily;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(6)
            .x_label_formatter(&|x| {
                daily.get(x.floor().max(0.0) as usize).map(|d| d.day.format("%b %d").to_string()).unwrap_or_default()
            })
            .y_labels(5)
            .y_label_formatter(&|y| format!("${y:.0}"))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, name) in r.daily_series.iter().enumerate() {
            let color = SERIES[s.min(SERIES.len() - 1)];
            let bars = r.daily.iter().enumerate().filter_map(|(i, d)| {
                let below: f64 = d.amounts[..s].iter().map(|a| f64_of(*a).max(0.0)).sum();
                let height = f64_of(d.amounts[s]).max(0.0);
                (height > 0.0).then(|| {
                    Rectangle::new([(i as f64 + 0.12, below), (i as f64 + 0.88, below + height)], color.filled())
                })
            });
            chart.draw_series(bars).map_err(|e| e.to_string())?;
            let _ = name;
        }
        // The report's week, marked off from the four before it.
        let week_start = days.saturating_sub(7) as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(week_start, 0.0), (week_start, top)],
                BLACK.mix(0.4).stroke_width(1),
            )))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(scalable(svg, &format!("Daily cost of the five weeks ending {}, by service", r.end)))
}

/// The movers, up and down, as horizontal bars of their change.
fn movers_chart(r: &WeeklyReport) -> Result<Option<String>, String> {
    let movers: Vec<&Mover> = r.movers_up.iter().take(5).chain(r.movers_down.iter().take(5)).collect();
    if movers.is_empty() {
        return Ok(None);
    }
    let extent = movers.iter().map(|m| f64_of(m.change).abs()).fold(0.0_f64, f64::max).max(0.01) * 1.15;
    let n = movers.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, CHART_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(8)
            .build_cartesian_2d(-extent..extent, 0f64..n as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(5)
            .x_label_formatter(&|x| format!("${x:.0}"))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        let bars = movers.iter().enumerate().map(|(i, m)| {
            let y = (n - 1 - i) as f64;
            let v = f64_of(m.change);
            let color = if v >= 0.0 { UP } else { DOWN };
            Rectangle::new([(v.min(0.0), y + 0.15), (v.max(0.0), y + 0.85)], color.filled())
        });
        chart.draw_series(bars).map_err(|e| e.to_string())?;
        let labels = movers.iter().enumerate().map(|(i, m)| {
            let y = (n - 1 - i) as f64 + 0.5;
            // The label sits on the side away from the bar.
            let x = if m.change >= Decimal::ZERO { -extent * 0.98 } else { extent * 0.02 };
            let mut label = mover_label(m);
            if label.chars().count() > 44 {
                label = label.chars().take(43).collect::<String>() + "…";
            }
            Text::new(format!("{label} {}", signed_usd(m.change)), (x, y), ("sans-serif", 11).into_font())
        });
        chart.draw_series(labels).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(scalable(svg, &format!("The largest changes of {} against the week before", r.week))))
}

const TABLE: &str = "width:100%;border-collapse:collapse;font-size:13px;margin:0 0 16px 0";
const TH: &str = "text-align:left;border-bottom:2px solid #444;padding:4px 6px;font-weight:600";
const TH_NUM: &str = "text-align:right;border-bottom:2px solid #444;padding:4px 6px;font-weight:600;white-space:nowrap";
const TD: &str = "border-bottom:1px solid #ddd;padding:4px 6px;word-break:break-word";
const TD_NUM: &str = "border-bottom:1px solid #ddd;padding:4px 6px;text-align:right;white-space:nowrap";
const H2: &str = "font-size:17px;margin:24px 0 8px 0;color:#222";

fn change_style(change: Decimal) -> &'static str {
    if change > Decimal::ZERO {
        "color:#b00020"
    } else if change < Decimal::ZERO {
        "color:#1b7f2a"
    } else {
        ""
    }
}

fn lines_table(out: &mut String, lines: &[Line], label: impl Fn(&Line) -> String, extra: Option<&Line>) {
    let _ = write!(
        out,
        "<table role=\"presentation\" style=\"{TABLE}\"><tr><th style=\"{TH}\"></th><th style=\"{TH_NUM}\">this week</th>\
         <th style=\"{TH_NUM}\">previous</th><th style=\"{TH_NUM}\">change</th></tr>"
    );
    let row = |out: &mut String, name: &str, l: &Line| {
        let _ = write!(
            out,
            "<tr><td style=\"{TD}\">{}</td><td style=\"{TD_NUM}\">{}</td><td style=\"{TD_NUM}\">{}</td>\
             <td style=\"{TD_NUM};{}\">{}<br><span style=\"font-size:11px\">{}</span></td></tr>",
            escape(name),
            usd(l.this_week),
            usd(l.previous_week),
            change_style(l.change),
            signed_usd(l.change),
            signed_percent(l.change_percent)
        );
    };
    let (lines, hidden) = super::text::shown_lines(lines);
    for l in lines {
        row(out, &label(l), l);
    }
    if let Some(l) = extra {
        row(out, &l.key, l);
    }
    if hidden > 0 {
        let _ = write!(
            out,
            "<tr><td style=\"{TD};color:#666;font-size:12px\" colspan=\"4\">{}</td></tr>",
            escape(&super::text::hidden_note(hidden))
        );
    }
    out.push_str("</table>");
}

/// The report as one HTML page.
pub fn html(r: &WeeklyReport) -> Result<String, String> {
    let mut o = String::new();
    let title = format!("Weekly cost report {}", r.week);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title></head>\
         <body style=\"margin:0;padding:0;background:#f4f4f4\">\
         <div style=\"max-width:720px;margin:0 auto;padding:16px;background:#ffffff;font-family:Helvetica,Arial,sans-serif;color:#222;line-height:1.4\">",
        escape(&title)
    );
    let _ = write!(
        o,
        "<h1 style=\"font-size:22px;margin:0 0 4px 0\">{}</h1><p style=\"margin:0 0 12px 0;color:#555;font-size:13px\">{} to {} · \
         amortized cost in USD from {} · built {}</p>",
        escape(&title),
        r.start,
        r.end,
        escape(&r.source.replace('_', " ")),
        r.generated_at.format("%Y-%m-%d %H:%M UTC")
    );
    for n in &r.notes {
        let _ = write!(
            o,
            "<p style=\"margin:0 0 8px 0;padding:8px;background:#fff8e1;border-left:4px solid #f0b400;font-size:13px\">{}</p>",
            escape(n)
        );
    }

    // The headline figures.
    let t = &r.total;
    let _ = write!(
        o,
        "<table role=\"presentation\" style=\"{TABLE}\"><tr>\
         <td style=\"padding:8px;vertical-align:top\"><div style=\"font-size:12px;color:#555\">this week</div>\
         <div id=\"total-this-week\" style=\"font-size:24px;font-weight:700\">{}</div></td>\
         <td style=\"padding:8px;vertical-align:top\"><div style=\"font-size:12px;color:#555\">vs previous week ({})</div>\
         <div style=\"font-size:18px;font-weight:600;{}\">{} · {}</div></td>",
        usd(t.this_week),
        usd(t.previous_week),
        change_style(t.change),
        signed_usd(t.change),
        signed_percent(t.change_percent)
    );
    if let (Some(a), Some(c)) = (t.average, t.change_vs_average) {
        let _ = write!(
            o,
            "<td style=\"padding:8px;vertical-align:top\"><div style=\"font-size:12px;color:#555\">vs {}-week average ({})</div>\
             <div style=\"font-size:18px;font-weight:600;{}\">{} · {}</div></td>",
            t.average_weeks,
            usd(a),
            change_style(c),
            signed_usd(c),
            signed_percent(t.change_vs_average_percent)
        );
    }
    o.push_str("</tr></table>");
    for c in &r.other_currencies {
        let _ = write!(
            o,
            "<p style=\"font-size:13px\">Also billed in {}: {:.2} this week ({:.2} the week before), not in the USD figures.</p>",
            escape(&c.currency),
            super::text::cents(c.this_week),
            super::text::cents(c.previous_week)
        );
    }

    let _ = write!(o, "<h2 style=\"{H2}\">Daily cost, last five weeks</h2>");
    o.push_str(&daily_chart(r)?);
    o.push_str("<p style=\"font-size:12px;margin:4px 0 0 0\">");
    for (s, name) in r.daily_series.iter().enumerate() {
        let c = SERIES[s.min(SERIES.len() - 1)];
        let _ = write!(
            o,
            "<span style=\"white-space:nowrap;margin-right:12px\"><span style=\"display:inline-block;width:10px;height:10px;background:#{:02x}{:02x}{:02x};margin-right:4px\"></span>{}</span> ",
            c.0,
            c.1,
            c.2,
            escape(name)
        );
    }
    o.push_str("</p>");

    let _ = write!(o, "<h2 style=\"{H2}\">Top movers</h2>");
    match movers_chart(r)? {
        Some(svg) => o.push_str(&svg),
        None => o.push_str("<p style=\"font-size:13px\">Nothing changed against the week before.</p>"),
    }
    for (title, movers) in [("Up", &r.movers_up), ("Down", &r.movers_down)] {
        if movers.is_empty() {
            continue;
        }
        let _ = write!(
            o,
            "<h3 style=\"font-size:14px;margin:12px 0 4px 0\">{title}</h3><table role=\"presentation\" style=\"{TABLE}\">\
             <tr><th style=\"{TH}\"></th><th style=\"{TH_NUM}\">this week</th><th style=\"{TH_NUM}\">previous</th><th style=\"{TH_NUM}\">change</th></tr>"
        );
        for m in movers.iter() {
            let _ = write!(
                o,
                "<tr><td style=\"{TD}\">{}</td><td style=\"{TD_NUM}\">{}</td><td style=\"{TD_NUM}\">{}</td><td style=\"{TD_NUM};{}\">{}<br><span style=\"font-size:11px\">{}</span></td></tr>",
                escape(&mover_label(m)),
                usd(m.this_week),
                usd(m.previous_week),
                change_style(m.change),
                signed_usd(m.change),
                signed_percent(m.change_percent)
            );
        }
        o.push_str("</table>");
    }

    let _ = write!(o, "<h2 style=\"{H2}\">By service</h2>");
    lines_table(&mut o, &r.by_service, |l| l.key.clone(), None);
    let _ = write!(o, "<h2 style=\"{H2}\">By account</h2>");
    lines_table(&mut o, &r.by_account, |l| account_label(&l.key, l.name.as_deref()), None);
    for tag in &r.by_tag {
        let _ = write!(
            o,
            "<h2 style=\"{H2}\">By tag <code>{}</code></h2><p style=\"font-size:13px;margin:0 0 6px 0\">Untagged: {} of the week.</p>",
            escape(&tag.key),
            share(tag.untagged_share_percent)
        );
        let untagged = Line { key: "(untagged)".into(), ..tag.untagged.clone() };
        lines_table(&mut o, &tag.lines, |l| l.key.clone(), Some(&untagged));
    }

    let _ = write!(o, "<h2 style=\"{H2}\">Cost anomalies</h2>");
    if r.anomalies.is_empty() {
        o.push_str("<p style=\"font-size:13px\">None found this week.</p>");
    } else {
        let _ = write!(
            o,
            "<table role=\"presentation\" style=\"{TABLE}\"><tr><th style=\"{TH}\">day and series</th><th style=\"{TH_NUM}\">actual</th>\
             <th style=\"{TH_NUM}\">expected</th><th style=\"{TH_NUM}\">impact</th></tr>"
        );
        for a in &r.anomalies {
            let cause = if a.root_cause.is_empty() {
                String::new()
            } else {
                format!(
                    "<br><span style=\"font-size:11px;color:#555\">root cause: {}</span>",
                    escape(&a.root_cause.join("; "))
                )
            };
            let _ = write!(
                o,
                "<tr><td style=\"{TD}\">{} · {} {} ({}){cause}</td><td style=\"{TD_NUM}\">{}</td><td style=\"{TD_NUM}\">{}</td><td style=\"{TD_NUM}\">{}</td></tr>",
                a.day,
                escape(&a.series_kind),
                escape(&a.key),
                escape(&a.severity),
                a.actual_usd.map(usd).unwrap_or_default(),
                a.expected_usd.map(usd).unwrap_or_default(),
                a.impact_usd.map(signed_usd).unwrap_or_default()
            );
        }
        o.push_str("</table>");
    }

    if !r.budgets.is_empty() {
        let _ = write!(
            o,
            "<h2 style=\"{H2}\">Budgets at the week's end</h2><table role=\"presentation\" style=\"{TABLE}\"><tr><th style=\"{TH}\">budget</th>\
             <th style=\"{TH_NUM}\">amount</th><th style=\"{TH_NUM}\">spent</th><th style=\"{TH_NUM}\">forecast</th></tr>"
        );
        for b in &r.budgets {
            let status = match b.status.as_str() {
                "over" => "<span style=\"color:#b00020;font-weight:600\">over</span>",
                "forecast_over" => "<span style=\"color:#b36b00;font-weight:600\">forecast over</span>",
                _ => "<span style=\"color:#1b7f2a\">ok</span>",
            };
            let _ = write!(
                o,
                "<tr><td style=\"{TD}\">{} · {status}<br><span style=\"font-size:11px;color:#555\">{}, {} to {}</span></td>\
                 <td style=\"{TD_NUM}\">{}</td><td style=\"{TD_NUM}\">{}</td><td style=\"{TD_NUM}\">{}</td></tr>",
                escape(&b.name),
                escape(&b.scope),
                b.period_start,
                b.period_end,
                usd(b.amount_usd),
                usd(b.actual_usd),
                usd(b.forecast_usd)
            );
        }
        o.push_str("</table>");
    }

    let c = &r.compliance;
    let _ = write!(o, "<h2 style=\"{H2}\">Tag compliance</h2>");
    match c.as_of {
        None => {
            let _ = write!(o, "<p style=\"font-size:13px\">No tagging evaluation on or before {}.</p>", r.end);
        }
        Some(day) => {
            let _ = write!(
                o,
                "<p style=\"font-size:13px;margin:0 0 6px 0\">Resources in scope of a tagging rule that comply with every rule, as of {day} against {}.</p>\
                 <table role=\"presentation\" style=\"{TABLE}\"><tr><th style=\"{TH}\">account</th><th style=\"{TH_NUM}\">in scope</th>\
                 <th style=\"{TH_NUM}\">compliant</th><th style=\"{TH_NUM}\">previous</th></tr>",
                c.previous_as_of.map_or("no earlier evaluation".into(), |d| d.to_string())
            );
            for a in &c.accounts {
                let style = match a.change_points {
                    Some(p) if p < Decimal::ZERO => "color:#b00020",
                    Some(p) if p > Decimal::ZERO => "color:#1b7f2a",
                    _ => "",
                };
                let _ = write!(
                    o,
                    "<tr><td style=\"{TD}\">{}</td><td style=\"{TD_NUM}\">{}</td><td style=\"{TD_NUM}\">{}<br><span style=\"font-size:11px;{style}\">{}</span></td><td style=\"{TD_NUM}\">{}</td></tr>",
                    escape(&account_label(&a.account_id, a.account.as_deref())),
                    a.in_scope,
                    share(a.percent),
                    super::text::points(a.change_points),
                    share(a.previous_percent)
                );
            }
            o.push_str("</table>");
        }
    }

    if let Some(c) = &r.cleanup {
        let done: u64 = c.actions_done.values().sum();
        let _ = write!(
            o,
            "<h2 style=\"{H2}\">Cleanup</h2><ul style=\"font-size:13px;margin:0 0 16px 0;padding-left:20px\">\
             <li>{done} action(s) done this week, {} failed</li><li>Saved this week: {}; since the first action: {}</li>\
             <li>Monthly rate of everything cleaned up: {}</li><li>Plans under way: {}, estimated to save {} a month</li></ul>",
            c.actions_failed,
            usd(c.saved_this_week_usd),
            usd(c.saved_since_start_usd),
            usd(c.monthly_rate_usd),
            c.pending_plans,
            usd(c.pending_monthly_usd)
        );
    }

    let f = &r.freshness;
    let _ = write!(
        o,
        "<h2 style=\"{H2}\">Data freshness</h2><ul style=\"font-size:13px;margin:0;padding-left:20px\">\
         <li>Newest day with costs: {}</li><li>Days of the week without data: {}</li><li>Days AWS still estimates: {}</li></ul>",
        f.newest_day.map_or("none".into(), |d| d.to_string()),
        day_list(&f.missing_days),
        day_list(&f.estimated_days)
    );
    o.push_str("<p style=\"font-size:11px;color:#777;margin-top:24px\">Built by cloudwarden from the costs it stored; amounts are exact to the cent.</p></div></body></html>\n");
    Ok(o)
}
