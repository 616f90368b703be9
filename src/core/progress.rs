//! Progress bars on stderr, one style for every stage: a bar for counted work and a spinner for
//! waits of unknown length. Both are hidden when stderr is not a terminal (indicatif's rule).
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// A bar over `len` units of work, labelled `what` (e.g. "features (baseline)").
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>18} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// [`progress`] when `show`, else a hidden bar (library callers and tests ask for none).
pub fn progress_if(show: bool, len: u64, what: &str) -> ProgressBar {
    if show {
        progress(len, what)
    } else {
        ProgressBar::hidden()
    }
}

/// A spinner with a message, ticking on its own (for waits: queues, optimiser starts).
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let s = ProgressBar::new_spinner().with_message(msg.into());
    s.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
    );
    s.enable_steady_tick(Duration::from_millis(120));
    s
}
