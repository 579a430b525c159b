//! The Prometheus text format 0.0.4 for readers that do not take OpenMetrics.

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4. The two differ in what a
/// 0.0.4 reader checks: a counter family is named with its `_total` suffix there (else
/// its HELP and TYPE describe no sample), `# UNIT` and `# EOF` do not exist.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let name = rest.split(' ').next().unwrap_or_default();
            if counters.contains(name) && !name.ends_with("_total") {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&rest[name.len()..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let om = "# HELP spillway_scrapes Scrapes attempted.\n# TYPE spillway_scrapes counter\nspillway_scrapes_total 3\n# HELP spillway_store_memory_bytes Memory.\n# TYPE spillway_store_memory_bytes gauge\n# UNIT spillway_store_memory_bytes bytes\nspillway_store_memory_bytes 10\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP spillway_scrapes_total Scrapes attempted.\n# TYPE spillway_scrapes_total counter\nspillway_scrapes_total 3\n# HELP spillway_store_memory_bytes Memory.\n# TYPE spillway_store_memory_bytes gauge\nspillway_store_memory_bytes 10\n"
        );
    }
}
