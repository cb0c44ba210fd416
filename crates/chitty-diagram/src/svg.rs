//! Writes a laid-out diagram as a standalone SVG document.
//!
//! The document is written directly as text: it uses a handful of elements (`line`, `circle`, `rect`,
//! `path`, `text`) and one arrowhead marker per arrow kind, so a writer of its own is shorter than a
//! dependency. Every piece of text from the logs goes through [`escape`]. Every label among the arrows
//! stands on an opaque white box drawn after the arrows, so no arrow is drawn across a label's text;
//! labels also keep a white halo (`paint-order="stroke"`).

use std::fmt::Write;

use crate::layout::{
    Anchor, CRASH_MARK_RADIUS, FONT_SIZE, LabelStyle, Layout, LegendSample, POINT_RADIUS,
};
use crate::model::ArrowKind;

/// Every arrow kind, in the order their markers are defined.
const ARROW_KINDS: [ArrowKind; 7] = [
    ArrowKind::Join,
    ArrowKind::Broadcast,
    ArrowKind::Publish,
    ArrowKind::Leave,
    ArrowKind::Ok,
    ArrowKind::Refused,
    ArrowKind::Delivery,
];

/// How far a label's white box reaches beyond the box its text is measured to fill.
const LABEL_BOX_PADDING: f64 = 1.5;

/// The colour of crash-leave marks and crosses.
const CRASH_COLOUR: &str = "#b71c1c";

/// The colour of an arrow kind, and of its labels.
fn colour(kind: ArrowKind) -> &'static str {
    match kind {
        ArrowKind::Join => "#2e7d32",
        ArrowKind::Publish => "#1565c0",
        ArrowKind::Leave => "#e65100",
        ArrowKind::Ok => "#607d8b",
        ArrowKind::Refused => "#d81b60",
        ArrowKind::Delivery => "#7b1fa2",
        ArrowKind::Broadcast => "#00838f",
    }
}

/// The name of an arrow kind in ids and classes.
fn name(kind: ArrowKind) -> &'static str {
    match kind {
        ArrowKind::Join => "join",
        ArrowKind::Publish => "publish",
        ArrowKind::Leave => "leave",
        ArrowKind::Ok => "ok",
        ArrowKind::Refused => "refused",
        ArrowKind::Delivery => "delivery",
        ArrowKind::Broadcast => "broadcast",
    }
}

/// The stroke attributes of an arrow kind: answers are dashed, deliveries thinner.
fn stroke(kind: ArrowKind) -> String {
    let (width, dash) = match kind {
        ArrowKind::Ok | ArrowKind::Refused => ("1.4", " stroke-dasharray=\"6 3\""),
        ArrowKind::Broadcast => ("1.6", " stroke-dasharray=\"2 2\""),
        ArrowKind::Delivery => ("1.1", ""),
        _ => ("1.6", ""),
    };
    format!(
        "stroke=\"{}\" stroke-width=\"{width}\"{dash} marker-end=\"url(#head-{})\"",
        colour(kind),
        name(kind)
    )
}

/// Writes `layout` as an SVG document.
pub(crate) fn write(layout: &Layout) -> String {
    let mut svg = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail, so the results of `write!` below are ignored on purpose.
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\" font-size=\"{FONT_SIZE}\">",
        w = layout.width,
        h = layout.height,
    );
    let _ = writeln!(svg, "<title>{}</title>", escape(&layout.title));
    svg.push_str("<defs>\n");
    for kind in ARROW_KINDS {
        let _ = writeln!(
            svg,
            "<marker id=\"head-{}\" viewBox=\"0 0 10 8\" refX=\"10\" refY=\"4\" markerWidth=\"10\" \
             markerHeight=\"8\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">\
             <path d=\"M0,0 L10,4 L0,8 z\" fill=\"{}\"/></marker>",
            name(kind),
            colour(kind)
        );
    }
    svg.push_str("</defs>\n");
    let _ = writeln!(
        svg,
        "<rect width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
        layout.width, layout.height
    );

    svg.push_str("<g class=\"lifelines\">\n");
    for lifeline in &layout.lifelines {
        let (fill, border) = if lifeline.is_service {
            ("#37474f", "#263238")
        } else {
            ("#eceff1", "#90a4ae")
        };
        let header = lifeline.header;
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"{fill}\" stroke=\"{border}\"/>",
            n(header.x),
            n(header.y),
            n(header.width),
            n(header.height)
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#b0bec5\" stroke-dasharray=\"3 4\"/>",
            n(header.y + header.height),
            n(lifeline.bottom),
            x = n(lifeline.x)
        );
        if let Some((top, bottom)) = lifeline.active {
            let _ = writeln!(
                svg,
                "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#78909c\" stroke-width=\"2\"/>",
                n(top),
                n(bottom),
                x = n(lifeline.x)
            );
        }
        if let Some((x, y)) = lifeline.cross {
            cross(&mut svg, x, y);
        }
    }
    svg.push_str("</g>\n<g class=\"arrows\" fill=\"none\">\n");
    for arrow in &layout.arrows {
        let _ = writeln!(
            svg,
            "<line class=\"{}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {}/>",
            name(arrow.kind),
            n(arrow.from.0),
            n(arrow.from.1),
            n(arrow.to.0),
            n(arrow.to.1),
            stroke(arrow.kind)
        );
    }
    svg.push_str("</g>\n<g class=\"points\">\n");
    for dot in &layout.dots {
        if dot.crash {
            diamond(&mut svg, dot.x, dot.y, CRASH_MARK_RADIUS);
        }
        let _ = writeln!(
            svg,
            "<circle cx=\"{}\" cy=\"{}\" r=\"{POINT_RADIUS}\" fill=\"#263238\"/>",
            n(dot.x),
            n(dot.y)
        );
    }
    svg.push_str("</g>\n<g class=\"legend\">\n");
    let frame = layout.legend_frame;
    let _ = writeln!(
        svg,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"#fafafa\" stroke=\"#cfd8dc\"/>",
        n(frame.x),
        n(frame.y),
        n(frame.width),
        n(frame.height)
    );
    for entry in &layout.legend {
        let (x, y) = (entry.x, entry.y);
        match entry.sample {
            LegendSample::Arrow(kind) => {
                let _ = writeln!(
                    svg,
                    "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" {}/>",
                    n(x),
                    n(x + 26.0),
                    stroke(kind),
                    y = n(y)
                );
            }
            LegendSample::Crash => diamond(&mut svg, x + 14.0, y, CRASH_MARK_RADIUS),
            LegendSample::Cross => cross(&mut svg, x + 14.0, y),
        }
    }
    svg.push_str(
        "</g>\n<g class=\"labels\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\">\n",
    );
    for label in &layout.labels {
        let anchor = match label.anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let (fill, extra) = match label.style {
            LabelStyle::Title => ("#263238", " font-size=\"14\" font-weight=\"bold\""),
            LabelStyle::Header { is_service: true } => {
                ("#ffffff", " font-weight=\"bold\" stroke=\"none\"")
            }
            LabelStyle::Header { is_service: false } => ("#263238", " font-weight=\"bold\""),
            LabelStyle::Time => ("#455a64", ""),
            LabelStyle::Arrow(kind) => (colour(kind), ""),
            LabelStyle::Event => (colour(ArrowKind::Delivery), ""),
            LabelStyle::Crash => (CRASH_COLOUR, " font-weight=\"bold\""),
            LabelStyle::Legend => ("#37474f", ""),
        };
        // Text among the arrows stands on a white box of its own, drawn over the arrows, so no arrow
        // crosses a label: an arrow that passes it disappears under the box and comes out beyond it.
        if matches!(
            label.style,
            LabelStyle::Time | LabelStyle::Arrow(_) | LabelStyle::Event | LabelStyle::Crash
        ) {
            let b = label.bounds;
            let _ = writeln!(
                svg,
                "<rect class=\"label-box\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffffff\" stroke=\"none\"/>",
                n(b.x - LABEL_BOX_PADDING),
                n(b.y - LABEL_BOX_PADDING),
                n(b.width + 2.0 * LABEL_BOX_PADDING),
                n(b.height + 2.0 * LABEL_BOX_PADDING)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"{fill}\"{extra}>{}</text>",
            n(label.x),
            n(label.baseline),
            escape(&label.text)
        );
    }
    svg.push_str("</g>\n</svg>\n");
    svg
}

/// Draws a red diamond centred on (`x`, `y`), `radius` from its centre to each corner.
fn diamond(svg: &mut String, x: f64, y: f64, radius: f64) {
    let _ = writeln!(
        svg,
        "<path d=\"M{} {} L{} {} L{} {} L{} {} z\" fill=\"#ffffff\" stroke=\"{CRASH_COLOUR}\" stroke-width=\"2\"/>",
        n(x - radius),
        n(y),
        n(x),
        n(y - radius),
        n(x + radius),
        n(y),
        n(x),
        n(y + radius)
    );
}

/// Draws a red cross centred on (`x`, `y`).
fn cross(svg: &mut String, x: f64, y: f64) {
    let _ = writeln!(
        svg,
        "<path d=\"M{} {} L{} {} M{} {} L{} {}\" stroke=\"{CRASH_COLOUR}\" stroke-width=\"2.5\"/>",
        n(x - 6.0),
        n(y - 6.0),
        n(x + 6.0),
        n(y + 6.0),
        n(x - 6.0),
        n(y + 6.0),
        n(x + 6.0),
        n(y - 6.0)
    );
}

/// Formats a coordinate with at most one decimal, so the output is stable and short.
fn n(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded == rounded.trunc() {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// Escapes `text` for XML character data and attribute values.
///
/// The five markup characters become entities. Characters XML 1.0 does not allow at all (control
/// characters other than tab, line feed and carriage return, and U+FFFE and U+FFFF) become U+FFFD, and
/// line breaks and tabs become spaces, since a label is one line.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(' '),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => escaped.push('\u{fffd}'),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped() {
        assert_eq!(
            escape("<script>alert(\"x\" & 'y')</script>"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &apos;y&apos;)&lt;/script&gt;"
        );
        assert_eq!(
            escape("a\nb\tc\u{0}d\u{1b}e\u{ffff}"),
            "a b c\u{fffd}d\u{fffd}e\u{fffd}"
        );
        assert_eq!(escape("plain ünïcödé → ok"), "plain ünïcödé → ok");
    }

    #[test]
    fn every_label_among_the_arrows_stands_on_a_box_drawn_after_every_arrow() {
        let run =
            crate::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/run"))
                .expect("the demo run's logs");
        let diagram = run
            .diagram(&crate::Window::Participant("dave".to_owned()))
            .expect("dave's window");
        let layout = Layout::of(&diagram);
        let svg = write(&layout);
        let boxed = layout
            .labels
            .iter()
            .filter(|label| {
                matches!(
                    label.style,
                    LabelStyle::Time | LabelStyle::Arrow(_) | LabelStyle::Event | LabelStyle::Crash
                )
            })
            .count();
        assert_eq!(
            svg.matches("class=\"label-box\"").count(),
            boxed,
            "got a different number of label boxes than labels among the arrows"
        );
        let last_arrow = svg.rfind("<line class=").expect("arrows");
        let first_box = svg.find("class=\"label-box\"").expect("label boxes");
        assert!(
            first_box > last_arrow,
            "got a label box before the last arrow, want every box over every arrow"
        );
    }

    #[test]
    fn coordinates_have_at_most_one_decimal() {
        assert_eq!(n(10.0), "10");
        assert_eq!(n(10.04), "10");
        assert_eq!(n(10.25), "10.3");
        assert_eq!(n(-3.5), "-3.5");
    }
}
