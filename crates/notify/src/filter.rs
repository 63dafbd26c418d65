//! Subscription filter policies on message attributes, with Amazon SNS's semantics.
//!
//! A policy is a JSON object of at most five attribute names, each with an array of conditions.
//! A message matches when every named attribute matches at least one of its conditions (AND
//! across keys, OR within one). Conditions, as SNS has them:
//! `"red"` (exact string), `42` (exact number), `{"prefix": "pm"}`, `{"suffix": "_1h"}`,
//! `{"numeric": [">=", 101, "<", 200]}`, `{"exists": true}` / `{"exists": false}`,
//! `{"anything-but": ["a", "b"]}` (or one value, numbers, or `{"prefix": …}`) and
//! `{"equals-ignore-case": "Red"}`. Matching is case-sensitive otherwise. An attribute that is
//! an array of strings matches when any element does. Except `{"exists": false}`, every condition
//! needs the attribute to be present.

use serde_json::{Map, Value};

/// SNS's limit on the attribute names of one policy.
pub const MAX_KEYS: usize = 5;
/// SNS's range for numeric matching.
const NUMERIC_LIMIT: f64 = 1e9;

/// A policy that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterPolicyError {
    #[error("a filter policy is a JSON object of attribute names: {0}")]
    NotAnObject(String),
    #[error("a filter policy may name at most {MAX_KEYS} attributes; this one names {0}")]
    TooManyKeys(usize),
    #[error("the conditions of {0:?} must be a non-empty array")]
    NotAnArray(String),
    #[error("condition {condition} of {key:?} is not understood: {reason}")]
    BadCondition {
        key: String,
        condition: String,
        reason: String,
    },
}

/// One numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Exact(String),
    ExactNumber(f64),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    Numeric(Vec<(Cmp, f64)>),
    Exists(bool),
    AnythingBut(Vec<Value>),
    AnythingButPrefix(String),
}

/// A parsed, valid filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    keys: Vec<(String, Vec<Condition>)>,
}

impl FilterPolicy {
    /// Parses and checks a policy given as JSON text.
    pub fn parse(text: &str) -> Result<FilterPolicy, FilterPolicyError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| FilterPolicyError::NotAnObject(e.to_string()))?;
        FilterPolicy::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<FilterPolicy, FilterPolicyError> {
        let Value::Object(map) = value else {
            return Err(FilterPolicyError::NotAnObject(value.to_string()));
        };
        if map.len() > MAX_KEYS {
            return Err(FilterPolicyError::TooManyKeys(map.len()));
        }
        let mut keys = Vec::with_capacity(map.len());
        for (key, conditions) in map {
            let Value::Array(items) = conditions else {
                return Err(FilterPolicyError::NotAnArray(key.clone()));
            };
            if items.is_empty() {
                return Err(FilterPolicyError::NotAnArray(key.clone()));
            }
            let parsed = items
                .iter()
                .map(|c| parse_condition(key, c))
                .collect::<Result<Vec<_>, _>>()?;
            keys.push((key.clone(), parsed));
        }
        Ok(FilterPolicy { keys })
    }

    /// Whether a message with these attributes passes.
    pub fn matches(&self, attributes: &Map<String, Value>) -> bool {
        self.keys.iter().all(|(key, conditions)| {
            let value = attributes.get(key).filter(|v| !v.is_null());
            conditions.iter().any(|c| condition_matches(c, value))
        })
    }
}

/// Whether `attributes` pass the policy given as JSON text; no policy passes everything. A
/// stored policy that no longer parses passes nothing (it was checked when it was set).
pub fn passes(policy: Option<&str>, attributes: &Map<String, Value>) -> bool {
    match policy {
        None => true,
        Some(text) => FilterPolicy::parse(text).is_ok_and(|p| p.matches(attributes)),
    }
}

fn bad(key: &str, condition: &Value, reason: &str) -> FilterPolicyError {
    FilterPolicyError::BadCondition {
        key: key.to_string(),
        condition: condition.to_string(),
        reason: reason.to_string(),
    }
}

fn number_in_range(key: &str, condition: &Value, n: f64) -> Result<f64, FilterPolicyError> {
    if n.abs() > NUMERIC_LIMIT {
        return Err(bad(key, condition, "numbers must be within ±1,000,000,000"));
    }
    Ok(n)
}

fn parse_condition(key: &str, c: &Value) -> Result<Condition, FilterPolicyError> {
    match c {
        Value::String(s) => Ok(Condition::Exact(s.clone())),
        Value::Number(n) => Ok(Condition::ExactNumber(number_in_range(
            key,
            c,
            n.as_f64().unwrap_or(f64::NAN),
        )?)),
        Value::Object(op) if op.len() == 1 => {
            let (name, arg) = op.iter().next().expect("one entry");
            parse_operator(key, c, name, arg)
        }
        _ => Err(bad(
            key,
            c,
            "use a string, a number or an object with one operator",
        )),
    }
}

fn string_arg(key: &str, c: &Value, arg: &Value) -> Result<String, FilterPolicyError> {
    match arg {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(bad(key, c, "the operator takes a non-empty string")),
    }
}

fn parse_operator(
    key: &str,
    c: &Value,
    name: &str,
    arg: &Value,
) -> Result<Condition, FilterPolicyError> {
    match name {
        "prefix" => Ok(Condition::Prefix(string_arg(key, c, arg)?)),
        "suffix" => Ok(Condition::Suffix(string_arg(key, c, arg)?)),
        "equals-ignore-case" => Ok(Condition::EqualsIgnoreCase(string_arg(key, c, arg)?)),
        "exists" => match arg {
            Value::Bool(b) => Ok(Condition::Exists(*b)),
            _ => Err(bad(key, c, "exists takes true or false")),
        },
        "numeric" => parse_numeric(key, c, arg),
        "anything-but" => match arg {
            Value::String(_) => Ok(Condition::AnythingBut(vec![arg.clone()])),
            Value::Number(n) => {
                number_in_range(key, c, n.as_f64().unwrap_or(f64::NAN))?;
                Ok(Condition::AnythingBut(vec![arg.clone()]))
            }
            Value::Array(items)
                if !items.is_empty()
                    && (items.iter().all(Value::is_string)
                        || items.iter().all(Value::is_number)) =>
            {
                Ok(Condition::AnythingBut(items.clone()))
            }
            Value::Object(inner) if inner.len() == 1 && inner.contains_key("prefix") => Ok(
                Condition::AnythingButPrefix(string_arg(key, c, &inner["prefix"])?),
            ),
            _ => Err(bad(
                key,
                c,
                "anything-but takes a value, an array of strings or of numbers, or {\"prefix\": …}",
            )),
        },
        other => Err(bad(key, c, &format!("unknown operator {other:?}"))),
    }
}

fn parse_numeric(key: &str, c: &Value, arg: &Value) -> Result<Condition, FilterPolicyError> {
    let Value::Array(items) = arg else {
        return Err(bad(
            key,
            c,
            "numeric takes an array such as [\">=\", 0, \"<\", 10]",
        ));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(bad(
            key,
            c,
            "numeric takes one or two (operator, number) pairs",
        ));
    }
    let mut cmps = Vec::new();
    for pair in items.chunks(2) {
        let op = match pair[0].as_str() {
            Some("=") => Cmp::Eq,
            Some(">") => Cmp::Gt,
            Some(">=") => Cmp::Ge,
            Some("<") => Cmp::Lt,
            Some("<=") => Cmp::Le,
            _ => return Err(bad(key, c, "operators are =, >, >=, < and <=")),
        };
        let n = pair[1]
            .as_f64()
            .ok_or_else(|| bad(key, c, "each operator is followed by a number"))?;
        cmps.push((op, number_in_range(key, c, n)?));
    }
    let lower = |op: Cmp| matches!(op, Cmp::Gt | Cmp::Ge);
    let upper = |op: Cmp| matches!(op, Cmp::Lt | Cmp::Le);
    match cmps.as_slice() {
        [(Cmp::Eq, _)] | [(_, _)] => {}
        [(a, lo), (b, hi)] if lower(*a) && upper(*b) => {
            if lo >= hi {
                return Err(bad(key, c, "the lower bound must be below the upper one"));
            }
        }
        _ => {
            return Err(bad(
                key,
                c,
                "a range is a lower bound (> or >=) followed by an upper bound (< or <=)",
            ))
        }
    }
    Ok(Condition::Numeric(cmps))
}

/// The attribute's values: one for a scalar, each element for an array.
fn values(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    }
}

fn condition_matches(c: &Condition, value: Option<&Value>) -> bool {
    let Some(value) = value else {
        return matches!(c, Condition::Exists(false));
    };
    let any_str =
        |f: &dyn Fn(&str) -> bool| values(value).iter().any(|v| v.as_str().is_some_and(f));
    let any_num = |f: &dyn Fn(f64) -> bool| values(value).iter().any(|v| v.as_f64().is_some_and(f));
    match c {
        Condition::Exists(wanted) => *wanted,
        Condition::Exact(s) => any_str(&|v| v == s),
        Condition::ExactNumber(n) => any_num(&|v| v == *n),
        Condition::Prefix(p) => any_str(&|v| v.starts_with(p.as_str())),
        Condition::Suffix(p) => any_str(&|v| v.ends_with(p.as_str())),
        Condition::EqualsIgnoreCase(s) => any_str(&|v| v.to_lowercase() == s.to_lowercase()),
        Condition::Numeric(cmps) => any_num(&|v| {
            cmps.iter().all(|(op, n)| match op {
                Cmp::Eq => v == *n,
                Cmp::Gt => v > *n,
                Cmp::Ge => v >= *n,
                Cmp::Lt => v < *n,
                Cmp::Le => v <= *n,
            })
        }),
        Condition::AnythingBut(excluded) => values(value).iter().all(|v| {
            !excluded.iter().any(|x| match (x, v) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                (a, b) => a == *b,
            })
        }),
        Condition::AnythingButPrefix(p) => values(value)
            .iter()
            .all(|v| !v.as_str().is_some_and(|s| s.starts_with(p.as_str()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn check(policy: Value, message: Value) -> bool {
        FilterPolicy::from_value(&policy)
            .unwrap()
            .matches(&attrs(message))
    }

    #[test]
    fn exact_strings_are_case_sensitive_and_or_within_a_key() {
        let p = json!({"category": ["unhealthy", "hazardous"]});
        assert!(check(p.clone(), json!({"category": "unhealthy"})));
        assert!(check(p.clone(), json!({"category": "hazardous"})));
        assert!(!check(p.clone(), json!({"category": "Unhealthy"})));
        assert!(!check(p.clone(), json!({"category": "good"})));
        assert!(!check(p, json!({})), "a named attribute must be present");
    }

    #[test]
    fn keys_combine_with_and() {
        let p = json!({"station": ["s1"], "parameter": ["pm25"]});
        assert!(check(
            p.clone(),
            json!({"station": "s1", "parameter": "pm25"})
        ));
        assert!(!check(
            p.clone(),
            json!({"station": "s1", "parameter": "no2"})
        ));
        assert!(!check(p, json!({"station": "s1"})));
    }

    #[test]
    fn exact_numbers_match_numbers_only() {
        let p = json!({"aqi": [150]});
        assert!(check(p.clone(), json!({"aqi": 150})));
        assert!(check(p.clone(), json!({"aqi": 150.0})));
        assert!(!check(p.clone(), json!({"aqi": "150"})));
        assert!(!check(p, json!({"aqi": 151})));
        // A string condition does not match a number either.
        assert!(!check(json!({"aqi": ["150"]}), json!({"aqi": 150})));
    }

    #[test]
    fn prefix_and_suffix() {
        assert!(check(
            json!({"station": [{"prefix": "lon"}]}),
            json!({"station": "london_1"})
        ));
        assert!(!check(
            json!({"station": [{"prefix": "lon"}]}),
            json!({"station": "Lon_1"})
        ));
        assert!(check(
            json!({"p": [{"suffix": "_1h"}]}),
            json!({"p": "no2_1h"})
        ));
        assert!(!check(
            json!({"p": [{"suffix": "_1h"}]}),
            json!({"p": "no2_8h"})
        ));
        assert!(
            !check(json!({"p": [{"prefix": "1"}]}), json!({"p": 12})),
            "numbers are not strings"
        );
    }

    #[test]
    fn numeric_ranges_and_equality() {
        let p = json!({"aqi": [{"numeric": [">=", 101, "<", 151]}]});
        assert!(check(p.clone(), json!({"aqi": 101})));
        assert!(check(p.clone(), json!({"aqi": 150.9})));
        assert!(!check(p.clone(), json!({"aqi": 151})));
        assert!(!check(p.clone(), json!({"aqi": 100})));
        assert!(!check(p, json!({"aqi": "120"})), "numeric needs a number");
        assert!(check(
            json!({"aqi": [{"numeric": [">", 0]}]}),
            json!({"aqi": 0.5})
        ));
        assert!(!check(
            json!({"aqi": [{"numeric": [">", 0]}]}),
            json!({"aqi": 0})
        ));
        assert!(check(
            json!({"aqi": [{"numeric": ["<=", 5]}]}),
            json!({"aqi": 5})
        ));
        assert!(check(
            json!({"aqi": [{"numeric": ["=", 7.5]}]}),
            json!({"aqi": 7.5})
        ));
    }

    #[test]
    fn exists_true_and_false() {
        assert!(check(
            json!({"rule": [{"exists": true}]}),
            json!({"rule": "r1"})
        ));
        assert!(!check(json!({"rule": [{"exists": true}]}), json!({})));
        assert!(check(json!({"rule": [{"exists": false}]}), json!({})));
        assert!(!check(
            json!({"rule": [{"exists": false}]}),
            json!({"rule": "r1"})
        ));
        assert!(
            check(json!({"rule": [{"exists": false}]}), json!({"rule": null})),
            "null is absent"
        );
    }

    #[test]
    fn anything_but_values_numbers_and_prefixes() {
        let p = json!({"category": [{"anything-but": ["good", "moderate"]}]});
        assert!(check(p.clone(), json!({"category": "unhealthy"})));
        assert!(!check(p.clone(), json!({"category": "good"})));
        assert!(
            !check(p.clone(), json!({})),
            "anything-but needs the attribute"
        );
        assert!(check(json!({"n": [{"anything-but": 3}]}), json!({"n": 4})));
        assert!(!check(
            json!({"n": [{"anything-but": [3, 4]}]}),
            json!({"n": 4.0})
        ));
        assert!(check(
            json!({"s": [{"anything-but": "x"}]}),
            json!({"s": "y"})
        ));
        let pre = json!({"station": [{"anything-but": {"prefix": "test_"}}]});
        assert!(check(pre.clone(), json!({"station": "london"})));
        assert!(!check(pre, json!({"station": "test_1"})));
    }

    #[test]
    fn string_arrays_match_when_any_element_does() {
        let p = json!({"parameters": ["pm25"]});
        assert!(check(p.clone(), json!({"parameters": ["no2", "pm25"]})));
        assert!(!check(p, json!({"parameters": ["no2", "o3"]})));
        let but = json!({"parameters": [{"anything-but": ["pm25"]}]});
        assert!(!check(but.clone(), json!({"parameters": ["no2", "pm25"]})));
        assert!(check(but, json!({"parameters": ["no2", "o3"]})));
    }

    #[test]
    fn equals_ignore_case() {
        let p = json!({"kind": [{"equals-ignore-case": "OPEN"}]});
        assert!(check(p.clone(), json!({"kind": "open"})));
        assert!(!check(p, json!({"kind": "opened"})));
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        let refuse = |v: Value| FilterPolicy::from_value(&v).unwrap_err();
        assert!(matches!(
            refuse(json!([1])),
            FilterPolicyError::NotAnObject(_)
        ));
        assert!(matches!(
            refuse(json!({"a": [1], "b": [1], "c": [1], "d": [1], "e": [1], "f": [1]})),
            FilterPolicyError::TooManyKeys(6)
        ));
        assert!(matches!(
            refuse(json!({"a": 1})),
            FilterPolicyError::NotAnArray(_)
        ));
        assert!(matches!(
            refuse(json!({"a": []})),
            FilterPolicyError::NotAnArray(_)
        ));
        for bad in [
            json!({"a": [{"regex": "x"}]}),
            json!({"a": [{"numeric": [">", "x"]}]}),
            json!({"a": [{"numeric": ["<", 5, ">", 1]}]}),
            json!({"a": [{"numeric": [">", 5, "<", 1]}]}),
            json!({"a": [{"numeric": [">", 1, "<", 5, "=", 3]}]}),
            json!({"a": [{"numeric": ["!=", 1]}]}),
            json!({"a": [{"exists": "yes"}]}),
            json!({"a": [{"prefix": ""}]}),
            json!({"a": [{"prefix": 1}]}),
            json!({"a": [{"anything-but": [1, "x"]}]}),
            json!({"a": [{"anything-but": []}]}),
            json!({"a": [2e9]}),
            json!({"a": [true]}),
            json!({"a": [{"prefix": "x", "suffix": "y"}]}),
        ] {
            assert!(
                matches!(
                    FilterPolicy::from_value(&bad),
                    Err(FilterPolicyError::BadCondition { .. })
                ),
                "{bad} should be refused"
            );
        }
        assert!(FilterPolicy::parse("{not json").is_err());
        assert!(
            FilterPolicy::parse(r#"{"a":["x"],"b":["y"],"c":["z"],"d":["w"],"e":["v"]}"#).is_ok()
        );
    }

    #[test]
    fn no_policy_passes_everything_and_a_corrupt_one_nothing() {
        let a = attrs(json!({"x": "y"}));
        assert!(passes(None, &a));
        assert!(passes(Some(r#"{"x":["y"]}"#), &a));
        assert!(!passes(Some(r#"{"x":["z"]}"#), &a));
        assert!(!passes(Some("garbage"), &a));
    }
}
