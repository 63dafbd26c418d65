//! The inspection engine: which rules exist, in which order they run, what each
//! one's action is, which route exclusions apply, and the verdict.

use crate::config::{Action, Exclusion, Oversize, WafConfig};
use crate::detectors::{Detector, Forms, DETECTORS};
use crate::protocol;
use crate::request::{parse, Field, InspectedRequest, Loc};
use crate::samples::{Sample, SampleBook};
use crate::signatures::{self, is_inert, Signature};
use crate::transform::{self, Transform};
use crate::WafError;
use serde::Serialize;
use std::collections::HashMap;

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub group: String,
    pub action: Action,
    /// Where: `query_arg:q`, `header:user-agent`, `body`, `request`…
    pub location: String,
    /// The start of the value that matched (at most 120 characters).
    pub excerpt: String,
}

/// The outcome of an inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Every match, in evaluation order; the last one is the terminating rule when the
    /// request was blocked or allowed by a rule.
    pub matches: Vec<RuleMatch>,
    pub action: Action,
}

impl Verdict {
    fn pass() -> Verdict {
        Verdict {
            matches: Vec::new(),
            action: Action::Allow,
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.action == Action::Block
    }

    /// The rule that blocked the request.
    pub fn blocking_rule(&self) -> Option<&RuleMatch> {
        self.matches
            .iter()
            .find(|m| m.action == Action::Block)
            .filter(|_| self.is_blocked())
    }
}

/// A rule's identity and resolved action.
#[derive(Debug, Clone, Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub group: String,
    pub action: Action,
    pub description: String,
}

struct CompiledExclusion {
    methods: Vec<String>,
    path: String,
    prefix: bool,
    rules: Vec<String>,
    targets: Vec<String>,
}

impl CompiledExclusion {
    fn new(e: &Exclusion) -> CompiledExclusion {
        let (path, prefix) = match e.path.strip_suffix('*') {
            Some(p) => (p.to_owned(), true),
            None => (e.path.clone(), false),
        };
        CompiledExclusion {
            methods: e.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            path,
            prefix,
            rules: e.rules.clone(),
            targets: e.targets.iter().map(|t| t.to_ascii_lowercase()).collect(),
        }
    }

    fn applies_to_route(&self, req: &InspectedRequest) -> bool {
        let path = req.raw_path();
        (self.methods.is_empty() || self.methods.contains(&req.method))
            && if self.prefix {
                path.starts_with(&self.path)
            } else {
                path == self.path
            }
    }

    fn covers_rule(&self, rule: &RuleInfo) -> bool {
        self.rules.iter().any(|r| {
            r == "*"
                || *r == rule.id
                || *r == rule.group
                || r.strip_suffix('*').is_some_and(|p| rule.id.starts_with(p))
        })
    }

    fn covers_field(&self, field: &Field) -> bool {
        self.targets.iter().any(|t| target_covers(t, field))
    }
}

fn target_covers(target: &str, field: &Field) -> bool {
    if target == "*" {
        return true;
    }
    if target == "body" {
        return field.loc.in_body();
    }
    if target == "query" {
        return matches!(field.loc, Loc::Query | Loc::QueryArg | Loc::QueryArgName);
    }
    let Some((kind, name)) = target.split_once(':') else {
        return false;
    };
    let name_is = |n: &str| {
        n.eq_ignore_ascii_case(name)
            || n.rsplit('.')
                .next()
                .is_some_and(|last| last.eq_ignore_ascii_case(name))
    };
    match kind {
        "arg" => {
            matches!(
                field.loc,
                Loc::QueryArg | Loc::QueryArgName | Loc::BodyArg | Loc::BodyArgName
            ) && name_is(&field.name)
        }
        "cookie" => matches!(field.loc, Loc::Cookie | Loc::CookieName) && name_is(&field.name),
        "header" => field.loc == Loc::Header && field.name.eq_ignore_ascii_case(name),
        _ => false,
    }
}

/// The web application firewall: compiled rules and their configuration.
pub struct Waf {
    config: WafConfig,
    rules: Vec<RuleInfo>,
    by_id: HashMap<String, usize>,
    signatures: Vec<(usize, Signature)>,
    /// Signature indices grouped by their transformation chain.
    chains: Vec<(Vec<Transform>, Vec<usize>)>,
    detectors: Vec<(usize, &'static Detector)>,
    exclusions: Vec<CompiledExclusion>,
    samples: SampleBook,
}

fn group_of(id: &str) -> String {
    id.split('-').next().unwrap_or(id).to_owned()
}

impl Waf {
    /// Compiles the shipped rules under `config`.
    pub fn new(config: WafConfig) -> Result<Waf, WafError> {
        if !(1..=4).contains(&config.paranoia) {
            return Err(WafError::Config(format!(
                "paranoia must be 1 to 4, not {}",
                config.paranoia
            )));
        }
        let mut waf = Waf {
            rules: Vec::new(),
            by_id: HashMap::new(),
            signatures: Vec::new(),
            chains: Vec::new(),
            detectors: Vec::new(),
            exclusions: config
                .all_exclusions()
                .map(CompiledExclusion::new)
                .collect(),
            samples: SampleBook::new(config.sample_size),
            config,
        };
        for (id, description) in protocol::RULES {
            waf.add_rule(id, description);
        }
        for d in DETECTORS {
            let idx = waf.add_rule(d.id, d.description);
            waf.detectors.push((idx, d));
        }
        let mut sigs = signatures::load(signatures::OWN_RULES, "signatures.toml")?;
        sigs.extend(signatures::load(signatures::CRS_RULES, "crs.toml")?);
        let paranoia = waf.config.paranoia;
        let named = |id: &str| waf.config.rules.get(id).is_some_and(|a| *a != Action::Off);
        let wanted: Vec<Signature> = sigs
            .into_iter()
            .filter(|s| s.paranoia <= paranoia || named(&s.id))
            .collect();
        for sig in wanted {
            let idx = waf.add_rule(&sig.id.clone(), &sig.description.clone());
            waf.signatures.push((idx, sig));
        }
        waf.group_chains();
        waf.check_config_names()?;
        Ok(waf)
    }

    fn add_rule(&mut self, id: &str, description: &str) -> usize {
        let group = group_of(id);
        let action = self
            .config
            .rules
            .get(id)
            .or_else(|| self.config.groups.get(&group))
            .copied()
            .unwrap_or(self.config.default_action);
        self.rules.push(RuleInfo {
            id: id.to_owned(),
            group,
            action,
            description: description.to_owned(),
        });
        self.by_id.insert(id.to_owned(), self.rules.len() - 1);
        self.rules.len() - 1
    }

    fn group_chains(&mut self) {
        for (i, (rule, sig)) in self.signatures.iter().enumerate() {
            if self.rules[*rule].action == Action::Off {
                continue;
            }
            match self.chains.iter_mut().find(|(t, _)| *t == sig.transforms) {
                Some((_, members)) => members.push(i),
                None => self.chains.push((sig.transforms.clone(), vec![i])),
            }
        }
    }

    /// Rule ids named in `rules` must exist, so that a typo does not silently do nothing.
    fn check_config_names(&self) -> Result<(), WafError> {
        for id in self.config.rules.keys() {
            let known = self.by_id.contains_key(id) || signatures::known_above_paranoia(id);
            if !known {
                return Err(WafError::Config(format!(
                    "[waf.rules] names an unknown rule `{id}`"
                )));
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &WafConfig {
        &self.config
    }

    /// Every loaded rule with its action.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// The most recent blocked requests, newest last (cookies and credentials redacted).
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.list()
    }

    /// Inspects one request and records the outcome: a `ecocityhub_waf_matches_total`
    /// counter per matching rule and action, a log line and a sample per block.
    pub fn inspect_recorded(&self, req: &InspectedRequest) -> Verdict {
        let verdict = self.inspect(req);
        for m in &verdict.matches {
            metrics::counter!("ecocityhub_waf_matches_total", "rule" => m.rule.clone(), "action" => m.action.as_str()).increment(1);
        }
        if let Some(m) = verdict.blocking_rule() {
            tracing::warn!(rule = %m.rule, location = %m.location, method = %req.method, path = %req.raw_path(), "waf blocked a request");
            self.samples.record(req, &verdict);
        } else if !verdict.matches.is_empty() {
            let rules: Vec<&str> = verdict.matches.iter().map(|m| m.rule.as_str()).collect();
            tracing::info!(rules = ?rules, method = %req.method, path = %req.raw_path(), "waf counted a request");
        }
        verdict
    }

    /// Inspects one request.
    pub fn inspect(&self, req: &InspectedRequest) -> Verdict {
        if !self.config.enabled {
            return Verdict::pass();
        }
        let mut run = Run {
            waf: self,
            req,
            matches: Vec::new(),
            done: None,
            excl: self.exclusions_for(req),
        };
        run.request_level();
        if run.done.is_none() {
            run.fields();
        }
        let action = run.done.unwrap_or(Action::Allow);
        Verdict {
            matches: run.matches,
            action,
        }
    }

    fn exclusions_for(&self, req: &InspectedRequest) -> Vec<&CompiledExclusion> {
        self.exclusions
            .iter()
            .filter(|e| e.applies_to_route(req))
            .collect()
    }
}

/// The state of one inspection.
pub(crate) struct Run<'a> {
    waf: &'a Waf,
    pub req: &'a InspectedRequest,
    matches: Vec<RuleMatch>,
    done: Option<Action>,
    excl: Vec<&'a CompiledExclusion>,
}

fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

impl<'a> Run<'a> {
    pub fn config(&self) -> &WafConfig {
        &self.waf.config
    }

    fn excluded(&self, rule: usize, field: &Field) -> bool {
        let info = &self.waf.rules[rule];
        self.excl
            .iter()
            .any(|e| e.covers_field(field) && e.covers_rule(info))
    }

    /// The exclusions of this route that name `field` (usually none).
    fn field_exclusions(&self, field: &Field) -> Vec<&'a CompiledExclusion> {
        self.excl
            .iter()
            .copied()
            .filter(|e| e.covers_field(field))
            .collect()
    }

    fn wants(&self, rule: usize) -> bool {
        self.done.is_none() && self.waf.rules[rule].action != Action::Off
    }

    /// Records a match of the built-in rule `id` at `field` (checking exclusions).
    pub fn report(&mut self, id: &str, field: &Field) {
        let Some(&rule) = self.waf.by_id.get(id) else {
            return;
        };
        if self.wants(rule) && !self.excluded(rule, field) {
            self.record(rule, field);
        }
    }

    fn record(&mut self, rule: usize, field: &Field) {
        let info = &self.waf.rules[rule];
        let location = match (field.loc, field.name.is_empty()) {
            (
                Loc::Header
                | Loc::Cookie
                | Loc::CookieName
                | Loc::QueryArg
                | Loc::BodyArg
                | Loc::QueryArgName
                | Loc::BodyArgName,
                false,
            ) => {
                format!("{}:{}", field.loc.label(), field.name)
            }
            _ => field.loc.label().to_owned(),
        };
        let sensitive = matches!(field.loc, Loc::Cookie)
            || (field.loc == Loc::Header && crate::samples::is_secret_header(&field.name));
        self.matches.push(RuleMatch {
            rule: info.id.clone(),
            group: info.group.clone(),
            action: info.action,
            location,
            excerpt: if sensitive {
                "[redacted]".to_owned()
            } else {
                excerpt(&field.value)
            },
        });
        if matches!(info.action, Action::Block | Action::Allow) {
            self.done = Some(info.action);
        }
    }

    fn request_level(&mut self) {
        protocol::check_request(self);
        let oversize = self.req.body.len() > self.waf.config.body_limit || !self.req.body_complete;
        if oversize && self.waf.config.oversize == Oversize::Block {
            let field = Field {
                loc: Loc::Body,
                name: String::new(),
                value: String::new(),
            };
            self.report("size-body-oversize", &field);
        }
    }

    fn fields(&mut self) {
        let parsed = parse(self.req, self.waf.config.body_limit);
        protocol::check_parsed(self, &parsed);
        // A value seen before at the same kind of place, with no exclusion naming it,
        // was already inspected without a match (a batch of readings repeats its units).
        let mut seen: std::collections::HashSet<(Loc, &str)> = std::collections::HashSet::new();
        for field in &parsed.fields {
            if self.done.is_some() {
                return;
            }
            let excl = self.field_exclusions(field);
            if excl.is_empty() && !seen.insert((field.loc, field.value.as_str())) {
                continue;
            }
            self.field(field, &excl);
        }
    }

    fn field(&mut self, field: &Field, excl: &[&CompiledExclusion]) {
        if field.value.is_empty() {
            return;
        }
        let inert = is_inert(&field.value);
        let waf = self.waf;
        for (transforms, members) in &waf.chains {
            let mut transformed: Option<String> = None;
            for &sig_idx in members {
                let (rule, sig) = &waf.signatures[sig_idx];
                if (inert && !sig.runs_on_inert)
                    || !sig.applies_to(field)
                    || !self.wants(*rule)
                    || excl.iter().any(|e| e.covers_rule(&waf.rules[*rule]))
                {
                    continue;
                }
                let value = transformed
                    .get_or_insert_with(|| transform::apply_all(transforms, &field.value));
                if sig.matches(value) {
                    self.record(*rule, field);
                    if self.done.is_some() {
                        return;
                    }
                }
            }
        }
        if inert && !field.value.contains("__") && !field.value.contains("prototype") {
            return;
        }
        let decoded =
            transform::fold_fullwidth(&transform::apply(Transform::UrlDecodeUni, &field.value))
                .replace('\0', "");
        let normal = transform::normal_form(&field.value);
        let forms = Forms {
            decoded: &decoded,
            normal: &normal,
        };
        for (rule, d) in &waf.detectors {
            if (inert && !d.inert)
                || d.locs & field.loc.bit() == 0
                || (field.loc == Loc::Header
                    && !d.headers.is_empty()
                    && !d.headers.contains(&field.name.as_str()))
            {
                continue;
            }
            if self.wants(*rule)
                && !excl.iter().any(|e| e.covers_rule(&waf.rules[*rule]))
                && (d.check)(&forms)
            {
                self.record(*rule, field);
                if self.done.is_some() {
                    return;
                }
            }
        }
    }
}
