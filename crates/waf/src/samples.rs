//! A bounded sample of recent blocked requests for administrators, as AWS WAF keeps
//! sampled requests. Cookie, authorization and API-key values are never kept.

use crate::engine::{RuleMatch, Verdict};
use crate::request::InspectedRequest;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

/// One blocked request, redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// RFC 3339, UTC.
    pub time: String,
    pub method: String,
    /// The target, cut at 512 bytes.
    pub uri: String,
    /// Header names with values; secrets replaced by `[redacted]`.
    pub headers: Vec<(String, String)>,
    /// The rule that blocked it and where it matched.
    pub rule: RuleMatch,
    /// Other rules that matched first with action `count`.
    pub counted: Vec<String>,
}

/// Headers whose values are credentials.
pub fn is_secret_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "cookie"
            | "set-cookie"
            | "authorization"
            | "proxy-authorization"
            | "x-api-key"
            | "x-amz-security-token"
    )
}

pub(crate) struct SampleBook {
    capacity: usize,
    samples: Mutex<VecDeque<Sample>>,
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl SampleBook {
    pub fn new(capacity: usize) -> SampleBook {
        SampleBook {
            capacity,
            samples: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    pub fn record(&self, req: &InspectedRequest, verdict: &Verdict) {
        let Some(rule) = verdict.blocking_rule() else {
            return;
        };
        if self.capacity == 0 {
            return;
        }
        let sample = Sample {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            method: cut(&req.method, 32),
            uri: cut(&req.uri, 512),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.clone(),
                        if is_secret_header(n) {
                            "[redacted]".to_owned()
                        } else {
                            cut(v, 256)
                        },
                    )
                })
                .collect(),
            rule: rule.clone(),
            counted: verdict
                .matches
                .iter()
                .filter(|m| m.rule != rule.rule)
                .map(|m| m.rule.clone())
                .collect(),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == self.capacity {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    pub fn list(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
