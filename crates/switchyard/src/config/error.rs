//! `ConfigError`, and figment errors rewritten for operators.
//!
//! figment's own message names the key as `default.nodes.0` (with its profile) and repeats
//! chained errors; ours says `nodes[0]`, and for an environment variable names the variable.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use super::ENV_PREFIX;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named explicitly (flag or env var) does not exist.
    #[error("config file {} not found", path.display())]
    FileNotFound { path: PathBuf },
    /// A source could not be read at all (TOML syntax, unreadable file): nothing else can be
    /// checked. The message names the file.
    #[error("cannot load configuration: {}", describe(.0))]
    Load(Box<figment::Error>),
    /// Every unknown key, type error and invalid value found, each naming its key and source.
    #[error(transparent)]
    Problems(#[from] Problems),
}

/// Everything wrong with one configuration (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems {
    pub problems: Vec<Problem>,
}

impl Problems {
    /// The keys of the problems of one kind (tests, and callers that want to react to one).
    pub fn keys_of(&self, pred: impl Fn(&ProblemKind) -> bool) -> Vec<&str> {
        self.problems
            .iter()
            .filter(|p| pred(&p.kind))
            .map(|p| p.key.as_str())
            .collect()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        let n = self.problems.len();
        write!(f, "\n{n} problem{} found", if n == 1 { "" } else { "s" })
    }
}

/// One problem: which key, what is wrong, and where the value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key as an operator writes it: `nodes[0].esl_addr`.
    pub key: String,
    pub kind: ProblemKind,
    /// `test.toml`, `environment variable SWITCHYARD_HTTP__LISTEN`, or `default` for a value
    /// nobody set.
    pub source: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (in {})", self.key, self.kind, self.source)
    }
}

/// What is wrong with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not a key of its section; `suggestion` is a known key with a similar name.
    UnknownKey { suggestion: Option<String> },
    /// A required key is absent.
    Missing,
    /// The value has the wrong type or is not one of the accepted words.
    Type(String),
    /// The value parsed but fails a check ([`super::Config::validate`]).
    Invalid(String),
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey {
                suggestion: Some(s),
            } => write!(f, "unknown key, did you mean `{s}`?"),
            Self::UnknownKey { suggestion: None } => f.write_str("unknown key"),
            Self::Missing => f.write_str("missing (required)"),
            Self::Type(message) | Self::Invalid(message) => f.write_str(message),
        }
    }
}

fn describe(err: &figment::Error) -> String {
    let errors: Vec<String> = err.clone().into_iter().map(|e| describe_one(&e)).collect();
    match errors.as_slice() {
        [one] => one.clone(),
        many => many.iter().fold(String::new(), |mut out, e| {
            let _ = write!(out, "\n  - {e}");
            out
        }),
    }
}

/// `SWITCHYARD_NODES__0__ID` for `["nodes", "0", "id"]`.
pub(super) fn env_var(path: &[String]) -> String {
    let var: Vec<String> = path.iter().map(|k| k.to_ascii_uppercase()).collect();
    format!("{ENV_PREFIX}{}", var.join("__"))
}

fn describe_one(err: &figment::Error) -> String {
    let mut out = err.kind.to_string();
    let key = key_path(&err.path);
    if !key.is_empty() {
        let _ = write!(out, " (key `{key}`)");
    }
    if let Some(md) = &err.metadata {
        match &md.source {
            Some(source) => {
                let _ = write!(out, " in {source}");
            }
            None if md.name.contains("environment") && !err.path.is_empty() => {
                let _ = write!(out, " in environment variable {}", env_var(&err.path));
            }
            None => {
                let _ = write!(out, " in {}", md.name);
            }
        }
    }
    out.trim_end().to_owned()
}

/// `["nodes", "0", "id"]` → `nodes[0].id`.
pub(super) fn key_path(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            let _ = write!(out, "[{segment}]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::key_path;

    #[test]
    fn key_paths_read_like_toml() {
        let path = |p: &[&str]| key_path(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(path(&["http", "listen"]), "http.listen");
        assert_eq!(path(&["nodes", "0", "labels", "x"]), "nodes[0].labels.x");
        assert_eq!(path(&[]), "");
    }
}
