//! Loading: file text → syntax check with positions → environment overrides → unknown keys →
//! typed [`Config`] (every type error collected) → `*_file` secrets → [`Config::validate`].
//!
//! Every stage adds [`Problem`]s instead of stopping at the first one, so an installer fixes
//! the whole file in one round. Each problem names the dotted key and where its value came
//! from: `file:line:column` or the environment variable. Values of secret keys are never
//! echoed, whatever went wrong with them.

use super::Config;
use super::schema::{is_secret, section_keys, sections, suggest};
use serde_path_to_error::Segment;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::DeTable;

/// Environment variables starting with this override config keys:
/// `WMS_NODE__TAOBAO__APP_KEY=12345678` sets `[taobao] app_key`.
pub const ENV_PREFIX: &str = "WMS_NODE__";

/// Where a configured value came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A position in the config file (1-based line and column).
    File {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
    },
    /// An environment variable.
    Env {
        /// Its name, e.g. `WMS_NODE__NODE__ID`.
        var: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Origin::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`"store.max_bytes"`), or `""` for the file as a whole.
    pub key: String,
    /// Where the offending value came from, when it was not a compiled-in default.
    pub origin: Option<Origin>,
    /// What is wrong and, where possible, what to write instead. Never contains a secret.
    pub message: String,
}

impl Problem {
    /// A problem with `key`, origin unknown (filled in by the loader).
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Problem {
            key: key.to_owned(),
            origin: None,
            message: message.into(),
        }
    }

    fn at(mut self, origin: Option<Origin>) -> Self {
        self.origin = origin;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded. None of these goes away by retrying: a person
/// has to fix the file or the environment.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has problems; all of them are listed.
    #[error("{}", ProblemList { path, problems })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, in file order, then environment, then the rest.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Always false: configuration errors need a person to fix them.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The individual problems (one for a read error).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { .. } => vec![Problem::new("", self.to_string())],
            ConfigError::Invalid { problems, .. } => problems.clone(),
        }
    }
}

struct ProblemList<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} in the configuration from {}:",
            if n == 1 { "" } else { "s" },
            self.path.display()
        )?;
        for p in self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Loads `path` with overrides from the process environment. See the module docs.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars_os())
    }

    /// Loads `path` with overrides from `env` (name, value pairs; only names starting with
    /// [`ENV_PREFIX`] are looked at). Tests pass their own environment.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_with_env(&text, path, env)
    }

    /// Loads from the text of a config file; `path` names it in problems and is the base
    /// for relative paths.
    pub fn from_toml_with_env(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config, ConfigError> {
        let mut loader = Loader {
            path: path.to_owned(),
            text,
            key_pos: HashMap::new(),
            value_pos: HashMap::new(),
            env_raw: HashMap::new(),
            problems: Vec::new(),
        };
        let result = loader.run(env);
        let mut problems = loader.problems;
        match result {
            Some(config) if problems.is_empty() => Ok(config),
            _ => {
                // File positions first (in file order), then environment variables, then
                // problems with defaults or with the combination of keys.
                problems.sort_by(|a, b| match (&a.origin, &b.origin) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                });
                Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    problems,
                })
            }
        }
    }
}

struct Loader<'t> {
    path: PathBuf,
    text: &'t str,
    /// Where each dotted key (and each section) was written.
    key_pos: HashMap<String, Origin>,
    /// Where each dotted key's value came from (file position or environment variable).
    value_pos: HashMap<String, Origin>,
    /// Raw text of environment overrides, to retry as a plain string when the TOML reading
    /// of it has the wrong type (`WMS_NODE__NODE__ID=42` for a string key).
    env_raw: HashMap<String, String>,
    problems: Vec<Problem>,
}

impl Loader<'_> {
    /// Runs every stage; returns the config when the stages got far enough to build one.
    fn run(&mut self, env: impl IntoIterator<Item = (OsString, OsString)>) -> Option<Config> {
        let mut table = self.parse()?;
        self.check_unknown_keys(&mut table);
        self.apply_env(&mut table, env);
        let (mut config, failed) = self.deserialize(table)?;

        let base = std::path::absolute(&self.path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
            .unwrap_or_default();
        config.absolutize_paths(&base);

        let mut later = config.resolve_secrets();
        later.extend(config.validate());
        // A key that failed to deserialize was replaced by its default; whatever validate
        // says about that default would only confuse.
        let mut seen: HashSet<String> = failed;
        for p in later {
            if seen.insert(p.key.clone()) || p.key.is_empty() {
                let origin = self.value_pos.get(&p.key).cloned();
                self.problems.push(p.at(origin));
            }
        }
        Some(config)
    }

    /// Syntax check (every error, with positions) and the raw table.
    fn parse(&mut self) -> Option<toml::Table> {
        let (spanned, errors) = DeTable::parse_recoverable(self.text);
        if !errors.is_empty() {
            for e in errors {
                let origin = e.span().map(|s| self.file_pos(s.start));
                self.problems
                    .push(Problem::new("", syntax_message(e.message())).at(origin));
            }
            return None;
        }
        for (k, v) in spanned.get_ref().iter() {
            let section = k.get_ref().to_string();
            self.key_pos
                .insert(section.clone(), self.file_pos(k.span().start));
            self.value_pos
                .insert(section.clone(), self.file_pos(v.span().start));
            if let toml::de::DeValue::Table(t) = v.get_ref() {
                for (k2, v2) in t.iter() {
                    let key = format!("{section}.{}", k2.get_ref());
                    self.key_pos
                        .insert(key.clone(), self.file_pos(k2.span().start));
                    self.value_pos.insert(key, self.file_pos(v2.span().start));
                }
            }
        }
        match toml::from_str::<toml::Table>(self.text) {
            Ok(t) => Some(t),
            Err(e) => {
                // The recoverable parse accepted it, so this should not happen; report it all
                // the same rather than start with a half-read file.
                let origin = e.span().map(|s| self.file_pos(s.start));
                self.problems
                    .push(Problem::new("", syntax_message(e.message())).at(origin));
                None
            }
        }
    }

    /// Reports (and removes) every section and key the node does not know.
    fn check_unknown_keys(&mut self, table: &mut toml::Table) {
        let known_sections = sections();
        let mut drop_sections = Vec::new();
        for (name, value) in table.iter_mut() {
            if !known_sections.contains(&name.as_str()) {
                let message = if value.is_table() {
                    match suggest(name, known_sections) {
                        Some(s) => format!("unknown section [{name}]; did you mean [{s}]?"),
                        None => format!(
                            "unknown section [{name}]; the sections are {}",
                            list_sections(known_sections)
                        ),
                    }
                } else {
                    match home_of(name) {
                        Some(s) => format!(
                            "unknown top-level key `{name}`; it belongs in [{s}] (write it below a [{s}] line)"
                        ),
                        None => format!(
                            "unknown top-level key `{name}`; settings go in the sections {}",
                            list_sections(known_sections)
                        ),
                    }
                };
                let origin = self.key_pos.get(name.as_str()).cloned();
                self.problems.push(Problem::new(name, message).at(origin));
                drop_sections.push(name.clone());
                continue;
            }
            let Some(section) = value.as_table_mut() else {
                continue; // a type error, reported when deserializing
            };
            let keys = section_keys(name).unwrap_or(&[]);
            let unknown: Vec<String> = section
                .keys()
                .filter(|k| !keys.contains(&k.as_str()))
                .cloned()
                .collect();
            for k in unknown {
                section.remove(&k);
                let dotted = format!("{name}.{k}");
                let message = unknown_key_message(name, &k, keys);
                let origin = self.key_pos.get(&dotted).cloned();
                self.problems
                    .push(Problem::new(&dotted, message).at(origin));
            }
        }
        for name in drop_sections {
            table.remove(&name);
        }
    }

    /// Applies `WMS_NODE__SECTION__KEY` overrides, reporting malformed and unknown names.
    fn apply_env(
        &mut self,
        table: &mut toml::Table,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) {
        let mut vars: Vec<(String, OsString)> = env
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (var, value) in vars {
            let origin = Some(Origin::Env { var: var.clone() });
            let rest = &var[ENV_PREFIX.len()..];
            let parts: Vec<&str> = rest.split("__").collect();
            let [section, key] = parts[..] else {
                self.problems.push(
                    Problem::new(
                        "",
                        "is not of the form WMS_NODE__SECTION__KEY (e.g. WMS_NODE__NODE__ID)",
                    )
                    .at(origin),
                );
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let Some(keys) = section_keys(&section) else {
                let hint = match suggest(&section, sections()) {
                    Some(s) => format!("did you mean WMS_NODE__{}__…?", s.to_ascii_uppercase()),
                    None => format!("the sections are {}", list_sections(sections())),
                };
                self.problems.push(
                    Problem::new(&section, format!("unknown section [{section}]; {hint}"))
                        .at(origin),
                );
                continue;
            };
            let dotted = format!("{section}.{key}");
            if !keys.contains(&key.as_str()) {
                let message = match suggest(&key, keys) {
                    Some(s) => format!(
                        "unknown key `{key}` in [{section}]; did you mean WMS_NODE__{}__{}?",
                        section.to_ascii_uppercase(),
                        s.to_ascii_uppercase()
                    ),
                    None => unknown_key_message(&section, &key, keys),
                };
                self.problems
                    .push(Problem::new(&dotted, message).at(origin));
                continue;
            }
            let Ok(raw) = value.into_string() else {
                self.problems
                    .push(Problem::new(&dotted, "is not valid UTF-8").at(origin));
                continue;
            };
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(section_table) = entry.as_table_mut() else {
                continue; // the file's [section] is not a table: reported when deserializing
            };
            section_table.insert(key, scalar(&raw));
            self.value_pos.insert(dotted.clone(), Origin::Env { var });
            self.env_raw.insert(dotted, raw);
        }
    }

    /// Deserializes, collecting every type error: each failing key is reported, removed
    /// (so its default applies) and the rest tried again.
    fn deserialize(&mut self, table: toml::Table) -> Option<(Config, HashSet<String>)> {
        let mut value = toml::Value::Table(table);
        let mut failed = HashSet::new();
        // Each round removes or rewrites one key, so this many rounds always suffice.
        let rounds = count_leaves(&value) * 2 + 2;
        for _ in 0..rounds {
            let err = match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
                Ok(config) => return Some((config, failed)),
                Err(e) => e,
            };
            let path: Vec<String> = err
                .path()
                .iter()
                .filter_map(|s| match s {
                    Segment::Map { key } => Some(key.clone()),
                    _ => None,
                })
                .take(2)
                .collect();
            let dotted = path.join(".");
            if path.is_empty() {
                self.problems
                    .push(Problem::new("", err.inner().message().to_owned()));
                return None;
            }
            // An environment value read as TOML (a number, a date) where a string is wanted:
            // use the raw text instead. Only once per key.
            if let Some(raw) = self.env_raw.remove(&dotted)
                && let Some(slot) = lookup_mut(&mut value, &path)
                && !slot.is_str()
            {
                *slot = toml::Value::String(raw);
                continue;
            }
            let message = if path.len() == 1 {
                format!("must be a table: write [{dotted}] on a line of its own, its keys below")
            } else if is_secret(&dotted) {
                "must be a string (the value is not shown: it is a secret)".to_owned()
            } else if let Some(b) = super::bounds::of(&dotted) {
                // A number that does not even fit its type (`-1` for a count, a duration of a
                // million years) is named, with its range.
                let given = lookup_mut(&mut value, &path).map_or_else(String::new, |v| {
                    let shown = v.to_string();
                    format!("{} ", shown.trim_matches('"'))
                });
                format!(
                    "{given}is not accepted ({}): it must be {}",
                    err.inner().message(),
                    b.range()
                )
            } else {
                err.inner().message().to_owned()
            };
            let origin = self.value_pos.get(&dotted).cloned();
            self.problems
                .push(Problem::new(&dotted, message).at(origin));
            failed.insert(dotted);
            if !remove(&mut value, &path) {
                return None;
            }
        }
        None
    }

    fn file_pos(&self, offset: usize) -> Origin {
        let before = self
            .text
            .get(..offset.min(self.text.len()))
            .unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Origin::File {
            path: self.path.clone(),
            line,
            column,
        }
    }
}

/// Reads an environment value as a TOML value (`30`, `true`, `0.8`, `[0.8, 0.95]`,
/// `"quoted"`), else takes it as a plain string (`500ms`, `127.0.0.1:0`, `embedded`).
fn scalar(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        // Exactly one key, so a value with a newline cannot smuggle in other keys.
        Ok(mut t) if t.len() == 1 => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        _ => toml::Value::String(raw.to_owned()),
    }
}

/// The toml crate's messages end with a newline and sometimes repeat the position.
fn syntax_message(message: &str) -> String {
    format!("invalid TOML: {}", message.trim())
}

fn list_sections(sections: &[&str]) -> String {
    sections
        .iter()
        .map(|s| format!("[{s}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The section that has a key called `key`, if any.
fn home_of(key: &str) -> Option<&'static str> {
    sections()
        .iter()
        .copied()
        .find(|s| section_keys(s).is_some_and(|keys| keys.contains(&key)))
}

fn unknown_key_message(section: &str, key: &str, keys: &[&str]) -> String {
    if let Some(s) = suggest(key, keys) {
        return format!("unknown key `{key}` in [{section}]; did you mean `{s}`?");
    }
    if let Some(home) = home_of(key) {
        return format!("unknown key `{key}` in [{section}]; it belongs in [{home}]");
    }
    format!(
        "unknown key `{key}` in [{section}]; the keys of [{section}] are {}",
        keys.join(", ")
    )
}

fn count_leaves(v: &toml::Value) -> usize {
    match v {
        toml::Value::Table(t) => t.values().map(count_leaves).sum::<usize>() + 1,
        _ => 1,
    }
}

fn lookup_mut<'v>(value: &'v mut toml::Value, path: &[String]) -> Option<&'v mut toml::Value> {
    path.iter()
        .try_fold(value, |v, k| v.as_table_mut()?.get_mut(k))
}

fn remove(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    lookup_mut(value, parents)
        .and_then(|v| v.as_table_mut())
        .and_then(|t| t.remove(last))
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_are_toml_scalars_where_they_parse() {
        assert_eq!(scalar("30"), toml::Value::Integer(30));
        assert_eq!(scalar("true"), toml::Value::Boolean(true));
        assert_eq!(scalar("500ms"), toml::Value::String("500ms".into()));
        assert_eq!(
            scalar("127.0.0.1:0"),
            toml::Value::String("127.0.0.1:0".into())
        );
        assert_eq!(scalar("\"quoted\""), toml::Value::String("quoted".into()));
        assert!(scalar("[0.5, 0.9]").is_array());
    }

    #[test]
    fn an_environment_value_cannot_smuggle_in_another_key() {
        assert_eq!(
            scalar("1\nother = 2"),
            toml::Value::String("1\nother = 2".into())
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let loader = Loader {
            path: "x.toml".into(),
            text: "a = 1\nbé = 2\n",
            key_pos: HashMap::new(),
            value_pos: HashMap::new(),
            env_raw: HashMap::new(),
            problems: Vec::new(),
        };
        let at = |o| match loader.file_pos(o) {
            Origin::File { line, column, .. } => (line, column),
            Origin::Env { .. } => unreachable!(),
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(6), (2, 1));
        assert_eq!(at(11), (2, 5)); // after the two-byte é
    }
}
