#!/usr/bin/env python3
"""Converts the request rules of the OWASP Core Rule Set 3.3.4, as Debian ships it
(`apt-get install modsecurity-crs`, /usr/share/modsecurity-crs/rules), into
`rules/crs.toml`, the signature format of this crate, and copies the phrase lists
the kept rules read. Run from crates/waf: `python3 tools/import_crs.py`.

Only the signatures are taken (variables, transformations, operator, pattern,
paranoia level); anomaly scoring, TX bookkeeping and rules whose logic lives in
TX variables are left out: the engine of this crate implements protocol checks
itself. Rules whose regex needs PCRE-only syntax (look-around, back-references)
are skipped and listed at the end of the output file.
"""
import glob, json, os, re, shutil, sys

SRC = "/usr/share/modsecurity-crs/rules"
OUT = "rules/crs.toml"
FILES = ["REQUEST-913", "REQUEST-921", "REQUEST-930", "REQUEST-931", "REQUEST-932",
         "REQUEST-933", "REQUEST-934", "REQUEST-941", "REQUEST-942", "REQUEST-943",
         "REQUEST-944"]
# Rules whose patterns can match values made only of word characters and `.:+,@-`
# (class names, magic numbers, base64): they also run on such values.
INERT = {"913100", "913101", "913102", "942220", "944100", "944110", "944130", "944200",
         "944210", "944240", "944250", "944300", "934100", "933150", "933151"}
GROUP = {"913": "bad-inputs", "921": "protocol", "930": "lfi", "931": "rfi", "932": "rce",
         "933": "php", "934": "node", "941": "xss", "942": "sqli", "943": "session",
         "944": "java"}
VARS = {
    "ARGS": "args", "ARGS_NAMES": "arg_names", "ARGS_GET": "query_args",
    "ARGS_GET_NAMES": "query_arg_names", "REQUEST_COOKIES": "cookies",
    "REQUEST_COOKIES_NAMES": "cookie_names", "REQUEST_HEADERS": "headers",
    "REQUEST_HEADERS_NAMES": "header_names", "REQUEST_FILENAME": "path",
    "REQUEST_BASENAME": "basename", "REQUEST_URI": "uri", "REQUEST_URI_RAW": "uri",
    "REQUEST_LINE": "request_line", "QUERY_STRING": "query", "REQUEST_BODY": "body",
    "XML:/*": "xml", "XML://@*": "xml", "FILES": "file_names", "FILES_NAMES": "file_fields",
    "MULTIPART_PART_HEADERS": "multipart_headers", "REQUEST_METHOD": "method",
    "REQUEST_PROTOCOL": "protocol",
}


def logical_lines(text):
    return re.sub(r"\\\n\s*", " ", text).split("\n")


def parse_rules(path):
    rules, parent = [], None
    for line in logical_lines(open(path, encoding="utf-8").read()):
        m = re.match(r'\s*SecRule\s+(\S+)\s+"((?:[^"\\]|\\.)*)"\s*(?:"((?:[^"\\]|\\.)*)")?', line)
        if not m:
            continue
        var, op, act = m.group(1), m.group(2), m.group(3) or ""
        rule = {"vars": var, "op": op, "act": act,
                "chain": "chain" in re.split(r"[,\s]+", act)}
        if parent is not None:
            parent["chained"].append(rule)
            if not rule["chain"]:
                parent = None
            continue
        rule["chained"] = []
        rules.append(rule)
        if rule["chain"]:
            parent = rule
    return rules


def targets(var):
    inc, exc = [], []
    for part in var.split("|"):
        neg = part.startswith("!")
        part = part.lstrip("!&")
        if part in VARS:
            (exc if neg else inc).append(VARS[part])
            continue
        name, _, sel = part.partition(":")
        if name == "REQUEST_HEADERS" and sel:
            (exc if neg else inc).append("header:" + sel.lower())
        elif name == "REQUEST_COOKIES" and sel.startswith("/") and neg:
            exc.append("cookie~" + sel.strip("/"))
        elif name == "REQUEST_COOKIES" and sel and neg:
            exc.append("cookie:" + sel.lower())
        else:
            return None, None
    return list(dict.fromkeys(inc)), list(dict.fromkeys(exc))


def unescape_op(op):
    # Inside a SecRule's quoted operator, only \" is an escape of the rule language.
    return op.replace('\\"', '"')


def pcre_only(rx):
    return re.search(r"\(\?[=!<]|\(\?>|\\[1-9]|[*+?}]\+", rx) is not None


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def convert(rule, data_used):
    act = rule["act"]
    rid = re.search(r"\bid:(\d+)", act)
    pl = re.search(r"paranoia-level/(\d)", act)
    if not rid or not pl:
        return None, "no id or paranoia level"
    rid, pl = rid.group(1), int(pl.group(1))
    inc, exc = targets(rule["vars"])
    if not inc:
        return None, f"{rid}: variables {rule['vars'][:60]}"
    op = unescape_op(rule["op"])
    neg = op.startswith("!")
    if neg:
        return None, f"{rid}: negated operator"
    out = {"id": f"{GROUP[rid[:3]]}-{rid}", "crs": int(rid), "paranoia": pl,
           "targets": inc, "exclude": exc,
           "transforms": [t for t in re.findall(r"\bt:(\w+)", act) if t != "none"]}
    if rid in INERT:
        out["inert"] = True
    m = re.match(r"@(\w+)\s?(.*)$", op, re.S)
    name, arg = (m.group(1), m.group(2)) if m else ("rx", op)
    if name == "rx":
        if pcre_only(arg):
            return None, f"{rid}: PCRE-only regex"
        out["rx"] = arg
    elif name == "pm":
        out["pm"] = arg.split()
    elif name == "pmFromFile":
        out["pm_file"] = arg.strip()
        data_used.add(arg.strip())
    elif name in ("detectSQLi", "detectXSS"):
        return None, f"{rid}: libinjection (built in)"
    else:
        return None, f"{rid}: operator @{name}"
    require = []
    for c in rule["chained"]:
        cop = unescape_op(c["op"])
        if c["vars"] not in ("MATCHED_VAR", "MATCHED_VARS"):
            return None, f"{rid}: chain on {c['vars']}"
        cm = re.match(r"@(\w+)\s?(.*)$", cop, re.S)
        if cm and cm.group(1) == "rx":
            require.append(cm.group(2))
        elif cm and cm.group(1) == "pm":
            require.append("|".join(re.escape(w) for w in cm.group(2).split()))
        else:
            return None, f"{rid}: chain operator {cop[:20]}"
    if require:
        out["require"] = require
    return out, None


def main():
    data_used, kept, skipped = set(), [], []
    for prefix in FILES:
        for path in sorted(glob.glob(os.path.join(SRC, prefix + "*.conf"))):
            for rule in parse_rules(path):
                out, why = convert(rule, data_used)
                if out:
                    kept.append(out)
                elif why and not why.startswith("no id"):
                    skipped.append(why)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("# Signatures of the OWASP ModSecurity Core Rule Set 3.3.4 (Apache-2.0, see\n"
                "# rules/crs/LICENSE and rules/crs/NOTICE), converted by tools/import_crs.py.\n"
                "# Do not edit by hand; edit rules/signatures.toml for this crate's own rules.\n\n")
        for r in kept:
            f.write("[[rule]]\n")
            for k in ("id", "crs", "paranoia", "inert", "targets", "exclude", "transforms", "rx",
                      "pm", "pm_file", "require"):
                if k not in r:
                    continue
                v = r[k]
                if isinstance(v, bool):
                    f.write(f"{k} = {'true' if v else 'false'}\n")
                elif isinstance(v, list):
                    f.write(f"{k} = [{', '.join(toml_str(x) for x in v)}]\n")
                elif isinstance(v, int):
                    f.write(f"{k} = {v}\n")
                else:
                    f.write(f"{k} = {toml_str(v)}\n")
            f.write("\n")
        f.write("# Not converted:\n")
        for why in skipped:
            f.write(f"#   {why}\n")
    for name in sorted(data_used):
        shutil.copy(os.path.join(SRC, name), os.path.join("rules/crs", name))
    print(f"{len(kept)} rules kept, {len(skipped)} skipped, {len(data_used)} data files",
          file=sys.stderr)


if __name__ == "__main__":
    main()
