//! Progress bars on stderr, drawn only when stderr is a terminal so pipes and `--json`
//! consumers never see them.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// Redraw `bar` steadily (its spinner and elapsed time) when it is drawn at all: a hidden
/// bar gets no ticker thread to start and stop.
pub(super) fn tick_steadily(bar: &ProgressBar) {
    if !bar.is_hidden() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
}

/// A bar over `len` items of work.
pub(super) fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    tick_steadily(&bar);
    bar
}

/// A spinner for one piece of work of unknown length.
pub(super) fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
    );
    bar.set_message(message);
    tick_steadily(&bar);
    bar
}

/// One bar per named part of a larger piece of work (`warm`: one per symbol), over `len`
/// items each, drawn together.
pub(super) fn bars<'a>(
    parts: impl IntoIterator<Item = (&'a str, u64)>,
    unit: &str,
) -> Vec<(String, ProgressBar)> {
    let multi = MultiProgress::with_draw_target(target());
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix:<8}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}} {{msg}}"
    ))
    .expect("valid template")
    .progress_chars("=> ");
    parts
        .into_iter()
        .map(|(name, len)| {
            let bar = multi.add(ProgressBar::new(len));
            bar.set_style(style.clone());
            bar.set_prefix(name.to_string());
            tick_steadily(&bar);
            (name.to_string(), bar)
        })
        .collect()
}
