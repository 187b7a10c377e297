//! The aligned text table that `Display for Stats` prints.

use std::fmt;

use super::live::Role;
use super::snapshot::Stats;

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        resource_rows(f, self)?;
        dedup_lines(f, self)?;
        live_lines(f, self)
    }
}

/// One aligned row per resource, under a header.
fn resource_rows(f: &mut fmt::Formatter<'_>, stats: &Stats) -> fmt::Result {
    let header = [
        "resource",
        "reads",
        "writes",
        "contended",
        "timeouts",
        "busy",
        "errors",
        "panics",
        "holders",
        "waiters",
        "live keys",
        "wait p50",
        "wait p99",
        "wait max",
    ];
    let rows: Vec<[String; 14]> = stats
        .resources
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.read_acquisitions.to_string(),
                r.write_acquisitions.to_string(),
                r.contended.to_string(),
                r.timeouts.to_string(),
                r.busy.to_string(),
                r.errors_while_held.to_string(),
                r.panics_while_held.to_string(),
                r.holders.to_string(),
                r.waiters.to_string(),
                r.live_keys.to_string(),
                format!("{:?}", r.wait.p50),
                format!("{:?}", r.wait.p99),
                format!("{:?}", r.wait.max),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index == 0 {
                write!(f, "{cell:<width$}")?;
            } else {
                write!(f, "  {cell:>width$}")?;
            }
        }
        writeln!(f)
    };
    line(f, &header)?;
    for row in &rows {
        line(f, &row.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    Ok(())
}

/// One line per dedup scope.
fn dedup_lines(f: &mut fmt::Formatter<'_>, stats: &Stats) -> fmt::Result {
    for d in &stats.dedup {
        writeln!(
            f,
            "dedup {}: {} duplicates skipped, {} remembered (capacity {}, ttl {:?}), {} in flight",
            d.name, d.duplicates, d.remembered, d.capacity, d.ttl, d.in_flight
        )?;
    }
    Ok(())
}

/// One line per holder and waiter in the live view.
fn live_lines(f: &mut fmt::Formatter<'_>, stats: &Stats) -> fmt::Result {
    for resource in &stats.resources {
        for who in &resource.live {
            let role = match who.role {
                Role::Holding => "holds",
                Role::Waiting => "waits for",
            };
            write!(f, "  {} {role} the {} lock", resource.name, who.access)?;
            if let Some(key) = &who.key {
                write!(f, " on key {key}")?;
            }
            write!(
                f,
                " for {:?}, from {} on thread {}",
                who.duration, who.location, who.thread
            )?;
            if let Some(task) = &who.task {
                write!(f, " (task {task})")?;
            }
            writeln!(f)?;
        }
    }
    Ok(())
}
