//! `ConfigError`, and figment errors rewritten for operators.
//!
//! figment's own message names the key as `default.nodes.0` (with its profile) and repeats
//! chained errors; ours says `nodes[0]`, and for an environment variable names the variable.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::ENV_PREFIX;
use super::validate::Invalid;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named explicitly (flag or env var) does not exist.
    #[error("config file {} not found", path.display())]
    FileNotFound { path: PathBuf },
    /// Syntax, type or unknown-key errors; the message names the key and where it came from.
    #[error("cannot load configuration: {}", describe(.0))]
    Load(Box<figment::Error>),
    /// Values that parsed but make no sense together.
    #[error(transparent)]
    Invalid(#[from] Invalid),
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
                let var: Vec<String> = err.path.iter().map(|k| k.to_ascii_uppercase()).collect();
                let _ = write!(
                    out,
                    " in environment variable {ENV_PREFIX}{}",
                    var.join("__")
                );
            }
            None => {
                let _ = write!(out, " in {}", md.name);
            }
        }
    }
    out.trim_end().to_owned()
}

/// `["nodes", "0", "id"]` → `nodes[0].id`.
fn key_path(path: &[String]) -> String {
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
