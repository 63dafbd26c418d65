//! Process figures: resident memory (Linux's `/proc/self/status`; absent elsewhere) and uptime.

use crate::names::{PROCESS_RSS, PROCESS_UPTIME};

/// The resident set size in bytes, where the system tells it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Sets the process gauges.
pub fn sample(uptime_seconds: f64) {
    if let Some(rss) = resident_bytes() {
        metrics::gauge!(PROCESS_RSS.name).set(rss as f64);
    }
    metrics::gauge!(PROCESS_UPTIME.name).set(uptime_seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t   2048 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(status), Some(2 * 1024 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        #[cfg(target_os = "linux")]
        assert!(resident_bytes().unwrap() > 1024 * 1024);
    }
}
