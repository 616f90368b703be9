//! Whether a movie covers a BOLD run, on durations alone: shared by the align stage (which
//! refuses a run its movie does not cover) and `dataset check` (which reports it).
use ndarray::Array1;

/// The coverage rule of `align::check_coverage` on durations alone (also used by `dataset check`):
/// the BOLD run may outlast the movie by at most half a TR (the last window is partly
/// covered), and the movie may outlast the BOLD by at most `max_mismatch_s` (default one TR).
pub fn coverage_problem(
    movie_duration: f64,
    tr: f64,
    n_trs: usize,
    max_mismatch_s: Option<f64>,
    what: &str,
) -> Option<String> {
    let bold = tr * n_trs as f64;
    let tol = max_mismatch_s.unwrap_or(tr);
    let short = bold - movie_duration;
    if short > 0.5 * tr + 1e-6 {
        return Some(format!(
            "{what}: the BOLD run ({n_trs} volumes × {tr} s = {bold:.2} s) is longer than the movie ({movie_duration:.2} s) by {short:.2} s"
        ));
    }
    if movie_duration - bold > tol + 1e-6 {
        return Some(format!(
            "{what}: the movie ({movie_duration:.2} s) is longer than the BOLD run ({n_trs} volumes × {tr} s = {bold:.2} s) by {:.2} s \
             (more than the {tol:.2} s tolerated; missing volumes? see align --max-mismatch)",
            movie_duration - bold
        ));
    }
    None
}

/// Duration of a movie from its feature samples' spacing: last sample time plus one period.
pub fn duration_from_times(times: &Array1<f64>) -> f64 {
    let n = times.len();
    if n < 2 {
        return times.get(0).copied().unwrap_or(0.0);
    }
    let period = (times[n - 1] - times[0]) / (n - 1) as f64;
    times[n - 1] + period
}
