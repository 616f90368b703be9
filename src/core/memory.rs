//! The process's resident memory as the kernel reports it (Linux /proc/self/status), for the
//! run summaries of memory-bounded stages (`encode --stream`, `bench-whole-brain`).

fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process so far in bytes (`VmHWM`), None off Linux.
pub fn peak_rss() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size in bytes (`VmRSS`), None off Linux.
pub fn current_rss() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}
