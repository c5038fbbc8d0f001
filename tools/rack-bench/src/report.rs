//! One figure, one JSON line on stdout.
//!
//! **Invariant:** every figure a bench measures leaves the process as exactly one line of JSON
//! whose first keys are, in this order, `bench`, `figure`, `value`, `unit`, `baseline`,
//! `baseline_value` and `ratio` (= value ÷ baseline_value, `null` when there is no numeric
//! baseline), followed by the figure's extra keys. Nothing else is written to stdout, so the
//! output can be piped to `jq` or appended to a results file as is. Diagnostics go to stderr.

use serde_json::{Value, json};

/// A figure being assembled; [`Figure::print`] writes it.
pub struct Figure {
    bench: &'static str,
    figure: &'static str,
    value: Value,
    unit: &'static str,
    baseline: Option<String>,
    baseline_value: Option<f64>,
    extra: Vec<(&'static str, Value)>,
}

// === impl Figure ===

impl Figure {
    /// A numeric figure.
    pub fn new(bench: &'static str, figure: &'static str, value: f64, unit: &'static str) -> Self {
        Figure {
            bench,
            figure,
            value: json!(round(value)),
            unit,
            baseline: None,
            baseline_value: None,
            extra: Vec::new(),
        }
    }

    /// A figure whose value is not a number (the filesystem type).
    pub fn text(
        bench: &'static str,
        figure: &'static str,
        value: &str,
        unit: &'static str,
    ) -> Self {
        Figure {
            bench,
            figure,
            value: json!(value),
            unit,
            baseline: None,
            baseline_value: None,
            extra: Vec::new(),
        }
    }

    /// What the value is compared against, and that baseline's own value.
    pub fn baseline(mut self, what: impl Into<String>, value: f64) -> Self {
        self.baseline = Some(what.into());
        self.baseline_value = Some(value);
        self
    }

    /// Adds one extra key; numbers are rounded to the precision [`round`] keeps.
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        let value = match value.into() {
            Value::Number(n) if n.is_f64() => json!(n.as_f64().map(round)),
            v => v,
        };
        self.extra.push((key, value));
        self
    }

    /// The JSON line, keys in the documented order.
    pub fn line(&self) -> String {
        let ratio = match (&self.value, self.baseline_value) {
            (Value::Number(v), Some(b)) if b != 0.0 => v.as_f64().map(|v| json!(round(v / b))),
            _ => None,
        };
        let mut fields: Vec<(&str, Value)> = vec![
            ("bench", json!(self.bench)),
            ("figure", json!(self.figure)),
            ("value", self.value.clone()),
            ("unit", json!(self.unit)),
            ("baseline", json!(self.baseline)),
            ("baseline_value", json!(self.baseline_value.map(round))),
            ("ratio", ratio.unwrap_or(Value::Null)),
        ];
        fields.extend(self.extra.iter().cloned());
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{}", json!(k), v))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Writes the line to stdout.
    pub fn print(&self) {
        println!("{}", self.line());
    }
}

/// Rounds to 6 decimals below 1 and 3 decimals above: enough for every figure here, and free
/// of float noise such as `0.30000000000000004`.
pub fn round(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let scale = if x.abs() < 1.0 { 1e6 } else { 1e3 };
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_the_documented_key_order_and_ratio() {
        let line = Figure::new("append", "throughput", 200.0, "events/s")
            .baseline("fdatasync", 100.0)
            .with("writers", 16)
            .line();
        assert_eq!(
            line,
            r#"{"bench":"append","figure":"throughput","value":200.0,"unit":"events/s","baseline":"fdatasync","baseline_value":100.0,"ratio":2.0,"writers":16}"#
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ratio"], json!(2.0));
    }

    #[test]
    fn no_baseline_means_null_ratio() {
        let line = Figure::text("rebuild", "filesystem", "ext4", "fstype").line();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(v["ratio"].is_null() && v["baseline"].is_null());
    }
}
