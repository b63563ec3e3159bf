//! Extraction that reports every problem of a configuration, not just the first.
//!
//! serde stops at the first error, and with `deny_unknown_fields` an unknown key is one. So
//! the merged value is deserialized repeatedly: each error is recorded (key, source), the
//! offending value is taken out of the working copy (its default then applies) and the next
//! pass finds the next error, until the copy deserializes. The set of known keys is therefore
//! the types' own and cannot drift from them. Validation then runs on the result, with keys
//! mapped back to the file's (a removed `[[nodes]]` entry shifts the later indices).

use figment::error::Kind;
use figment::value::Value;
use figment::{Figment, Metadata};
use serde::Deserialize;

use super::error::{Problem, ProblemKind, Problems, env_var, key_path};
use super::{Config, ConfigError};

/// Upper bound on passes; each pass removes one value, so real files need far fewer.
const MAX_PASSES: usize = 10_000;

/// Extracts and validates `figment`, collecting every problem.
pub(super) fn extract(figment: &Figment) -> Result<Config, ConfigError> {
    // Syntax errors and unreadable files: no value tree to check.
    let original: Value = figment
        .extract()
        .map_err(|e| ConfigError::Load(Box::new(e)))?;
    let mut work = original.clone();
    let mut shifts = Shifts::default();
    // Original paths of the values taken out (their consequences are not reported).
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut problems = Vec::new();
    let source = |path: &[String]| describe_source(figment, &original, path);

    let mut config = None;
    for _ in 0..MAX_PASSES {
        let err = match Config::deserialize(&work) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(err) => err,
        };
        let work_path = err.path.clone();
        let path = shifts.original(&original, &work_path);
        match &err.kind {
            Kind::MissingField(field) => {
                let mut key = path.clone();
                key.push(field.to_string());
                // A required key whose bad value we removed was reported already.
                if !removed.contains(&key) {
                    problems.push(Problem {
                        key: key_path(&key),
                        kind: ProblemKind::Missing,
                        source: source(&path),
                    });
                }
            }
            Kind::UnknownField(field, expected) => problems.push(Problem {
                key: key_path(&path),
                kind: ProblemKind::UnknownKey {
                    suggestion: suggest(field, expected).map(str::to_owned),
                },
                source: source(&path),
            }),
            kind => problems.push(Problem {
                key: key_path(&path),
                kind: ProblemKind::Type(kind.to_string()),
                source: source(&path),
            }),
        }
        // A missing field makes its whole table unusable: take the table out.
        if work_path.is_empty() || !remove(&mut work, &work_path, &original, &mut shifts) {
            break;
        }
        removed.push(path);
    }

    if let Some(config) = &config
        && let Err(invalid) = config.validate()
    {
        for v in invalid.violations {
            let path = shifts.original(&original, &parse_key(&v.key));
            // A check failing on a default that replaced a removed value says nothing new.
            if removed.iter().any(|r| r.starts_with(&path)) {
                continue;
            }
            problems.push(Problem {
                key: key_path(&path),
                kind: ProblemKind::Invalid(v.message),
                source: source(&path),
            });
        }
    }
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            if problems.is_empty() {
                // Only reachable if the pass limit was hit without any error recorded.
                problems.push(Problem {
                    key: String::new(),
                    kind: ProblemKind::Type("the configuration cannot be read".to_owned()),
                    source: "configuration".to_owned(),
                });
            }
            Err(ConfigError::Problems(Problems { problems }))
        }
    }
}

/// Array elements taken out of the working copy, so its indices map back to the original's.
#[derive(Default)]
struct Shifts {
    /// (original path of the array, original index of the removed element)
    elements: Vec<(Vec<String>, usize)>,
}

impl Shifts {
    fn original(&self, original: &Value, work: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(work.len());
        for segment in work {
            let is_array = matches!(lookup(original, &out), Some(Value::Array(..)));
            match segment.parse::<usize>() {
                Ok(mut index) if is_array => {
                    let mut gone: Vec<usize> = self
                        .elements
                        .iter()
                        .filter(|(p, _)| *p == out)
                        .map(|(_, i)| *i)
                        .collect();
                    gone.sort_unstable();
                    for g in gone {
                        if g <= index {
                            index += 1;
                        }
                    }
                    out.push(index.to_string());
                }
                _ => out.push(segment.clone()),
            }
        }
        out
    }
}

/// Removes the value at `path` from `work`; false when there is nothing to remove.
fn remove(work: &mut Value, path: &[String], original: &Value, shifts: &mut Shifts) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut node = work;
    for segment in parent {
        node = match node {
            Value::Dict(_, dict) => match dict.get_mut(segment) {
                Some(v) => v,
                None => return false,
            },
            Value::Array(_, items) => match segment.parse::<usize>().ok() {
                Some(i) if i < items.len() => &mut items[i],
                _ => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Dict(_, dict) => dict.remove(last).is_some(),
        Value::Array(_, items) => match last.parse::<usize>().ok() {
            Some(i) if i < items.len() => {
                items.remove(i);
                let element = shifts.original(original, path);
                if let Some((index, array)) = element.split_last()
                    && let Ok(index) = index.parse()
                {
                    shifts.elements.push((array.to_vec(), index));
                }
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// The value at `path` (dict keys and array indices).
fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |node, segment| match node {
        Value::Dict(_, dict) => dict.get(segment),
        Value::Array(_, items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Where the value at `path` (or, when absent, its closest enclosing table) came from.
fn describe_source(figment: &Figment, original: &Value, path: &[String]) -> String {
    let found = (0..=path.len())
        .rev()
        .find_map(|n| lookup(original, &path[..n]).map(|v| (n, v)));
    let Some((depth, value)) = found else {
        return "default".to_owned();
    };
    if depth == 0 && !path.is_empty() {
        return "default".to_owned();
    }
    match figment.get_metadata(value.tag()) {
        Some(md) => describe_metadata(md, path),
        None => "default".to_owned(),
    }
}

fn describe_metadata(md: &Metadata, path: &[String]) -> String {
    match &md.source {
        Some(source) => source.to_string(),
        None if md.name.contains("environment") => {
            format!("environment variable {}", env_var(path))
        }
        None => md.name.to_string(),
    }
}

/// `nodes[0].labels.x` → `["nodes", "0", "labels", "x"]` (the inverse of `key_path`).
fn parse_key(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(rest[..open].to_owned());
            rest = &rest[open..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(close) = inner.find(']') else { break };
                out.push(inner[..close].to_owned());
                rest = &inner[close + 1..];
            }
        } else {
            out.push(rest.to_owned());
        }
    }
    out
}

/// The known key closest to `unknown`, when close enough to be a typo.
fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&unknown, k), *k))
        .filter(|(d, k)| {
            let len = unknown.len().max(k.len());
            *d <= 2.max(len / 3)
                || (unknown.len() >= 4
                    && k.len() >= 4
                    && (k.starts_with(&unknown) || unknown.starts_with(k)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (keys are short ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod unit {
    use super::{edit_distance, parse_key, suggest};

    #[test]
    fn keys_parse_back() {
        let parsed = |k: &str| parse_key(k).join("/");
        assert_eq!(parsed("http.listen"), "http/listen");
        assert_eq!(parsed("nodes[2].labels.x"), "nodes/2/labels/x");
        assert_eq!(
            parsed("freeswitch.allow_from[1]"),
            "freeswitch/allow_from/1"
        );
    }

    #[test]
    fn suggestions_are_typos_only() {
        let known = ["listen", "shutdown_grace_secs", "request_timeout_secs"];
        assert_eq!(suggest("listn", &known), Some("listen"));
        assert_eq!(suggest("LISTEN_", &known), Some("listen"));
        assert_eq!(
            suggest("shutdown_grace", &known),
            Some("shutdown_grace_secs")
        );
        assert_eq!(suggest("metrics", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
