//! What the process uses: CPU time and peak memory (Linux `/proc`).

/// CPU time this process has used (user + system), in seconds.
pub(super) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// The process's peak resident memory (VmHWM), in MiB.
pub(super) fn peak_rss_mib() -> f64 {
    status_field("VmHWM:") / 1024.0
}

/// The process's resident memory now (VmRSS), in MiB.
pub(super) fn rss_mib() -> f64 {
    status_field("VmRSS:") / 1024.0
}

/// The process's threads now.
pub(super) fn threads() -> usize {
    status_field("Threads:") as usize
}

/// A number from `/proc/self/status` (0 if absent).
fn status_field(name: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
