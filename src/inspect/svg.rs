//! `inspect --svg FILE`: where the bytes go, as one labelled bar per package (and per base
//! image, hostfiles, other), largest first, the smallest folded into one "others" bar.

use std::fmt::Write;

use indicatif::HumanBytes;

use super::{Counts, Report};

/// Bars drawn before the rest are folded into "others".
const BARS: usize = 40;
const WIDTH: u32 = 960;
const LABEL: u32 = 220;
const ROW: u32 = 20;
const TOP: u32 = 64;

/// A bar's colour: packages in the original's closure, packages it leaves out, inputs.
const BLUE: &str = "#4e79a7";
const ORANGE: &str = "#f28e2b";
const GREEN: &str = "#59a14f";
const GREY: &str = "#9c9c9c";

struct Bar {
    /// Short, drawn beside the bar; `title` is the full name, shown on hover.
    label: String,
    title: String,
    counts: Counts,
    colour: &'static str,
}

pub fn render(report: &Report) -> String {
    let bars = bars(report);
    let height = TOP + ROW * bars.len() as u32 + 24;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let title = format!(
        "{} packages, {} entries, {} in regular files",
        report.packages.len(),
        report.total.entries,
        HumanBytes(report.total.bytes)
    );
    let _ = writeln!(svg, "<text x=\"8\" y=\"22\" font-size=\"16\" font-weight=\"bold\">{}</text>", escape(&title));
    legend(&mut svg);
    let largest = bars.iter().map(|b| b.counts.bytes).max().unwrap_or(0).max(1);
    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + ROW * i as u32;
        let w = ((WIDTH - LABEL - 150) as f64 * bar.counts.bytes as f64 / largest as f64).round().max(1.0) as u32;
        let share = 100.0 * bar.counts.bytes as f64 / report.total.bytes.max(1) as f64;
        let text =
            format!("{}: {} ({share:.1}%), {} entries", bar.title, HumanBytes(bar.counts.bytes), bar.counts.entries);
        let _ = writeln!(
            svg,
            "<g><title>{text}</title>\
             <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{c}\"/>\
             <text x=\"{vx}\" y=\"{ty}\">{size}</text></g>",
            label = escape(&bar.label),
            text = escape(&text),
            lx = LABEL - 6,
            ty = y + 13,
            h = ROW - 4,
            c = bar.colour,
            vx = LABEL + w + 6,
            size = escape(&format!("{} ({share:.1}%)", HumanBytes(bar.counts.bytes))),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Every group of the report as a bar, largest first; beyond [`BARS`], one "others" bar.
fn bars(report: &Report) -> Vec<Bar> {
    let mut bars: Vec<Bar> = report
        .packages
        .iter()
        .map(|p| Bar {
            label: p.name.clone(),
            title: p.package.clone(),
            counts: p.counts,
            colour: if p.in_original_closure { BLUE } else { ORANGE },
        })
        .collect();
    for image in &report.base_images {
        let name = image.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let title = format!("base image {}", image.path.display());
        bars.push(Bar { label: format!("base image {name}"), title, counts: image.counts, colour: GREEN });
    }
    let bar = |label: &str, counts, colour| Bar { label: label.into(), title: label.into(), counts, colour };
    bars.push(bar("hostfiles", report.hostfiles.counts, GREEN));
    bars.push(bar("other (parent directories)", report.other, GREY));
    bars.retain(|b| b.counts.entries > 0);
    bars.sort_by(|a, b| b.counts.bytes.cmp(&a.counts.bytes).then_with(|| a.label.cmp(&b.label)));
    if bars.len() > BARS {
        let rest = bars.split_off(BARS - 1);
        let mut counts = Counts::default();
        for b in &rest {
            counts += b.counts;
        }
        bars.push(bar(&format!("{} others", rest.len()), counts, GREY));
    }
    bars
}

fn legend(svg: &mut String) {
    let items = [
        (BLUE, "package"),
        (ORANGE, "package the original supermin leaves out"),
        (GREEN, "supermin.d input"),
        (GREY, "other"),
    ];
    let mut x = 8;
    for (colour, text) in items {
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"34\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{}\" y=\"45\">{text}</text>",
            x + 16
        );
        x += 16 + 7 * text.len() as u32 + 20;
    }
}

/// Text for XML character data and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
