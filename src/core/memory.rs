//! Memory as the kernel reports it (Linux /proc): the process's resident memory, for the run
//! summaries of memory-bounded stages (`encode --stream`, `bench-whole-brain`), and the
//! available RAM the ridge's default budget is taken from; and how byte counts are printed.

fn proc_kib(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process so far in bytes (`VmHWM`), None off Linux.
pub fn peak_rss() -> Option<u64> {
    proc_kib("/proc/self/status", "VmHWM:").map(|k| k * 1024)
}

/// Current resident set size in bytes (`VmRSS`), None off Linux.
pub fn current_rss() -> Option<u64> {
    proc_kib("/proc/self/status", "VmRSS:").map(|k| k * 1024)
}

/// Memory available to new work in bytes (`MemAvailable` of /proc/meminfo), None off Linux.
pub fn available_ram() -> Option<u64> {
    proc_kib("/proc/meminfo", "MemAvailable:").map(|k| k * 1024)
}

/// A byte count for people, in binary units: 1.50 GiB, 12.00 MiB, 800.00 KiB, 12 B.
pub fn human_bytes(b: u64) -> String {
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in units {
        if b >= size {
            return format!("{:.2} {name}", b as f64 / size as f64);
        }
    }
    format!("{b} B")
}
