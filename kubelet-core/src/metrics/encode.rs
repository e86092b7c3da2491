//! The exposition of a registry. prometheus-client writes OpenMetrics; the reference serves
//! the Prometheus text format (0.0.4) unless OpenMetrics is asked for, so for the text
//! format the OpenMetrics lines are rewritten: a counter family takes its `_total` in its
//! `HELP` and `TYPE` lines (or, for a family the reference names without `_total`, its
//! samples lose it), `unknown` is `untyped`, and the `UNIT` and `# EOF` lines go.
//!
//! The format negotiation itself (the `Accept` header, the content types) is the one of
//! `/metrics/resource`: [`Format`].

use prometheus_client::registry::Registry;

pub use crate::stats::metrics::Format;

/// `registry` in `format`; `unsuffixed` names the counter families whose reference name has
/// no `_total`.
pub fn encode(registry: &Registry, format: Format, unsuffixed: &[&str]) -> String {
    let mut open_metrics = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut open_metrics, registry) {
        tracing::error!(error = %e, "encoding metrics failed");
        return String::new();
    }
    match format {
        Format::OpenMetrics => open_metrics,
        Format::Text => to_text(&open_metrics, unsuffixed),
    }
}

/// The Prometheus text format of an OpenMetrics exposition.
pub fn to_text(open_metrics: &str, unsuffixed: &[&str]) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    // prometheus-client writes each family's HELP just before its TYPE: the HELP waits for
    // the TYPE, which tells the name the text format gives the family.
    let mut help: Option<&str> = None;
    // The family whose samples lose their `_total` (a counter the reference names without).
    let mut strip: Option<String> = None;
    for line in open_metrics.lines() {
        let Some(comment) = line.strip_prefix("# ") else {
            let renamed = strip.as_deref().and_then(|base| {
                let after = line.strip_prefix(base)?.strip_prefix("_total")?;
                after
                    .starts_with(['{', ' '])
                    .then(|| format!("{base}{after}"))
            });
            let line = renamed.as_deref().unwrap_or(line);
            out.push_str(&le_last(line).unwrap_or_else(|| line.to_string()));
            out.push('\n');
            continue;
        };
        let mut parts = comment.splitn(3, ' ');
        let (kind, name, rest) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        match kind {
            "HELP" => {
                help = Some(rest);
                continue;
            }
            "TYPE" => {
                strip = None;
                let (text_name, text_type) = match rest {
                    "counter" if unsuffixed.contains(&name) => {
                        strip = Some(name.to_string());
                        (name.to_string(), "counter")
                    }
                    "counter" => (format!("{name}_total"), "counter"),
                    "info" => (format!("{name}_info"), "gauge"),
                    "gauge" | "histogram" | "summary" => (name.to_string(), rest),
                    _ => (name.to_string(), "untyped"),
                };
                if let Some(help) = help.take() {
                    out.push_str(&format!("# HELP {text_name} {help}\n"));
                }
                out.push_str(&format!("# TYPE {text_name} {text_type}\n"));
            }
            // Units are part of the names already; the text format has no EOF.
            _ => {}
        }
    }
    out
}

/// A bucket sample with `le` moved after the series' own labels, where the reference's
/// encoder writes it (`x_bucket{le="1.0",op="a"} 2` is `x_bucket{op="a",le="1.0"} 2`);
/// `None` for other lines.
fn le_last(line: &str) -> Option<String> {
    let (name, rest) = line.split_once("_bucket{le=\"")?;
    let (le, rest) = rest.split_once('"')?;
    let others = rest.strip_prefix(',')?;
    let (others, value) = others.split_once('}')?;
    Some(format!("{name}_bucket{{{others},le=\"{le}\"}}{value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_come_last() {
        assert_eq!(
            le_last("h_bucket{le=\"0.5\",op=\"a\",x=\"b\"} 2").as_deref(),
            Some("h_bucket{op=\"a\",x=\"b\",le=\"0.5\"} 2")
        );
        assert_eq!(le_last("h_bucket{le=\"+Inf\"} 2"), None);
        assert_eq!(le_last("h_sum{op=\"a\"} 2"), None);
    }

    #[test]
    fn counters_take_their_total_in_the_text_format() {
        let om = "# HELP a_ops Ops.\n# TYPE a_ops counter\na_ops_total{x=\"1\"} 2\n\
                  # HELP ev Evictions.\n# TYPE ev counter\nev_total{s=\"m\"} 1\n\
                  # HELP g A gauge.\n# TYPE g gauge\ng 3\n# EOF\n";
        let text = to_text(om, &["ev"]);
        assert_eq!(
            text,
            "# HELP a_ops_total Ops.\n# TYPE a_ops_total counter\na_ops_total{x=\"1\"} 2\n\
             # HELP ev Evictions.\n# TYPE ev counter\nev{s=\"m\"} 1\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 3\n"
        );
    }
}
