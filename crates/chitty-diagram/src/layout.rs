//! Where everything of a diagram goes: a row per point, a column per lifeline, a box per label.
//!
//! # Rows
//!
//! Every point (one send or one receive) gets a row of its own, and rows are sorted by Lamport time, ties
//! broken by lifeline order. By the Lamport rule a receive's time is greater than its send's, so every
//! arrow points downwards; and since no two points share a row, no two points' labels share a row.
//! The price is height: a run with N points is N rows tall, which windows keep in check.
//!
//! # Columns
//!
//! Lifelines are spaced evenly, the service leftmost (a cluster's nodes, one lifeline each, all left of
//! the participants). Every arrow touches the service, so with the service on the left all requests
//! point left and all answers and deliveries point right: the service writes its times on its left and
//! its arrow labels on its right, and each participant the other way round. Whatever arrows leave or reach a point, its time label is on the side away from them. The
//! spacing is wide enough for the widest arrow label and header, so every arrow label fits between its
//! own lifeline and the neighbouring one, and crosses no other lifeline.
//!
//! # Labels
//!
//! Text is measured conservatively at [`CHAR_WIDTH`] pixels per character (twice that for wide
//! characters) at a 12 px font. A point's time label is centred on its row; an arrow's label sits just
//! above the arrow's start, in the same row, on the other side of the lifeline. Row height is chosen so
//! the label boxes of neighbouring rows cannot touch, and the test module checks pairwise that no two
//! label boxes overlap.

use std::collections::BTreeMap;

use crate::model::{ArrowKind, Diagram, MarkKind};

/// The font size of every label, in pixels.
pub(crate) const FONT_SIZE: f64 = 12.0;
/// A conservative width of one character at [`FONT_SIZE`], in pixels.
pub(crate) const CHAR_WIDTH: f64 = 7.0;
/// The distance between two rows.
const ROW_HEIGHT: f64 = 26.0;
/// The empty border around the picture.
const MARGIN: f64 = 20.0;
/// The distance between a point and the near edge of its labels.
const LABEL_GAP: f64 = 8.0;
/// The radius of the dot at a point.
pub(crate) const POINT_RADIUS: f64 = 3.5;
/// Half the width of the diamond that marks a crash-leave.
pub(crate) const CRASH_MARK_RADIUS: f64 = 7.0;
/// How much further a label keeps from a point with a crash mark than from a plain dot.
const CRASH_GAP: f64 = CRASH_MARK_RADIUS - POINT_RADIUS;
/// The least distance between two lifelines.
const MIN_COLUMN_SPACING: f64 = 150.0;
/// The height of a lifeline's header box.
const HEADER_HEIGHT: f64 = 26.0;
/// The horizontal padding inside a header box.
const HEADER_PADDING: f64 = 10.0;
/// A label's box extends this far above its baseline...
const ASCENT: f64 = 12.0;
/// ...and this far below it.
const DESCENT: f64 = 3.0;
/// The length of the sample line of a legend entry.
const LEGEND_SAMPLE: f64 = 28.0;
/// The distance between two legend rows.
const LEGEND_ROW: f64 = 22.0;
/// The gap between a legend sample and its text.
const LEGEND_SAMPLE_GAP: f64 = 6.0;
/// The gap between one legend entry's text and the next entry's sample, on one legend row.
const LEGEND_ENTRY_GAP: f64 = 22.0;
/// The padding inside the legend's frame, around its entries.
const LEGEND_PADDING: f64 = 10.0;
/// The gap between the bottom of the lifelines and the legend's frame.
const LEGEND_GAP: f64 = 24.0;
/// The baseline of the title, at the top of the picture.
const TITLE_BASELINE: f64 = MARGIN + ASCENT;
/// The gap between the title's box and the lifelines' headers.
const TITLE_TO_HEADERS: f64 = 14.0;
/// The top of every lifeline's header box.
const HEADER_TOP: f64 = TITLE_BASELINE + DESCENT + TITLE_TO_HEADERS;
/// How far below a header box's middle its name's baseline is, which centres the name in the box.
const HEADER_BASELINE_DROP: f64 = 4.5;
/// The least gap between two neighbouring header boxes.
const HEADER_CLEARANCE: f64 = 20.0;
/// The gap between the headers and the first row, which the first row's notes sit in.
const HEADERS_TO_FIRST_ROW: f64 = 30.0;
/// The y of the first row.
const FIRST_ROW: f64 = HEADER_TOP + HEADER_HEIGHT + HEADERS_TO_FIRST_ROW;
/// How far below its row a time's (or a legend text's) baseline is, which centres the text on the row.
const CENTRED_BASELINE_DROP: f64 = 4.0;
/// How far above its row an arrow's label's baseline is, so that the label sits on the arrow's start.
const NOTE_RAISE: f64 = 6.0;
/// The least room kept between the end of the labels beside a lifeline and the next lifeline.
const LABEL_CLEARANCE: f64 = 24.0;
/// How far short of the receive point's dot an arrowhead stops.
const ARROWHEAD_CLEARANCE: f64 = 1.0;
/// The least width of the picture inside its margins, so that the legend has room for a few entries.
const MIN_CONTENT_WIDTH: f64 = 420.0;

/// An axis-aligned rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    /// The left edge.
    pub x: f64,
    /// The top edge.
    pub y: f64,
    /// The width.
    pub width: f64,
    /// The height.
    pub height: f64,
}

impl Rect {
    /// Whether the two rectangles share any area; touching edges do not count.
    #[cfg(test)]
    pub fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.x + other.width
            && other.x < self.x + self.width
            && self.y < other.y + other.height
            && other.y < self.y + self.height
    }

    fn right(&self) -> f64 {
        self.x + self.width
    }
}

/// Where a label's `x` is: its left end, its middle, or its right end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Start,
    Middle,
    End,
}

/// How a label looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelStyle {
    /// The diagram's title.
    Title,
    /// A lifeline's name in its header; the service's is drawn on a dark box.
    Header { is_service: bool },
    /// A point's Lamport time.
    Time,
    /// An arrow's label, coloured like the arrow.
    Arrow(ArrowKind),
    /// An event's label on the service's lifeline.
    Event,
    /// A crash-leave mark.
    Crash,
    /// A legend entry's text.
    Legend,
}

/// A piece of text and the box it is measured to fill.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Label {
    /// The text, unescaped.
    pub text: String,
    /// The horizontal anchor position.
    pub x: f64,
    /// The y of the text's baseline, which is where SVG places text.
    pub baseline: f64,
    /// What `x` is.
    pub anchor: Anchor,
    /// How it looks.
    pub style: LabelStyle,
    /// The box the text is measured to fill, used to keep labels apart.
    pub bounds: Rect,
}

impl Label {
    fn new(text: String, x: f64, baseline: f64, anchor: Anchor, style: LabelStyle) -> Label {
        let width = text_width(&text);
        let left = match anchor {
            Anchor::Start => x,
            Anchor::Middle => x - width / 2.0,
            Anchor::End => x - width,
        };
        let bounds = Rect {
            x: left,
            y: baseline - ASCENT,
            width,
            height: ASCENT + DESCENT,
        };
        Label {
            text,
            x,
            baseline,
            anchor,
            style,
            bounds,
        }
    }
}

/// One lifeline's geometry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LifelineGeometry {
    /// Its x.
    pub x: f64,
    /// Its header box.
    pub header: Rect,
    /// Whether it is the service's.
    pub is_service: bool,
    /// Where the thin line ends: the bottom, or the cross of a crashed participant.
    pub bottom: f64,
    /// The span from its first point to its last, drawn thicker.
    pub active: Option<(f64, f64)>,
    /// The centre of the cross that ends a crashed participant's lifeline.
    pub cross: Option<(f64, f64)>,
}

/// One arrow's geometry, from send to receive.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArrowGeometry {
    /// What it carries.
    pub kind: ArrowKind,
    /// The send point.
    pub from: (f64, f64),
    /// Where the arrowhead's tip is: the receive point, less the dot's radius.
    pub to: (f64, f64),
    /// The send point's row.
    pub from_row: usize,
    /// The receive point's row.
    pub to_row: usize,
}

/// What a legend entry shows before its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegendSample {
    /// A short arrow of this kind.
    Arrow(ArrowKind),
    /// A crash-leave mark.
    Crash,
    /// A cross ending a lifeline.
    Cross,
}

/// One legend entry: a sample starting at `x`, centred on `y`, and its text label.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LegendEntry {
    /// What it shows.
    pub sample: LegendSample,
    /// The sample's left end.
    pub x: f64,
    /// The sample's vertical centre.
    pub y: f64,
}

/// A dot at a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dot {
    /// Its centre.
    pub x: f64,
    /// Its centre.
    pub y: f64,
    /// Whether a crash-leave is marked here.
    pub crash: bool,
}

/// A diagram laid out: every shape and label with its coordinates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// The picture's width.
    pub width: f64,
    /// The picture's height.
    pub height: f64,
    /// The diagram's title, for the document's `<title>`.
    pub title: String,
    /// Every lifeline.
    pub lifelines: Vec<LifelineGeometry>,
    /// Every arrow.
    pub arrows: Vec<ArrowGeometry>,
    /// Every point's dot.
    pub dots: Vec<Dot>,
    /// Every legend entry's sample; their texts are among the labels.
    pub legend: Vec<LegendEntry>,
    /// Where the legend's frame is.
    pub legend_frame: Rect,
    /// Every piece of text.
    pub labels: Vec<Label>,
}

/// Which side of its lifeline a point's arrows are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// A participant's: the service is to its left.
    Left,
    /// The service's: the participants are to its right.
    Right,
}

impl Layout {
    /// Lays out `diagram`, phase by phase: what each point says, the columns wide enough for it, the
    /// points and their labels, the arrows, the lifelines, the title, and last the legend below it all.
    pub fn of(diagram: &Diagram) -> Layout {
        let texts = PointTexts::of(diagram);
        let grid = Grid::of(diagram, &texts);
        let (mut labels, dots) = place_points(diagram, &texts, &grid);
        let arrows = place_arrows(diagram, &grid);
        let bottom = grid.row_y(diagram.points.len().saturating_sub(1)) + ROW_HEIGHT;
        let lifelines = place_lifelines(diagram, &grid, bottom, &mut labels);
        labels.push(Label::new(
            diagram.title.clone(),
            MARGIN,
            TITLE_BASELINE,
            Anchor::Start,
            LabelStyle::Title,
        ));
        let content_right = labels
            .iter()
            .map(|label| label.bounds.right())
            .chain(lifelines.iter().map(|lifeline| lifeline.header.right()))
            .fold(0.0, f64::max);
        let width = (content_right + MARGIN)
            .max(MARGIN * 2.0 + MIN_CONTENT_WIDTH)
            .ceil();
        let (legend, legend_frame) =
            place_legend(diagram, &dots, &lifelines, width, bottom, &mut labels);
        let height = (legend_frame.y + legend_frame.height + MARGIN).ceil();

        Layout {
            width,
            height,
            title: diagram.title.clone(),
            lifelines,
            arrows,
            dots,
            legend,
            legend_frame,
            labels,
        }
    }
}

/// Which side of its lifeline a point's arrows leave from: the right for the service's (every
/// participant is to its right), the left for a participant's.
fn arrow_side(diagram: &Diagram, lifeline: usize) -> Side {
    match diagram.lifelines.get(lifeline) {
        Some(lifeline) if lifeline.is_service => Side::Right,
        _ => Side::Left,
    }
}

/// What each point says, by row: notes (event marks and the labels of arrows leaving it) go beside its
/// arrows, its time and any crash marks on the far side. Measured first, since the columns must be wide
/// enough for them.
struct PointTexts {
    /// The notes of each point, in the order they are set outwards from the lifeline; a text is kept
    /// once, as two arrows from one point may carry the same label.
    notes: BTreeMap<usize, Vec<(String, LabelStyle)>>,
    /// The crash-leave marks of each point, set beyond its time.
    crash_marks: BTreeMap<usize, Vec<String>>,
}

impl PointTexts {
    /// Gathers every mark and arrow label of `diagram` by the point it belongs to.
    fn of(diagram: &Diagram) -> PointTexts {
        let mut notes: BTreeMap<usize, Vec<(String, LabelStyle)>> = BTreeMap::new();
        let mut crash_marks: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for mark in &diagram.marks {
            match mark.kind {
                MarkKind::Event => add_note(&mut notes, mark.point, &mark.label, LabelStyle::Event),
                MarkKind::CrashLeave => crash_marks
                    .entry(mark.point)
                    .or_default()
                    .push(mark.label.clone()),
            }
        }
        for arrow in &diagram.arrows {
            let style = match arrow.kind {
                ArrowKind::Delivery => LabelStyle::Event,
                kind => LabelStyle::Arrow(kind),
            };
            add_note(&mut notes, arrow.from, &arrow.label, style);
        }
        PointTexts { notes, crash_marks }
    }

    /// The texts on the far side of the point in `row`, from the outermost in: its crash marks, then its
    /// Lamport time `L<lamport>`.
    fn far(&self, row: usize, lamport: u64) -> Vec<(String, LabelStyle)> {
        let mut texts: Vec<(String, LabelStyle)> = self
            .crash_marks
            .get(&row)
            .into_iter()
            .flatten()
            .map(|text| (text.clone(), LabelStyle::Crash))
            .collect();
        texts.push((format!("L{lamport}"), LabelStyle::Time));
        texts
    }

    /// The notes beside the arrows of the point in `row`.
    fn near(&self, row: usize) -> &[(String, LabelStyle)] {
        self.notes.get(&row).map_or(&[], Vec::as_slice)
    }
}

/// Where rows and columns are: the y of each row, and the x of each lifeline.
struct Grid {
    /// The room left of the first lifeline, for the service's times and half its header.
    left_extent: f64,
    /// The distance between neighbouring lifelines, wide enough for every text set between two.
    spacing: f64,
}

impl Grid {
    /// The grid of `diagram`: the column spacing and the left margin follow from the widest texts on
    /// each side of a lifeline, so that no label crosses a lifeline but its own.
    fn of(diagram: &Diagram, texts: &PointTexts) -> Grid {
        let mut left_extent: f64 = 0.0;
        let mut spacing = MIN_COLUMN_SPACING;
        for lifeline in &diagram.lifelines {
            let header = text_width(&lifeline.name) + 2.0 * HEADER_PADDING;
            left_extent = left_extent.max(header / 2.0);
            spacing = spacing.max(header + HEADER_CLEARANCE);
        }
        for (row, point) in diagram.points.iter().enumerate() {
            let far = texts_width(&texts.far(row, point.lamport));
            let near = texts_width(texts.near(row));
            // Only the service writes its times on its left, where they need a margin; a cluster's
            // other nodes write theirs between their lifeline and the node to their left.
            if arrow_side(diagram, point.lifeline) == Side::Right {
                if point.lifeline == 0 {
                    left_extent = left_extent.max(CRASH_GAP + LABEL_GAP + far);
                } else {
                    spacing = spacing.max(CRASH_GAP + LABEL_GAP + far + LABEL_CLEARANCE);
                }
            }
            // Whichever side its arrow labels are on, they fit between two lifelines.
            spacing = spacing.max(LABEL_GAP + near + LABEL_CLEARANCE);
        }
        Grid {
            left_extent,
            spacing,
        }
    }

    /// The y of a row's points.
    fn row_y(&self, row: usize) -> f64 {
        FIRST_ROW + row as f64 * ROW_HEIGHT
    }

    /// The x of a lifeline.
    fn column_x(&self, lifeline: usize) -> f64 {
        MARGIN + self.left_extent + lifeline as f64 * self.spacing
    }
}

/// Every point's dot, and its labels: its time and crash marks set outwards on the far side of its
/// lifeline, its notes outwards on the near side, just above where its arrows leave.
fn place_points(diagram: &Diagram, texts: &PointTexts, grid: &Grid) -> (Vec<Label>, Vec<Dot>) {
    let mut labels = Vec::new();
    let mut dots = Vec::new();
    for (row, point) in diagram.points.iter().enumerate() {
        let x = grid.column_x(point.lifeline);
        let y = grid.row_y(row);
        let side = arrow_side(diagram, point.lifeline);
        // The far side: times next to the dot (or its crash mark), crash labels beyond them.
        let crash = texts.crash_marks.contains_key(&row);
        let gap = if crash {
            LABEL_GAP + CRASH_GAP
        } else {
            LABEL_GAP
        };
        let mut edge = match side {
            Side::Right => x - gap,
            Side::Left => x + gap,
        };
        for (text, style) in texts.far(row, point.lamport).into_iter().rev() {
            let baseline = y + CENTRED_BASELINE_DROP;
            let label = match side {
                Side::Right => Label::new(text, edge, baseline, Anchor::End, style),
                Side::Left => Label::new(text, edge, baseline, Anchor::Start, style),
            };
            edge = match side {
                Side::Right => label.bounds.x - LABEL_GAP,
                Side::Left => label.bounds.right() + LABEL_GAP,
            };
            labels.push(label);
        }
        // The near side, above where the arrows leave.
        let mut edge = match side {
            Side::Right => x + LABEL_GAP,
            Side::Left => x - LABEL_GAP,
        };
        for (text, style) in texts.near(row).iter().cloned() {
            let baseline = y - NOTE_RAISE;
            let label = match side {
                Side::Right => Label::new(text, edge, baseline, Anchor::Start, style),
                Side::Left => Label::new(text, edge, baseline, Anchor::End, style),
            };
            edge = match side {
                Side::Right => label.bounds.right() + LABEL_GAP,
                Side::Left => label.bounds.x - LABEL_GAP,
            };
            labels.push(label);
        }
        dots.push(Dot { x, y, crash });
    }
    (labels, dots)
}

/// Every arrow, from its send point to just short of its receive point's dot.
fn place_arrows(diagram: &Diagram, grid: &Grid) -> Vec<ArrowGeometry> {
    diagram
        .arrows
        .iter()
        .filter_map(|arrow| {
            let from = diagram.points.get(arrow.from)?;
            let to = diagram.points.get(arrow.to)?;
            let start = (grid.column_x(from.lifeline), grid.row_y(arrow.from));
            let end = (grid.column_x(to.lifeline), grid.row_y(arrow.to));
            Some(ArrowGeometry {
                kind: arrow.kind,
                from: start,
                to: shorten(start, end, POINT_RADIUS + ARROWHEAD_CLEARANCE),
                from_row: arrow.from,
                to_row: arrow.to,
            })
        })
        .collect()
}

/// Every lifeline, down to `bottom` (or to the cross of a crashed participant), thick from its first
/// point to its last; each header's name is pushed to `labels`.
fn place_lifelines(
    diagram: &Diagram,
    grid: &Grid,
    bottom: f64,
    labels: &mut Vec<Label>,
) -> Vec<LifelineGeometry> {
    let mut lifelines = Vec::new();
    for (index, lifeline) in diagram.lifelines.iter().enumerate() {
        let x = grid.column_x(index);
        let header_width = text_width(&lifeline.name) + 2.0 * HEADER_PADDING;
        let header = Rect {
            x: x - header_width / 2.0,
            y: HEADER_TOP,
            width: header_width,
            height: HEADER_HEIGHT,
        };
        labels.push(Label::new(
            lifeline.name.clone(),
            x,
            HEADER_TOP + HEADER_HEIGHT / 2.0 + HEADER_BASELINE_DROP,
            Anchor::Middle,
            LabelStyle::Header {
                is_service: lifeline.is_service,
            },
        ));
        let rows: Vec<usize> = diagram
            .points
            .iter()
            .enumerate()
            .filter(|(_, point)| point.lifeline == index)
            .map(|(row, _)| row)
            .collect();
        let active = match (rows.first(), rows.last()) {
            (Some(&first), Some(&last)) => Some((grid.row_y(first), grid.row_y(last))),
            _ => None,
        };
        let cross = match (lifeline.crashed, active) {
            (true, Some((_, last))) => Some((x, last + ROW_HEIGHT / 2.0)),
            _ => None,
        };
        lifelines.push(LifelineGeometry {
            x,
            header,
            is_service: lifeline.is_service,
            bottom: cross.map_or(bottom, |(_, y)| y),
            active,
            cross,
        });
    }
    lifelines
}

/// The legend below the lifelines' `bottom`: entries flowing left to right, wrapping at the picture's
/// `width`, each text pushed to `labels`. It explains only what the picture shows. Returns the samples
/// and the frame around them all.
fn place_legend(
    diagram: &Diagram,
    dots: &[Dot],
    lifelines: &[LifelineGeometry],
    width: f64,
    bottom: f64,
    labels: &mut Vec<Label>,
) -> (Vec<LegendEntry>, Rect) {
    let legend_top = bottom + LEGEND_GAP;
    let line_start = MARGIN + LEGEND_PADDING;
    let mut legend = Vec::new();
    let mut x = line_start;
    let mut y = legend_top + LEGEND_PADDING + LEGEND_ROW / 2.0;
    let entries = LEGEND_ENTRIES.iter().filter(|(sample, _)| match sample {
        Some(LegendSample::Arrow(kind)) => diagram.arrows.iter().any(|arrow| arrow.kind == *kind),
        Some(LegendSample::Crash) => dots.iter().any(|dot| dot.crash),
        Some(LegendSample::Cross) => lifelines.iter().any(|lifeline| lifeline.cross.is_some()),
        None => true,
    });
    for (sample, text) in entries {
        let sample_width = if sample.is_some() {
            LEGEND_SAMPLE + LEGEND_SAMPLE_GAP
        } else {
            0.0
        };
        let entry_width = sample_width + text_width(text);
        if x > line_start && x + entry_width > width - MARGIN - LEGEND_PADDING {
            x = line_start;
            y += LEGEND_ROW;
        }
        if let Some(sample) = sample {
            legend.push(LegendEntry {
                sample: *sample,
                x,
                y,
            });
        }
        labels.push(Label::new(
            (*text).to_owned(),
            x + sample_width,
            y + CENTRED_BASELINE_DROP,
            Anchor::Start,
            LabelStyle::Legend,
        ));
        x += entry_width + LEGEND_ENTRY_GAP;
    }
    let frame = Rect {
        x: MARGIN,
        y: legend_top,
        width: width - 2.0 * MARGIN,
        height: y + LEGEND_ROW / 2.0 + LEGEND_PADDING - legend_top,
    };
    (legend, frame)
}

/// The legend's entries, in order; an entry without a sample is text alone.
const LEGEND_ENTRIES: [(Option<LegendSample>, &str); 11] = [
    (Some(LegendSample::Arrow(ArrowKind::Join)), "Join"),
    (
        Some(LegendSample::Arrow(ArrowKind::Broadcast)),
        "Broadcast (opens the stream)",
    ),
    (Some(LegendSample::Arrow(ArrowKind::Publish)), "Publish"),
    (Some(LegendSample::Arrow(ArrowKind::Leave)), "Leave"),
    (Some(LegendSample::Arrow(ArrowKind::Ok)), "response"),
    (
        Some(LegendSample::Arrow(ArrowKind::Refused)),
        "refused (response)",
    ),
    (
        Some(LegendSample::Arrow(ArrowKind::Delivery)),
        "event delivery",
    ),
    (Some(LegendSample::Crash), "crash-leave announced"),
    (Some(LegendSample::Cross), "process killed"),
    (None, "Ln = Lamport time at that point"),
    (None, "1., 2., ... = steps in reading order"),
];

/// Adds `text` to the notes of `point`, unless it is there already: arrows that leave one point with the
/// same label (deliveries of one event) are labelled once.
fn add_note(
    notes: &mut BTreeMap<usize, Vec<(String, LabelStyle)>>,
    point: usize,
    text: &str,
    style: LabelStyle,
) {
    let notes = notes.entry(point).or_default();
    if !notes.iter().any(|(known, _)| known == text) {
        notes.push((text.to_owned(), style));
    }
}

/// The width of labels set side by side, with gaps between them.
fn texts_width(texts: &[(String, LabelStyle)]) -> f64 {
    let widths: f64 = texts.iter().map(|(text, _)| text_width(text)).sum();
    widths + LABEL_GAP * texts.len().saturating_sub(1) as f64
}

/// A conservative width of `text` at [`FONT_SIZE`]: [`CHAR_WIDTH`] per character, twice that for the wide
/// characters of East Asian scripts and emoji.
pub(crate) fn text_width(text: &str) -> f64 {
    text.chars()
        .map(|character| {
            let wide = character >= '\u{1100}' && !('\u{2000}'..='\u{2bff}').contains(&character);
            if wide { 2.0 * CHAR_WIDTH } else { CHAR_WIDTH }
        })
        .sum()
}

/// Moves `end` towards `start` by `by` pixels, so an arrowhead stops at a dot's edge.
fn shorten(start: (f64, f64), end: (f64, f64), by: f64) -> (f64, f64) {
    let (dx, dy) = (end.0 - start.0, end.1 - start.1);
    let length = (dx * dx + dy * dy).sqrt();
    if length <= by {
        return end;
    }
    (end.0 - dx / length * by, end.1 - dy / length * by)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::model::{Run, Window};
    use crate::testing::{Simulation, Step, check_mermaid_statements, check_svg_markup};
    use crate::{DiagramError, read_dir};

    /// Checks what every laid-out diagram must satisfy, and returns the first violation.
    fn check(diagram: &Diagram) -> Result<(), String> {
        let layout = Layout::of(diagram);
        for arrow in &layout.arrows {
            if arrow.to_row <= arrow.from_row || arrow.to.1 <= arrow.from.1 {
                return Err(format!("{arrow:?} does not point downwards"));
            }
        }
        for (index, label) in layout.labels.iter().enumerate() {
            let bounds = label.bounds;
            let inside = bounds.x >= 0.0
                && bounds.y >= 0.0
                && bounds.right() <= layout.width
                && bounds.y + bounds.height <= layout.height;
            if !inside {
                return Err(format!(
                    "label {:?} at {bounds:?} is outside the {}x{} picture",
                    label.text, layout.width, layout.height
                ));
            }
            for other in &layout.labels[index + 1..] {
                if bounds.overlaps(&other.bounds) {
                    return Err(format!(
                        "label {:?} at {bounds:?} overlaps label {:?} at {:?}",
                        label.text, other.text, other.bounds
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every window worth drawing: the whole run, each participant, and seq windows of a few widths.
    fn windows(run: &Run, last_seq: u64) -> Vec<Window> {
        let mut windows = vec![Window::All];
        windows.extend(
            run.participants()
                .map(|name| Window::Participant(name.to_owned())),
        );
        for from in 1..=last_seq {
            for width in [0, 2, 5] {
                windows.push(Window::Seqs {
                    from,
                    to: from + width,
                });
            }
        }
        windows
    }

    fn check_every_window(run: &Run, last_seq: u64) -> Result<usize, String> {
        let mut drawn = 0;
        for window in windows(run, last_seq) {
            match run.diagram(&window) {
                Ok(diagram) => {
                    check(&diagram)
                        .and_then(|()| check_svg_markup(&diagram.to_svg()))
                        .and_then(|()| check_mermaid_statements(&diagram.to_mermaid()))
                        .map_err(|problem| format!("{window}: {problem}"))?;
                    drawn += 1;
                }
                Err(DiagramError::EmptyWindow { .. }) => {}
                Err(error) => return Err(format!("{window}: {error}")),
            }
        }
        Ok(drawn)
    }

    #[test]
    fn every_window_of_the_demo_run_points_downwards_without_overlapping_labels() {
        let run = read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/run"))
            .expect("the committed demo run reads");
        let drawn = check_every_window(&run, 20).unwrap_or_else(|problem| panic!("{problem}"));
        assert!(drawn > 50, "only {drawn} windows were drawn");
    }

    #[test]
    fn every_window_of_the_cluster_run_points_downwards_without_overlapping_labels() {
        let run = read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cluster"))
            .expect("the committed cluster run reads");
        let drawn = check_every_window(&run, 25).unwrap_or_else(|problem| panic!("{problem}"));
        assert!(drawn > 60, "only {drawn} windows were drawn");
    }

    #[test]
    fn overlapping_and_touching_boxes_are_told_apart() {
        let a = Rect {
            x: 0.0,
            y: 0.0,
            width: 10.0,
            height: 10.0,
        };
        let shifted = |x, y| Rect { x, y, ..a };
        assert!(a.overlaps(&shifted(9.0, 9.0)));
        assert!(!a.overlaps(&shifted(10.0, 0.0)), "touching edges");
        assert!(!a.overlaps(&shifted(0.0, 10.0)), "touching edges");
        assert!(!a.overlaps(&shifted(20.0, 20.0)));
    }

    #[test]
    fn wide_characters_are_measured_wider() {
        assert_eq!(text_width("ab"), 2.0 * CHAR_WIDTH);
        assert_eq!(text_width("日本"), 4.0 * CHAR_WIDTH);
        assert_eq!(text_width("a…→"), 3.0 * CHAR_WIDTH);
    }

    const NAMES: [&str; 6] = ["alice", "bob", "mary ann", "end", "<b>&amp;", "日本"];

    fn step() -> impl Strategy<Value = Step> {
        let name = (0..NAMES.len()).prop_map(|index| NAMES[index].to_owned());
        let text = "[a-z <>&\"';#\n日é]{1,40}";
        prop_oneof![
            2 => name.clone().prop_map(Step::Join),
            3 => (name.clone(), text).prop_map(|(name, text)| Step::Publish(name, text)),
            1 => name.clone().prop_map(Step::Refused),
            4 => name.clone().prop_map(Step::Deliver),
            1 => name.clone().prop_map(Step::Leave),
            1 => name.prop_map(Step::Crash),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_window_of_a_simulated_run_points_downwards_without_overlapping_labels(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            let run = Run::parse(&Simulation::run(&steps));
            prop_assert_eq!(run.unmatched_records(), 0);
            if let Err(problem) = check_every_window(&run, steps.len() as u64) {
                prop_assert!(false, "{}", problem);
            }
        }
    }
}
