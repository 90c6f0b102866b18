//! Figures of the lab with `plotters`: SVG or PNG, chosen by the file extension. Text is laid
//! out with a system TrueType font found at run time (DejaVu, Liberation or FreeFont under
//! /usr/share/fonts); none is bundled. Without one the figure is drawn without text and the
//! caller is told so.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::CodeError;
use crate::lab::{AngularSet, Curve};

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// Registers a system font once; false when none is found.
fn system_font() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Palette shared by the figures.
const COLORS: &[RGBColor] = &[
    RGBColor(0x99, 0x99, 0x99),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xd6, 0x27, 0x28),
];

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> CodeError + '_ {
    move |e| CodeError::Plot {
        path: path.display().to_string(),
        reason: format!("{e:?}"),
    }
}

/// A figure drawn on an SVG or a PNG backend, told whether text can be drawn.
type SvgDraw<'a> = dyn Fn(&DrawingArea<SVGBackend, Shift>, bool) -> Result<(), String> + 'a;
type PngDraw<'a> = dyn Fn(&DrawingArea<BitMapBackend, Shift>, bool) -> Result<(), String> + 'a;

/// Draws onto an SVG or PNG file by extension; returns whether text was drawn.
fn with_backend(
    path: &Path,
    size: (u32, u32),
    allow_text: bool,
    draw: &SvgDraw,
    draw_png: &PngDraw,
) -> Result<bool, CodeError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "svg" => {
            let text = allow_text && system_font();
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(&root, text).map_err(err(path))?;
            root.present().map_err(err(path))?;
            Ok(text)
        }
        "png" => {
            let text = allow_text && system_font();
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw_png(&root, text).map_err(err(path))?;
            root.present().map_err(err(path))?;
            Ok(text)
        }
        _ => Err(CodeError::Plot {
            path: path.display().to_string(),
            reason: "extension must be .svg or .png".into(),
        }),
    }
}

/// Figure 1: SQNR (bits) versus rate (bits/dim) per family, with the Shannon line SQNR = R.
/// Returns whether text was drawn.
pub fn rate_curves(path: &Path, curves: &[Curve], title: &str) -> Result<bool, CodeError> {
    rate_curves_with(path, curves, title, true)
}

fn rate_curves_with(path: &Path, curves: &[Curve], title: &str, allow_text: bool) -> Result<bool, CodeError> {
    fn draw<DB: DrawingBackend>(
        root: &DrawingArea<DB, Shift>,
        text: bool,
        curves: &[Curve],
        title: &str,
    ) -> Result<(), String> {
        let e = |x: &dyn std::fmt::Debug| format!("{x:?}");
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let rates = curves.iter().flat_map(|c| c.rows.iter().map(|r| r.rate));
        let (lo, hi) = rates.fold((f64::MAX, f64::MIN), |(a, b), r| (a.min(r), b.max(r)));
        let (x0, x1) = ((lo - 0.1).min(0.9), hi + 0.1);
        let mut b = ChartBuilder::on(root);
        b.margin(15);
        if text {
            b.caption(title, ("sans-serif", 22))
                .x_label_area_size(45)
                .y_label_area_size(55);
        }
        let mut chart = b.build_cartesian_2d(x0..x1, (x0 - 0.4)..x1).map_err(|x| e(&x))?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("rate R (bits/dim)").y_desc("SQNR (bits)");
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|x| e(&x))?;
        let shannon = LineSeries::new(vec![(x0, x0), (x1, x1)], BLACK.stroke_width(2));
        let s = chart.draw_series(shannon).map_err(|x| e(&x))?;
        if text {
            s.label("Shannon bound SQNR = R")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        }
        for (i, c) in curves.iter().enumerate() {
            let col = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = c.rows.iter().map(|r| (r.rate, r.sqnr_bits)).collect();
            let s = chart
                .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
                .map_err(|x| e(&x))?;
            if text {
                s.label(c.family.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, col.filled())))
                .map_err(|x| e(&x))?;
        }
        if text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|x| e(&x))?;
        }
        Ok(())
    }
    with_backend(
        path,
        (900, 650),
        allow_text,
        &|r, t| draw(r, t, curves, title),
        &|r, t| draw(r, t, curves, title),
    )
}

/// App. E: box plots of the nearest-codeword angle D = arccos(cos)/π per code, placed at the
/// code's bits/dim, one colour per family. Returns whether text was drawn.
pub fn angular_boxes(path: &Path, sets: &[AngularSet]) -> Result<bool, CodeError> {
    angular_boxes_with(path, sets, true)
}

fn angular_boxes_with(path: &Path, sets: &[AngularSet], allow_text: bool) -> Result<bool, CodeError> {
    fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: bool, sets: &[AngularSet]) -> Result<(), String> {
        let e = |x: &dyn std::fmt::Debug| format!("{x:?}");
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let (lo, hi) = sets
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), s| (a.min(s.rate), b.max(s.rate)));
        let ymax = sets.iter().map(|s| s.quartiles[4]).fold(0f64, f64::max) * 1.1;
        let mut b = ChartBuilder::on(root);
        b.margin(15);
        if text {
            b.caption("Nearest-codeword angle on S^23 (App. E)", ("sans-serif", 22))
                .x_label_area_size(45)
                .y_label_area_size(60);
        }
        let mut chart = b
            .build_cartesian_2d((lo - 0.1)..(hi + 0.15), 0f64..ymax)
            .map_err(|x| e(&x))?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("bits/dim").y_desc("arccos(cos)/π");
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|x| e(&x))?;
        let families: Vec<&str> = {
            let mut f: Vec<&str> = Vec::new();
            for s in sets {
                if !f.contains(&s.family.as_str()) {
                    f.push(&s.family);
                }
            }
            f
        };
        let w = 0.012;
        for (fi, fam) in families.iter().enumerate() {
            let col = COLORS[(fi + 1) % COLORS.len()];
            let off = (fi as f64 - (families.len() as f64 - 1.0) / 2.0) * 2.5 * w;
            let mine: Vec<&AngularSet> = sets.iter().filter(|s| s.family == *fam).collect();
            for s in &mine {
                let x = s.rate + off;
                let [q0, q1, q2, q3, q4] = s.quartiles;
                let style = col.stroke_width(2);
                chart
                    .draw_series([
                        PathElement::new(vec![(x, q0), (x, q1)], style),
                        PathElement::new(vec![(x, q3), (x, q4)], style),
                        PathElement::new(vec![(x - w, q2), (x + w, q2)], style),
                    ])
                    .map_err(|x| e(&x))?;
                chart
                    .draw_series([Rectangle::new([(x - w, q1), (x + w, q3)], style)])
                    .map_err(|x| e(&x))?;
            }
            let line: Vec<(f64, f64)> = mine.iter().map(|s| (s.rate + off, s.quartiles[2])).collect();
            let s = chart
                .draw_series(LineSeries::new(line, col.mix(0.6)))
                .map_err(|x| e(&x))?;
            if text {
                s.label(fam.to_string())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
            }
        }
        if text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|x| e(&x))?;
        }
        Ok(())
    }
    with_backend(path, (900, 600), allow_text, &|r, t| draw(r, t, sets), &|r, t| {
        draw(r, t, sets)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::shannon_row;

    /// Both figures draw on both backends, with text and without (a machine with no font).
    #[test]
    fn figures_draw_with_and_without_text() {
        let mut r = shannon_row(1.0);
        r.sqnr_bits = 0.9;
        let mut r2 = shannon_row(2.0);
        r2.sqnr_bits = 1.85;
        let curves = vec![Curve {
            family: "a".into(),
            rows: vec![r, r2],
        }];
        let sets: Vec<AngularSet> = ["single shell", "union of shells"]
            .iter()
            .enumerate()
            .map(|(i, f)| AngularSet {
                family: f.to_string(),
                label: f.to_string(),
                rate: 1.0 + i as f64 * 0.01,
                quartiles: [0.1, 0.12, 0.13, 0.14, 0.2],
                mean: 0.13,
                samples: 10,
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("llvq-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for ext in ["svg", "png"] {
            for text in [false, true] {
                let p = dir.join(format!("c{text}.{ext}"));
                rate_curves_with(&p, &curves, "t", text).unwrap();
                assert!(std::fs::metadata(&p).unwrap().len() > 0);
                let p = dir.join(format!("a{text}.{ext}"));
                angular_boxes_with(&p, &sets, text).unwrap();
                assert!(std::fs::metadata(&p).unwrap().len() > 0);
            }
        }
        assert!(matches!(
            rate_curves(&dir.join("x.pdf"), &curves, "t"),
            Err(CodeError::Plot { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
