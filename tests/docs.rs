//! The documentation checked as code: every `*.md` file of the repository (outside `target/`,
//! `node_modules/` and `.git/`).
//!
//! - every relative link (`[text](path)`, `[text](path#anchor)`, `[label]: path`) points to a
//!   file or directory that exists inside the repository;
//! - every `#anchor`, in the same file or in another `.md` file, matches a heading (GitHub's
//!   slugs: lowercase, spaces become `-`, punctuation other than `-` and `_` is dropped,
//!   repeated headings get `-1`, `-2`, …) or an HTML `id`/`name`;
//! - every `just <recipe>` written as code (inline or in a code block) names a recipe of the
//!   `justfile`;
//! - every config key written as inline code `section.key` in `docs/operator-guide.md` and
//!   `docs/security.md` exists in `crates/switchyard/switchyard.example.toml` (as a key, or as a
//!   commented-out `# key = …` line of its section, which is how that file documents optional
//!   keys without a default such as `redis.url`).
//!
//! External `http(s)://` links are not fetched (tests run without a network); they are only
//! counted. Links and headings inside code (fenced blocks, inline code spans) are ignored.
//! Failures are reported all at once, one `file:line: what is wrong` per problem.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// Directories never scanned (build output, npm packages, git's own files).
const SKIP_DIRS: &[&str] = &["target", "node_modules", ".git"];

/// The docs whose `section.key` code spans are checked against the example config.
const CONFIG_KEY_DOCS: &[&str] = &["docs/operator-guide.md", "docs/security.md"];

/// `events.md`, `switch.conf.xml`: file names, not config keys, even when the part before the
/// dot is a config section.
const FILE_EXTENSIONS: &[&str] = &[
    "md", "rs", "toml", "json", "xml", "sh", "yml", "yaml", "js", "ts", "py", "conf", "pem",
    "html", "css", "sql", "service", "env", "txt", "crt", "db", "lua",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// One markdown file, split into lines, with what the checks need.
#[derive(Debug)]
struct Doc {
    /// Relative to the repository root, `/`-separated (for messages).
    rel: String,
    path: PathBuf,
    /// Each line's text outside code (inline code spans blanked out), or `None` inside a
    /// fenced code block.
    prose: Vec<Option<String>>,
    /// Each line's inline code spans (outside fenced blocks).
    code_spans: Vec<Vec<String>>,
    /// Lines inside fenced code blocks, with their line numbers.
    code_lines: Vec<(usize, String)>,
    /// Heading slugs and HTML ids/names.
    anchors: BTreeSet<String>,
}

/// Every markdown file of the repository, parsed once for all the tests.
fn docs() -> &'static Vec<Doc> {
    static DOCS: OnceLock<Vec<Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let root = repo_root();
        let mut files = Vec::new();
        walk(&root, &mut files);
        files.sort();
        files.iter().map(|path| parse(&root, path)).collect()
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry
            .file_type()
            .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if file_type.is_dir() {
            if !SKIP_DIRS.contains(&name.as_ref()) {
                walk(&path, out);
            }
        } else if file_type.is_file() && name.ends_with(".md") {
            out.push(path);
        }
    }
}

fn rel_of(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn parse(root: &Path, path: &Path) -> Doc {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut prose = Vec::new();
    let mut code_spans = Vec::new();
    let mut code_lines = Vec::new();
    let mut anchors = BTreeSet::new();
    let mut slug_counts: HashMap<String, usize> = HashMap::new();
    // The fence that opened the current code block: its character and length.
    let mut fence: Option<(char, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let fence_here = ['`', '~'].into_iter().find_map(|c| {
            let n = trimmed.chars().take_while(|&x| x == c).count();
            (n >= 3).then_some((c, n))
        });
        match (fence, fence_here) {
            (None, Some(open)) => {
                fence = Some(open);
                prose.push(None);
                code_spans.push(Vec::new());
                continue;
            }
            (Some((c, n)), Some((c2, n2)))
                if c == c2 && n2 >= n && trimmed.trim_end().chars().all(|x| x == c) =>
            {
                fence = None;
                prose.push(None);
                code_spans.push(Vec::new());
                continue;
            }
            (Some(_), _) => {
                code_lines.push((index + 1, line.to_owned()));
                prose.push(None);
                code_spans.push(Vec::new());
                continue;
            }
            (None, None) => {}
        }
        let (outside, spans) = split_code_spans(line);
        if let Some(title) = heading_text(&outside, line) {
            let base = slug(&title);
            let count = slug_counts.entry(base.clone()).or_insert(0);
            let anchor = if *count == 0 {
                base.clone()
            } else {
                format!("{base}-{count}")
            };
            *count += 1;
            anchors.insert(anchor);
        }
        for attr in ["id=\"", "name=\""] {
            let mut rest = outside.as_str();
            while let Some(at) = rest.find(attr) {
                let after = &rest[at + attr.len()..];
                if let Some(end) = after.find('"') {
                    anchors.insert(after[..end].to_owned());
                }
                rest = after;
            }
        }
        prose.push(Some(outside));
        code_spans.push(spans);
    }
    Doc {
        rel: rel_of(root, path),
        path: path.to_path_buf(),
        prose,
        code_spans,
        code_lines,
        anchors,
    }
}

/// Splits a line into its text with inline code spans blanked out (same length, so columns
/// stay meaningful) and the spans' contents.
fn split_code_spans(line: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let mut outside = String::with_capacity(line.len());
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            outside.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // Find a closing run of exactly the same length.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let n = chars[j..].iter().take_while(|&&c| c == '`').count();
                if n == run {
                    close = Some(j);
                    break;
                }
                j += n;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                let content: String = chars[i + run..j].iter().collect();
                spans.push(content.trim().to_owned());
                // Keep the span's text for headings (GitHub keeps it in the slug), but mark it
                // so links inside code are not taken for links.
                outside.push('\u{1}');
                outside.push_str(
                    &content
                        .replace(['[', ']', '(', ')'], " ")
                        .replace(['<', '>'], "\u{1}"),
                );
                outside.push('\u{1}');
                i = j + run;
            }
            None => {
                for _ in 0..run {
                    outside.push('`');
                }
                i += run;
            }
        }
    }
    (outside, spans)
}

/// The text of an ATX heading (`## Title ##`), from the line with code spans marked.
fn heading_text(outside: &str, raw: &str) -> Option<String> {
    let indent = raw.len() - raw.trim_start().len();
    if indent > 3 {
        return None;
    }
    let t = outside.trim_start();
    let level = t.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    let rest = rest.trim();
    // A closing sequence of #s preceded by a space is not part of the title.
    let rest = match rest.trim_end_matches('#') {
        r if r.len() < rest.len() && (r.is_empty() || r.ends_with(' ')) => r.trim_end(),
        _ => rest,
    };
    Some(rest.to_owned())
}

/// The index of the `)` that closes the `(` at `open` (nested pairs skipped), if any.
fn closing_paren(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, c) in chars.iter().enumerate().skip(open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// GitHub's heading slug: the rendered text (links reduced to their text, markup and HTML tags
/// dropped), lowercased; letters, digits, `-` and `_` kept, each space turned into `-`, every
/// other character dropped.
fn slug(title: &str) -> String {
    let mut text = String::new();
    let chars: Vec<char> = title.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            // [text](url) → text; the url is skipped.
            ']' if chars.get(i + 1) == Some(&'(') => {
                i = closing_paren(&chars, i + 1).map_or(chars.len(), |end| end + 1);
            }
            '<' => {
                // An HTML tag: skip to '>'.
                match chars[i..].iter().position(|&c| c == '>') {
                    Some(n) => i += n + 1,
                    None => {
                        text.push('<');
                        i += 1;
                    }
                }
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    let mut out = String::new();
    for c in text.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        } else if c == ' ' {
            out.push('-');
        }
    }
    out
}

/// One link found in a document.
#[derive(Debug)]
struct Link {
    line: usize,
    target: String,
}

/// Inline links and images `[text](target "title")`, reference definitions `[label]: target`
/// and autolinks `<https://…>`, outside code.
fn links(doc: &Doc) -> Vec<Link> {
    let mut out = Vec::new();
    for (index, line) in doc.prose.iter().enumerate() {
        let Some(line) = line else { continue };
        let number = index + 1;
        let chars: Vec<char> = line.chars().collect();
        // Reference definitions.
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && line.len() - trimmed.len() <= 3
            && let Some(end) = trimmed.find(']')
            && trimmed[end + 1..].starts_with(':')
        {
            let target = trimmed[end + 2..].split_whitespace().next().unwrap_or("");
            if !target.is_empty() {
                out.push(Link {
                    line: number,
                    target: target.trim_matches(['<', '>']).to_owned(),
                });
            }
        }
        let mut i = 0;
        while i + 1 < chars.len() {
            if chars[i] == ']' && chars[i + 1] == '(' {
                if let Some(end) = closing_paren(&chars, i + 1) {
                    let inner: String = chars[i + 2..end].iter().collect();
                    let inner = inner.trim();
                    let target = if let Some(rest) = inner.strip_prefix('<') {
                        rest.split('>').next().unwrap_or("").to_owned()
                    } else {
                        inner.split_whitespace().next().unwrap_or("").to_owned()
                    };
                    out.push(Link {
                        line: number,
                        target,
                    });
                    i = end;
                }
            } else if chars[i] == '<' {
                let rest: String = chars[i + 1..].iter().collect();
                if (rest.starts_with("http://") || rest.starts_with("https://"))
                    && let Some(end) = rest.find('>')
                {
                    out.push(Link {
                        line: number,
                        target: rest[..end].to_owned(),
                    });
                }
            }
            i += 1;
        }
    }
    out
}

fn is_external(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    [
        "http://", "https://", "mailto:", "ftp://", "ws://", "wss://",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `base/../x` without touching the file system; `None` when it climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

/// Where a relative link points: (the file, relative to the root; the anchor).
enum Resolved {
    External,
    Local {
        file: PathBuf,
        anchor: Option<String>,
    },
    Broken(String),
}

fn resolve(root: &Path, doc: &Doc, target: &str) -> Resolved {
    if is_external(target) {
        return Resolved::External;
    }
    if target.is_empty() {
        return Resolved::Broken("empty link target".to_owned());
    }
    let (path_part, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a.to_owned())),
        None => (target, None),
    };
    let path_part = path_part.split('?').next().unwrap_or("");
    let doc_rel = doc.path.strip_prefix(root).unwrap_or(&doc.path);
    let file = if path_part.is_empty() {
        doc_rel.to_path_buf()
    } else {
        let decoded = percent_decode(path_part);
        let joined = match decoded.strip_prefix('/') {
            Some(from_root) => PathBuf::from(from_root),
            None => doc_rel.parent().unwrap_or(Path::new("")).join(&decoded),
        };
        match normalize(&joined) {
            Some(p) => p,
            None => {
                return Resolved::Broken(format!("link {target:?} points outside the repository"));
            }
        }
    };
    if !root.join(&file).exists() {
        return Resolved::Broken(format!(
            "link {target:?}: {} does not exist",
            file.display()
        ));
    }
    Resolved::Local { file, anchor }
}

fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n{}\n",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn relative_links_point_to_existing_files() {
    let root = repo_root();
    let mut problems = Vec::new();
    let (mut local, mut external) = (0, 0);
    for doc in docs() {
        for link in links(doc) {
            match resolve(&root, doc, &link.target) {
                Resolved::External => external += 1,
                Resolved::Local { .. } => local += 1,
                Resolved::Broken(why) => problems.push(format!("{}:{}: {why}", doc.rel, link.line)),
            }
        }
    }
    println!(
        "{} markdown files, {local} relative links checked, {external} external links (not fetched)",
        docs().len()
    );
    report("broken relative links", &problems);
}

#[test]
fn anchors_match_headings() {
    let root = repo_root();
    let by_path: HashMap<PathBuf, &Doc> = docs()
        .iter()
        .map(|d| {
            (
                d.path.strip_prefix(&root).unwrap_or(&d.path).to_path_buf(),
                d,
            )
        })
        .collect();
    let mut problems = Vec::new();
    for doc in docs() {
        for link in links(doc) {
            let Resolved::Local {
                file,
                anchor: Some(anchor),
            } = resolve(&root, doc, &link.target)
            else {
                continue;
            };
            let Some(target) = by_path.get(&file) else {
                // Not a markdown file (source, XML, …): GitHub's line anchors are not checked.
                continue;
            };
            if !target.anchors.contains(&anchor) {
                let near: Vec<&String> = target
                    .anchors
                    .iter()
                    .filter(|a| {
                        a.contains(anchor.as_str())
                            || anchor.contains(a.as_str())
                            || a.split('-').next() == anchor.split('-').next()
                    })
                    .take(3)
                    .collect();
                problems.push(format!(
                    "{}:{}: link {:?}: no heading in {} has the anchor #{anchor}{}",
                    doc.rel,
                    link.line,
                    link.target,
                    target.rel,
                    if near.is_empty() {
                        String::new()
                    } else {
                        format!(" (similar: {near:?})")
                    }
                ));
            }
        }
    }
    report("anchors without a heading", &problems);
}

/// Recipe names of the justfile: unindented `name params…:` lines (not `:=` assignments).
fn just_recipes() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("justfile")).expect("read justfile");
    text.lines()
        .filter(|l| !l.starts_with([' ', '\t', '#']) && !l.trim().is_empty())
        .filter(|l| l.contains(':') && !l.contains(":="))
        .filter_map(|l| {
            l.trim_start_matches('@')
                .split([' ', ':'])
                .next()
                .map(str::to_owned)
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// `just <recipe>` written as code: the recipe name, or `None` for `just --flag`.
fn just_recipe_in(code: &str) -> Option<Option<&str>> {
    let code = code.trim();
    let code = code.strip_prefix("$ ").unwrap_or(code);
    let rest = code.strip_prefix("just ")?;
    let word = rest.split_whitespace().next()?;
    Some((!word.starts_with('-')).then_some(word))
}

#[test]
fn just_recipes_exist() {
    let recipes = just_recipes();
    assert!(
        recipes.contains("test") && recipes.contains("demo"),
        "the justfile parser found {recipes:?}"
    );
    let mut problems = Vec::new();
    for doc in docs() {
        let mut mentions: Vec<(usize, String)> = Vec::new();
        for (index, spans) in doc.code_spans.iter().enumerate() {
            for span in spans {
                if let Some(Some(recipe)) = just_recipe_in(span) {
                    mentions.push((index + 1, recipe.to_owned()));
                }
            }
        }
        for (line, text) in &doc.code_lines {
            if let Some(Some(recipe)) = just_recipe_in(text) {
                mentions.push((*line, recipe.to_owned()));
            }
        }
        for (line, recipe) in mentions {
            if !recipes.contains(&recipe) {
                problems.push(format!(
                    "{}:{line}: `just {recipe}`: the justfile has no recipe {recipe:?} (recipes: {})",
                    doc.rel,
                    recipes.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    report("unknown just recipes", &problems);
}

/// Every key of the example config: section → keys (array-of-tables elements merged), plus
/// the commented-out `# key = …` lines of each section.
fn example_config_keys() -> BTreeMap<String, BTreeSet<String>> {
    let path = repo_root().join("crates/switchyard/switchyard.example.toml");
    let text = std::fs::read_to_string(&path).expect("read switchyard.example.toml");
    let value: toml::Table = toml::from_str(&text).expect("switchyard.example.toml parses");
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (section, v) in &value {
        let entry = keys.entry(section.clone()).or_default();
        match v {
            toml::Value::Table(t) => entry.extend(t.keys().cloned()),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        entry.extend(t.keys().cloned());
                    }
                }
            }
            _ => {}
        }
    }
    let mut section: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = Some(t.trim_matches(['[', ']']).trim().to_owned());
        } else if let (Some(s), Some(comment)) = (&section, t.strip_prefix('#')) {
            let comment = comment.trim();
            if let Some((name, _)) = comment.split_once('=') {
                let name = name.trim();
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    keys.entry(s.clone()).or_default().insert(name.to_owned());
                }
            }
        }
    }
    keys
}

#[test]
fn config_keys_in_operator_docs_exist() {
    let keys = example_config_keys();
    assert!(
        keys.get("pool")
            .is_some_and(|k| k.contains("lease_ttl_secs"))
            && keys.get("redis").is_some_and(|k| k.contains("url")),
        "the example config parser found {keys:?}"
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for rel in CONFIG_KEY_DOCS {
        let Some(doc) = docs().iter().find(|d| d.rel == *rel) else {
            problems.push(format!("{rel}: missing (it is part of the documentation)"));
            continue;
        };
        for (index, spans) in doc.code_spans.iter().enumerate() {
            for span in spans {
                let Some((section, key)) = span.split_once('.') else {
                    continue;
                };
                let Some(section_keys) = keys.get(section) else {
                    continue;
                };
                if key.is_empty()
                    || FILE_EXTENSIONS.contains(&key)
                    || !key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    continue;
                }
                checked += 1;
                if !section_keys.contains(key) {
                    problems.push(format!(
                        "{}:{}: `{span}`: switchyard.example.toml has no key {key:?} in [{section}] (keys: {})",
                        doc.rel,
                        index + 1,
                        section_keys.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    println!("{checked} config keys checked");
    report("config keys not in switchyard.example.toml", &problems);
}

/// The slug rules against headings whose GitHub anchors are known.
#[test]
fn slugs_follow_github() {
    let cases = [
        (
            "Getting a token (your web backend)",
            "getting-a-token-your-web-backend",
        ),
        ("\u{1}conference.started\u{1}", "conferencestarted"),
        ("CometQL → REST", "cometql--rest"),
        (
            "Values to set in \u{1}vars.xml\u{1}",
            "values-to-set-in-varsxml",
        ),
        (
            "3. mod_xml_curl and the directory",
            "3-mod_xml_curl-and-the-directory",
        ),
        (
            "[Lookup order](#x) and fallbacks",
            "lookup-order-and-fallbacks",
        ),
        (
            "\"Registration fails\": 401/403 loops",
            "registration-fails-401403-loops",
        ),
    ];
    for (title, expected) in cases {
        assert_eq!(slug(title), expected, "slug of {title:?}");
    }
    let (outside, spans) = split_code_spans("## `a <b>` [c](d) ``e`f``");
    assert_eq!(spans, ["a <b>", "e`f"]);
    assert_eq!(
        heading_text(&outside, "## x").map(|t| slug(&t)),
        Some("a-b-c-ef".to_owned())
    );
}
