//! The run summary for people: one aligned table row per resource and a total row, which
//! the binary prints on stderr at the end of a run (the `key=value` lines on stdout stay
//! for scripts).

use crate::ResourceReport;

/// The table of `reports` with a total row; `seconds` is the whole run's wall time.
pub fn table(reports: &[ResourceReport], seconds: f64) -> String {
    let header = [
        "resource",
        "topic",
        "pages",
        "records",
        "retries",
        "429s",
        "bytes",
        "seconds",
        "records/s",
    ];
    let row = |name: &str,
               topic: &str,
               pages: u64,
               records: u64,
               retries: u64,
               throttled: u64,
               bytes: u64,
               secs: f64| {
        vec![
            name.to_owned(),
            topic.to_owned(),
            pages.to_string(),
            records.to_string(),
            retries.to_string(),
            throttled.to_string(),
            human_bytes(bytes),
            format!("{secs:.3}"),
            format!("{:.0}", records as f64 / secs.max(1e-9)),
        ]
    };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for r in reports {
        rows.push(row(
            &r.resource,
            &r.topic,
            r.pages,
            r.records,
            r.retries,
            r.throttled,
            r.bytes,
            r.seconds,
        ));
    }
    let sum = |f: fn(&ResourceReport) -> u64| reports.iter().map(f).sum::<u64>();
    rows.push(row(
        "total",
        "",
        sum(|r| r.pages),
        sum(|r| r.records),
        sum(|r| r.retries),
        sum(|r| r.throttled),
        sum(|r| r.bytes),
        seconds,
    ));
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        if i == rows.len() - 1 {
            // A rule above the total row.
            let rule: usize = widths.iter().sum::<usize>() + 2 * (columns - 1);
            out.push_str(&"-".repeat(rule));
            out.push('\n');
        }
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                // Names to the left, figures to the right.
                if c < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `bytes` in B, KiB, MiB or GiB with one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, pages: u64, records: u64, throttled: u64) -> ResourceReport {
        ResourceReport {
            resource: name.into(),
            topic: format!("p.{name}"),
            run_id: 1,
            resumed: false,
            pages,
            records,
            retries: throttled,
            throttled,
            bytes: records * 300,
            seconds: 2.0,
        }
    }

    #[test]
    fn one_aligned_row_per_resource_and_a_total() {
        let text = table(
            &[report("a", 3, 250, 0), report("longer_name", 10, 1000, 4)],
            2.5,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("resource     topic"), "{text}");
        assert!(lines[1].starts_with("a            p.a"), "{text}");
        assert!(lines[3].chars().all(|c| c == '-'), "{text}");
        let total: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            total,
            [
                "total", "13", "1250", "4", "4", "366.2", "KiB", "2.500", "500"
            ],
            "{text}"
        );
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "longer_name",
                "p.longer_name",
                "10",
                "1000",
                "4",
                "4",
                "293.0",
                "KiB",
                "2.000",
                "500"
            ]
        );
        // Figures are right-aligned: every row ends in the same column.
        let ends: Vec<usize> = lines
            .iter()
            .filter(|l| !l.starts_with('-'))
            .map(|l| l.chars().count())
            .collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn no_resources_is_a_zero_total() {
        let text = table(&[], 0.0);
        let total: Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(total, ["total", "0", "0", "0", "0", "0", "B", "0.000", "0"]);
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_bytes(3 << 40), "3072.0 GiB");
    }
}
