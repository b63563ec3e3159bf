#!/usr/bin/env python3
"""Emulates FreeSWITCH's XML pre-processor on this configuration and checks the result.

FreeSWITCH (src/switch_xml.c, preprocess()) reads each file line by line, before any XML
parsing:
  * $${name} is replaced by the global variable `name` (unset: nothing), on every line,
    comments included;
  * a line containing <include>, </include> or <? is dropped whole;
  * a line containing the pre-processor tag (X-PRE-PROCESS, any case) is a directive if
    the tag follows a '<', and is dropped whole otherwise; the rest of a directive line
    is dropped too. cmd="set" data="name=value" sets a variable, cmd="include"
    data="glob" pastes files (relative to the including file's directory). Directives
    inside XML comments still run;
  * <!--#cmd ...--> comments are directives too.

Usage: check_preprocess.py [--strict] DIR OUT   (OUT receives the assembled document)
Exit status 1 when a check fails. Called by check.sh.
"""

import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

# The variable names operators set in vars.xml. Stable: the README lists them and tests
# cross-check them with switchyard.toml. Keep in step with vars.xml and README.md.
VARS = [
    "domain",
    "switchyard_user_context",
    "switchyard_node_id",
    "switchyard_url",
    "switchyard_xml_curl_user",
    "switchyard_xml_curl_password",
    "switchyard_esl_listen_ip",
    "switchyard_esl_listen_port",
    "switchyard_esl_password",
    "switchyard_esl_allowed_cidrs",
    "switchyard_bind_ip",
    "switchyard_external_ip",
    "switchyard_wss_port",
    "switchyard_sip_port",
    "switchyard_tls_cert_dir",
    "switchyard_rtp_start_port",
    "switchyard_rtp_end_port",
    "switchyard_audio_codecs",
    "switchyard_video_codecs",
    "switchyard_max_sessions",
    "jb_av_sync_msec",
    "media_timeout_audio",
]

# Variables FreeSWITCH's core sets before reading the configuration (stand-in values).
CORE_VARS = {
    "local_ip_v4": "192.0.2.10",
    "local_ip_v6": "::1",
    "hostname": "node.example",
    "base_dir": "/usr",
    "conf_dir": "/etc/freeswitch",
    "certs_dir": "/etc/freeswitch/tls",
    "log_dir": "/var/log/freeswitch",
    "sounds_dir": "/usr/share/freeswitch/sounds",
}

TAG = re.compile(r"x-pre-process", re.IGNORECASE)
DIRECTIVE = re.compile(r'^\s*<X-PRE-PROCESS cmd="(set|include)" data="([^"]*)"/>\s*$')
VAR_REF = re.compile(r"\$\$\{([^}]*)\}")

errors = []


def error(msg):
    errors.append(msg)


def lint_file(path, rel):
    """Line rules that keep the pre-processor from surprising a reader."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            where = f"{rel}:{n}"
            if "\r" in line:
                error(f"{where}: CR character (write LF line endings)")
            if "<!--#" in line:
                error(f"{where}: '<!--#' is a pre-processor directive; not used here")
            if "<?" in line:
                error(f"{where}: a line holding '<?' is dropped by the pre-processor")
            stripped = line.strip()
            if ("<include>" in line or "</include>" in line) and stripped not in ("<include>", "</include>"):
                error(f"{where}: <include> / </include> must be alone on their line (the line is dropped)")
            if TAG.search(line) and not DIRECTIVE.match(line):
                error(f"{where}: mentions the pre-processor tag outside a one-line set/include directive")
            if line.count("$${") != len(VAR_REF.findall(line)):
                error(f"{where}: unterminated $${{")


def assemble(path, out, variables, included, used, depth=0):
    if depth > 20:
        error(f"{path}: include depth")
        return
    included.append(os.path.realpath(path))
    cwd = os.path.dirname(path)
    with open(path, encoding="utf-8") as f:
        for raw in f:
            # Expansion uses the values set so far, like FreeSWITCH.
            def expand(m):
                name = m.group(1)
                used.add(name)
                if name not in variables:
                    error(f"{os.path.relpath(path)}: $${{{name}}} is not set before it is used")
                return variables.get(name, "")

            line = VAR_REF.sub(expand, raw)
            if "<include>" in raw or "</include>" in raw or "<?" in raw:
                continue
            m = TAG.search(line)
            if m:
                if m.start() == 0 or line[m.start() - 1] != "<":
                    continue
                d = DIRECTIVE.match(line)
                if not d:
                    continue  # already reported by lint_file
                cmd, data = d.groups()
                if cmd == "set":
                    if "=" not in data:
                        error(f"{path}: set without '=': {data}")
                        continue
                    name, value = data.split("=", 1)
                    variables[name.rstrip(" ")] = value.lstrip(" ")
                else:
                    pattern = data if os.path.isabs(data) else os.path.join(cwd, data)
                    matches = sorted(glob.glob(pattern))
                    if not matches:
                        error(f"{path}: include {data} matches no file")
                    for inc in matches:
                        assemble(inc, out, variables, included, used, depth + 1)
                continue
            out.append(line)


def main(argv):
    strict = "--strict" in argv
    args = [a for a in argv if a != "--strict"]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root, out_path = args
    root = os.path.abspath(root)

    xml_files = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".xml"):
                xml_files.append(os.path.join(dirpath, name))
    for path in sorted(xml_files):
        lint_file(path, os.path.relpath(path, root))

    variables = dict(CORE_VARS)
    included, used, out = [], set(), []
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assemble(os.path.join(root, "freeswitch.xml"), out, variables, included, used)
    finally:
        os.chdir(cwd)
    text = "".join(out)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)

    # Every file included exactly once; none left out.
    for path in sorted(set(included)):
        if included.count(path) > 1:
            error(f"{os.path.relpath(path, root)} is included {included.count(path)} times")
    for path in sorted(xml_files):
        if os.path.realpath(path) not in included:
            error(f"{os.path.relpath(path, root)} is not included from freeswitch.xml")

    # The documented variables: all set, non-empty, all used; nothing else set.
    for name in VARS:
        value = variables.get(name)
        if not value:
            error(f"vars.xml: {name} is not set, or empty")
        elif "CHANGE-ME" in value:
            msg = f"vars.xml: {name} still says CHANGE-ME"
            if strict:
                error(msg)
            else:
                print(f"warning: {msg}", file=sys.stderr)
    for name in sorted(set(variables) - set(VARS) - set(CORE_VARS)):
        error(f"vars.xml sets {name}, which is not in the documented list (check_preprocess.py VARS, README)")
    for name in VARS:
        if name not in used and name not in ("jb_av_sync_msec", "media_timeout_audio"):
            error(f"{name} is set but never used")
    for name in ("switchyard_xml_curl_password", "switchyard_esl_password"):
        value = variables.get(name, "")
        if not re.fullmatch(r"[A-Za-z0-9._~-]+", value):
            error(f"vars.xml: {name} should use only letters, digits and . _ ~ -")
    if ":" in variables.get("switchyard_xml_curl_user", ""):
        error("vars.xml: switchyard_xml_curl_user must not contain ':'")
    # The charsets switchyard.toml accepts for the same values.
    shapes = {
        "switchyard_node_id": r"[a-z0-9][a-z0-9_-]{0,62}",  # [[nodes]] id
        "switchyard_user_context": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",  # [sip] user_context
        "domain": r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?",  # [sip] domain
        "switchyard_url": r"https?://[^/\s]+",
        "switchyard_esl_listen_port": r"[0-9]{1,5}",
        "switchyard_wss_port": r"[0-9]{1,5}",
        "switchyard_sip_port": r"[0-9]{1,5}",
        "switchyard_rtp_start_port": r"[0-9]{1,5}",
        "switchyard_rtp_end_port": r"[0-9]{1,5}",
        "switchyard_max_sessions": r"[0-9]+",
    }
    for name, shape in shapes.items():
        if name in variables and not re.fullmatch(shape, variables[name]):
            error(f"vars.xml: {name}={variables[name]!r} does not match {shape}")
    try:
        if int(variables.get("switchyard_rtp_start_port", "0")) >= int(variables.get("switchyard_rtp_end_port", "0")):
            error("vars.xml: switchyard_rtp_start_port must be below switchyard_rtp_end_port")
    except ValueError:
        pass
    if variables.get("switchyard_url", "").endswith("/"):
        error("vars.xml: switchyard_url must not end with '/'")

    try:
        doc = ET.fromstring(text)
    except ET.ParseError as e:
        error(f"assembled freeswitch.xml: {e}")
        doc = None
    if doc is not None:
        check_document(doc, variables)

    for msg in errors:
        print(f"error: {msg}", file=sys.stderr)
    if not errors:
        print(f"pre-processor: {len(set(included))} files assembled, {len(VARS)} variables set")
    return 1 if errors else 0


def config(doc, name):
    found = doc.findall(f"./section[@name='configuration']/configuration[@name='{name}']")
    if len(found) != 1:
        error(f"configuration {name}: found {len(found)} times, expected once")
        return None
    return found[0]


def params(node, path="settings/param"):
    return {p.get("name"): p.get("value") for p in node.findall(path)} if node is not None else {}


def check_document(doc, v):
    names = [c.get("name") for c in doc.findall("./section[@name='configuration']/configuration")]
    for name in sorted(set(names)):
        if names.count(name) > 1:
            error(f"configuration {name} defined {names.count(name)} times")

    modules = config(doc, "modules.conf")
    if modules is not None:
        loaded = [m.get("module") for m in modules.findall("modules/load")]
        for mod in ("mod_xml_curl", "mod_event_socket", "mod_sofia", "mod_conference",
                    "mod_dptools", "mod_dialplan_xml", "mod_commands", "mod_opus", "mod_av"):
            if mod not in loaded:
                error(f"modules.conf: {mod} is not loaded")

    core = params(config(doc, "switch.conf"))
    if core.get("switchname") != v.get("switchyard_node_id"):
        error("switch.conf: switchname is not switchyard_node_id")

    curl = config(doc, "xml_curl.conf")
    if curl is not None:
        sections = {}
        for b in curl.findall("bindings/binding"):
            p = {x.get("name"): x for x in b.findall("param")}
            url = p.get("gateway-url")
            if url is None or not url.get("bindings"):
                error(f"xml_curl.conf: binding {b.get('name')} has no gateway-url with a bindings attribute")
                continue
            sections[url.get("bindings")] = url.get("value")
            if "enable-post-var" in p:
                error("xml_curl.conf: enable-post-var would hide channel variables from Switchyard")
            if "method" in p and p["method"].get("value", "").lower() != "post":
                error("xml_curl.conf: method must be POST (or unset)")
            timeout = p.get("timeout")
            if timeout is None or not timeout.get("value", "0").isdigit() or int(timeout.get("value")) == 0:
                error(f"xml_curl.conf: binding {b.get('name')} needs a non-zero timeout")
            cred = p.get("gateway-credentials")
            want = f"{v.get('switchyard_xml_curl_user')}:{v.get('switchyard_xml_curl_password')}"
            if cred is None or cred.get("value") != want:
                error(f"xml_curl.conf: binding {b.get('name')} credentials are not the vars.xml ones")
        base = v.get("switchyard_url")
        if sections != {"directory": f"{base}/freeswitch/directory", "dialplan": f"{base}/freeswitch/dialplan"}:
            error(f"xml_curl.conf: expected exactly the directory and dialplan bindings, got {sections}")

    esl = params(config(doc, "event_socket.conf"))
    if esl.get("password") != v.get("switchyard_esl_password") or esl.get("apply-inbound-acl") != "switchyard":
        error("event_socket.conf: password or apply-inbound-acl is not as expected")
    acl = config(doc, "acl.conf")
    if acl is not None and acl.find("network-lists/list[@name='switchyard']") is None:
        error("acl.conf: list 'switchyard' missing")

    sofia = config(doc, "sofia.conf")
    if sofia is not None:
        profiles = sofia.findall("profiles/profile")
        if len(profiles) != 1:
            error(f"sofia.conf: expected one profile, found {len(profiles)}")
        for prof in profiles:
            p = params(prof)
            for key in ("force-register-domain", "challenge-realm"):
                if p.get(key) != v.get("domain"):
                    error(f"sofia profile {prof.get('name')}: {key} is not the domain")
            if p.get("auth-calls") != "true":
                error(f"sofia profile {prof.get('name')}: auth-calls must be true")
            if "apply-inbound-acl" in p:
                error(f"sofia profile {prof.get('name')}: apply-inbound-acl lets addresses skip authentication")
            if p.get("wss-binding") != f":{v.get('switchyard_wss_port')}":
                error(f"sofia profile {prof.get('name')}: wss-binding is not :switchyard_wss_port")

    conf = config(doc, "conference.conf")
    if conf is not None:
        found = {p.get("name"): params(p, "param") for p in conf.findall("profiles/profile")}
        for name in ("audio", "video"):
            if name not in found:
                error(f"conference.conf: profile {name} missing")
                continue
            if found[name].get("caller-controls") != "none":
                error(f"conference.conf: profile {name} must set caller-controls none")
            for key, value in found[name].items():
                if key.endswith("-sound"):
                    error(f"conference.conf: profile {name} sets {key} (no sound files are installed)")
        video = found.get("video", {})
        if video.get("video-mode") != "mux":
            error("conference.conf: profile video must use video-mode mux")
        group = (video.get("video-layout-name") or "").removeprefix("group:")
        layouts = config(doc, "conference_layouts.conf")
        if layouts is not None:
            defined = {l.get("name") for l in layouts.findall("layout-settings/layouts/layout")}
            members = [l.text for g in layouts.findall(f"layout-settings/groups/group[@name='{group}']") for l in g.findall("layout")]
            if not members:
                error(f"conference_layouts.conf: group {group} missing or empty")
            for m in members:
                if m not in defined:
                    error(f"conference_layouts.conf: group {group} names undefined layout {m}")

    contexts = [c.get("name") for c in doc.findall("./section[@name='dialplan']/context")]
    if v.get("switchyard_user_context") not in contexts:
        error("dialplan: no static context named switchyard_user_context")
    for ext in doc.findall("./section[@name='dialplan']/context/extension"):
        for action in ext.iter("action"):
            if action.get("application") not in ("respond",):
                error(f"dialplan: static extension {ext.get('name')} runs {action.get('application')}; the fallback must only reject")
    if doc.findall("./section[@name='directory']/*"):
        error("directory: the static directory must stay empty")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
