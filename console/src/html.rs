//! HTML and SVG written by hand: escaping, the page frame, the validity timeline.

use std::fmt::Write;

use time::OffsetDateTime;

/// Text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
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

pub const STYLE: &str = include_str!("console.css");

const NAV: [(&str, &str); 6] = [
    ("/", "Overview"),
    ("/certificates", "Certificates"),
    ("/crls", "CRLs"),
    ("/pkd", "PKD"),
    ("/passports", "Passports"),
    ("/isolation", "Isolation"),
];

/// A table wrapper that scrolls sideways on small screens. Keyboard users must be able to
/// scroll it: when nothing inside it takes the focus, the wrapper does.
fn focusable_scrollers(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find("<div class=\"wide\">") {
        out.push_str(&rest[..at]);
        let inner = &rest[at..];
        let end = inner
            .find("</div>")
            .map_or(inner.len(), |e| e + "</div>".len());
        if inner[..end].contains("<a ") {
            out.push_str(&inner[..end]);
        } else {
            out.push_str("<div class=\"wide\" tabindex=\"0\" role=\"group\" aria-label=\"table (scrolls sideways on small screens)\">");
            out.push_str(&inner["<div class=\"wide\">".len()..end]);
        }
        rest = &inner[end..];
    }
    out.push_str(rest);
    out
}

/// A whole page: `title` is also its heading.
pub fn page(current: &str, title: &str, body: &str) -> String {
    let body = focusable_scrollers(body);
    let mut nav = String::new();
    for (href, name) in NAV {
        let here = if href == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{href}\"{here}>{name}</a></li>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} — Marty</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/console.css\"></head>\
         <body><header><p class=\"brand\">Marty</p><nav aria-label=\"Pages\"><ul>{nav}</ul></nav></header>\
         <main><h1>{t}</h1>{body}</main></body></html>\n",
        t = esc(title)
    )
}

pub fn date(t: Option<OffsetDateTime>) -> String {
    t.map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|| "–".into())
}

/// One row of the timeline: the validity period, the private key usage period inside it.
#[derive(Debug, Clone)]
pub struct Span {
    pub label: String,
    pub href: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub usage: Option<(OffsetDateTime, OffsetDateTime)>,
    pub revoked: bool,
    pub expiring: bool,
}

/// The timeline as SVG: a bar per certificate between its validity dates, the private key
/// usage period darker inside it, today as a line; expiring soon in amber, revoked struck
/// through in red. Every bar has a title (its dates) for screen readers and hover.
pub fn timeline(spans: &[Span], now: OffsetDateTime) -> String {
    if spans.is_empty() {
        return "<p>No certificates.</p>".into();
    }
    let start = spans
        .iter()
        .map(|s| s.not_before)
        .min()
        .unwrap_or(now)
        .min(now);
    let end = spans
        .iter()
        .map(|s| s.not_after)
        .max()
        .unwrap_or(now)
        .max(now);
    let total = (end - start).whole_seconds().max(1) as f64;
    let (left, width, row) = (260.0, 640.0, 26.0);
    let x = |t: OffsetDateTime| left + width * ((t - start).whole_seconds() as f64 / total);
    let height = row * spans.len() as f64 + 30.0;
    let mut svg = format!(
        "<svg class=\"timeline\" role=\"group\" aria-label=\"Validity and private key usage periods\" viewBox=\"0 0 {} {height}\" width=\"100%\">",
        left + width + 20.0
    );
    for (i, s) in spans.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let class = if s.revoked {
            "bar revoked"
        } else if s.expiring {
            "bar expiring"
        } else {
            "bar"
        };
        let title = format!(
            "{}: valid {} to {}{}{}{}",
            s.label,
            date(Some(s.not_before)),
            date(Some(s.not_after)),
            s.usage
                .map(|(a, b)| format!(", key usage {} to {}", date(Some(a)), date(Some(b))))
                .unwrap_or_default(),
            if s.expiring { ", expires soon" } else { "" },
            if s.revoked { ", revoked" } else { "" },
        );
        let _ = write!(
            svg,
            "<a href=\"{}\"><g class=\"{class}\"><title>{}</title><text x=\"0\" y=\"{}\">{}</text>\
             <rect class=\"validity\" x=\"{:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"16\" rx=\"3\"/>",
            esc(&s.href),
            esc(&title),
            y + 12.0,
            esc(&s.label),
            x(s.not_before),
            (x(s.not_after) - x(s.not_before)).max(2.0),
        );
        if let Some((a, b)) = s.usage {
            let _ = write!(
                svg,
                "<rect class=\"usage\" x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"8\"/>",
                x(a),
                y + 4.0,
                (x(b) - x(a)).max(2.0)
            );
        }
        if s.revoked {
            let _ = write!(
                svg,
                "<line class=\"strike\" x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\"/>",
                x(s.not_before),
                y + 8.0,
                x(s.not_after),
                y + 8.0
            );
        }
        svg.push_str("</g></a>");
    }
    let _ = write!(
        svg,
        "<line class=\"today\" x1=\"{0:.1}\" y1=\"0\" x2=\"{0:.1}\" y2=\"{1}\"/><text class=\"axis\" x=\"{0:.1}\" y=\"{2}\">today</text>",
        x(now),
        height - 14.0,
        height - 2.0
    );
    svg.push_str("</svg>");
    svg
}

/// A line chart of per-minute values over time, drawn as SVG with a text summary beside it
/// for those who cannot see it. `series`: (name, CSS class, points).
/// Points of a chart: (time, value per minute).
pub type Points = Vec<(OffsetDateTime, f64)>;

pub fn chart(title: &str, series: &[(&str, &str, Points)]) -> String {
    let points: Vec<&(OffsetDateTime, f64)> = series.iter().flat_map(|s| s.2.iter()).collect();
    if points.len() < 2 {
        return format!(
            "<p>{}: not enough samples yet (the console samples the services every few seconds).</p>",
            esc(title)
        );
    }
    let t0 = points
        .iter()
        .map(|p| p.0)
        .min()
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t1 = points.iter().map(|p| p.0).max().unwrap_or(t0);
    let span = (t1 - t0).as_seconds_f64().max(1.0);
    let top = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1.0);
    let (w, h, left, bottom) = (600.0, 120.0, 40.0, 18.0);
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {} {}\" width=\"100%\">\
         <text class=\"axis\" x=\"0\" y=\"12\">{top:.0}/min</text><text class=\"axis\" x=\"0\" y=\"{}\">0</text>",
        esc(title),
        w + left,
        h + bottom,
        h
    );
    for (name, class, pts) in series {
        let line: Vec<String> = pts
            .iter()
            .map(|(t, v)| {
                format!(
                    "{:.1},{:.1}",
                    left + w * ((*t - t0).as_seconds_f64() / span),
                    h - (h - 4.0) * (v / top)
                )
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline class=\"{class}\" fill=\"none\" points=\"{}\"><title>{}</title></polyline>",
            line.join(" "),
            esc(name)
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{left}\" y=\"{}\">{}</text><text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        h + bottom - 2.0,
        clock(t0),
        left + w,
        h + bottom - 2.0,
        clock(t1)
    );
    let mut summary = String::from("<p class=\"legend\">");
    for (name, class, pts) in series {
        let last = pts.last().map(|p| p.1).unwrap_or(0.0);
        let _ = write!(
            summary,
            "<span class=\"{class}-key\">{}: {last:.1}/min now</span>",
            esc(name)
        );
    }
    summary.push_str("</p>");
    format!("{svg}{summary}")
}

pub fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second())
}
