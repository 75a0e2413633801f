//! The configuration file (TOML). Its tables are the sections the flags are listed under in
//! `--help` (`Server` → `[server]`, `Rate limits` → `[rate-limits]`), and its keys are the
//! flags' names without `--`: `--playground` is `playground` in `[gateway]`. The file is
//! not parsed into types of its own: each value is handed to the flag's own parser, as a
//! default under the environment and the command line, so a setting reads the same from
//! every source and its name and default live in one place, the flag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction};

use super::SettingsError;
use super::heading;

/// The section a help heading names in the file.
pub fn section_of(heading: &str) -> String {
    heading.to_ascii_lowercase().replace(' ', "-")
}

/// The sections, in the order `gantry config` prints them.
const SECTIONS: &[&str] = &[
    heading::SERVER,
    heading::DATABASE,
    heading::AUTH,
    heading::REDIS,
    heading::GATEWAY,
    heading::LIMITS,
    heading::PERSISTED,
    heading::RATE_LIMITS,
    heading::CORS,
    heading::SUBGRAPHS,
    heading::COMPOSE,
    heading::MIGRATE,
    heading::SEED,
    heading::EVENTS,
];

/// One key of the file, and the flag it stands for (as the first command that has it
/// defines it; [`Catalog`]'s test checks that every command defines it alike).
#[derive(Debug, Clone)]
pub struct Setting {
    pub section: String,
    pub arg: Arg,
}

impl Setting {
    pub fn name(&self) -> &str {
        self.arg.get_long().unwrap_or_default()
    }

    /// Whether the flag takes a list (repeated, or comma-separated).
    pub fn is_list(&self) -> bool {
        matches!(self.arg.get_action(), ArgAction::Append)
            || self.arg.get_value_delimiter().is_some()
    }

    /// Secrets are never printed: the flags whose environment values `--help` hides.
    pub fn is_secret(&self) -> bool {
        self.arg.is_hide_env_values_set()
    }
}

/// Every key a configuration file may hold: the flags of every command.
#[derive(Debug, Clone)]
pub struct Catalog {
    settings: Vec<Setting>,
}

impl Catalog {
    pub fn of(cli: &clap::Command) -> Self {
        let mut settings: Vec<Setting> = Vec::new();
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                let Some(section) = setting_section(arg) else {
                    continue;
                };
                let known = settings
                    .iter()
                    .any(|s| s.section == section && s.arg.get_long() == arg.get_long());
                if !known {
                    settings.push(Setting {
                        section,
                        arg: arg.clone(),
                    });
                }
            }
        }
        let rank = |section: &str| {
            SECTIONS
                .iter()
                .position(|h| section_of(h) == section)
                .unwrap_or(SECTIONS.len())
        };
        settings.sort_by_key(|s| rank(&s.section));
        Self { settings }
    }

    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }

    pub fn find(&self, section: &str, name: &str) -> Option<&Setting> {
        self.settings
            .iter()
            .find(|s| s.section == section && s.name() == name)
    }

    /// What to say about a key the file should not have: where it belongs, or the key of
    /// that section it most likely means.
    fn hint(&self, section: &str, name: &str) -> String {
        if let Some(elsewhere) = self.settings.iter().find(|s| s.name() == name) {
            return format!(" (`{name}` belongs in `[{}]`)", elsewhere.section);
        }
        let closest = self
            .settings
            .iter()
            .filter(|s| s.section == section)
            .map(|s| (strsim::jaro_winkler(name, s.name()), s.name()))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match closest {
            Some((_, known)) => format!(" (did you mean `{known}`?)"),
            None => String::new(),
        }
    }

    fn knows_section(&self, section: &str) -> bool {
        self.settings.iter().any(|s| s.section == section)
    }
}

/// The section of a flag that has a key in the file; `None` for positional arguments,
/// `--help`, `--version` and `--config`.
fn setting_section(arg: &Arg) -> Option<String> {
    if arg.is_positional() || arg.is_global_set() {
        return None;
    }
    arg.get_long()?;
    arg.get_help_heading().map(section_of)
}

/// A value of the file, as the text (or texts, for a list) a flag would take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileValue {
    One(String),
    Many(Vec<String>),
}

impl FileValue {
    pub fn texts(&self) -> Vec<String> {
        match self {
            Self::One(text) => vec![text.clone()],
            Self::Many(texts) => texts.clone(),
        }
    }
}

/// A configuration file that was read and whose every key is a known setting.
#[derive(Debug, Clone)]
pub struct SettingsFile {
    pub path: PathBuf,
    /// By `(section, key)`.
    pub values: BTreeMap<(String, String), FileValue>,
}

impl SettingsFile {
    pub fn read(path: &Path, catalog: &Catalog) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, catalog)
    }

    pub fn parse(path: &Path, text: &str, catalog: &Catalog) -> Result<Self, SettingsError> {
        let document: toml_edit::DocumentMut =
            text.parse()
                .map_err(|err: toml_edit::TomlError| SettingsError::Syntax {
                    path: path.to_owned(),
                    message: err.to_string().trim().to_owned(),
                })?;
        let unknown = |key: String, hint: String| SettingsError::UnknownKey {
            path: path.to_owned(),
            key,
            hint,
        };
        let mut values = BTreeMap::new();
        for (section, item) in document.iter() {
            let Some(table) = item.as_table_like() else {
                let hint = catalog.hint("", section);
                return Err(unknown(section.to_owned(), hint));
            };
            if !catalog.knows_section(section) {
                return Err(unknown(format!("[{section}]"), String::new()));
            }
            for (name, item) in table.iter() {
                let key = format!("[{section}] {name}");
                if catalog.find(section, name).is_none() {
                    return Err(unknown(key, catalog.hint(section, name)));
                }
                let value =
                    item.as_value()
                        .and_then(file_value)
                        .ok_or_else(|| SettingsError::Invalid {
                            origin: format!("`{key}` in {}", path.display()),
                            reason: "expected a string, number, boolean or a list of them".into(),
                        })?;
                values.insert((section.to_owned(), name.to_owned()), value);
            }
        }
        Ok(Self {
            path: path.to_owned(),
            values,
        })
    }

    /// Where a key's value came from, for error messages.
    pub fn origin(&self, section: &str, name: &str) -> String {
        format!("`[{section}] {name}` in {}", self.path.display())
    }
}

fn file_value(value: &toml_edit::Value) -> Option<FileValue> {
    match value {
        toml_edit::Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(FileValue::Many),
        other => scalar(other).map(FileValue::One),
    }
}

fn scalar(value: &toml_edit::Value) -> Option<String> {
    match value {
        toml_edit::Value::String(text) => Some(text.value().clone()),
        toml_edit::Value::Integer(number) => Some(number.value().to_string()),
        toml_edit::Value::Float(number) => Some(number.value().to_string()),
        toml_edit::Value::Boolean(flag) => Some(flag.value().to_string()),
        toml_edit::Value::Datetime(_)
        | toml_edit::Value::Array(_)
        | toml_edit::Value::InlineTable(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn catalog() -> Catalog {
        Catalog::of(&crate::cli::Cli::command())
    }

    fn parse(text: &str) -> Result<SettingsFile, SettingsError> {
        SettingsFile::parse(Path::new("gantry.toml"), text, &catalog())
    }

    #[test]
    fn every_flag_of_every_command_has_a_section() {
        for command in crate::cli::Cli::command().get_subcommands() {
            for arg in command.get_arguments() {
                if arg.is_positional() || arg.is_global_set() || arg.get_long().is_none() {
                    continue;
                }
                if matches!(arg.get_long(), Some("help" | "version")) {
                    continue;
                }
                assert!(
                    arg.get_help_heading().is_some(),
                    "--{} of `{}` has no heading",
                    arg.get_long().unwrap_or_default(),
                    command.get_name()
                );
            }
        }
    }

    #[test]
    fn a_key_shared_by_commands_means_the_same_in_each() {
        let catalog = catalog();
        for command in crate::cli::Cli::command().get_subcommands() {
            for arg in command.get_arguments() {
                let Some(section) = setting_section(arg) else {
                    continue;
                };
                let Some(long) = arg.get_long() else { continue };
                let Some(known) = catalog.find(&section, long) else {
                    panic!("--{long} missing from the catalog");
                };
                assert_eq!(known.arg.get_env(), arg.get_env(), "--{long}");
                assert_eq!(
                    known.arg.get_default_values(),
                    arg.get_default_values(),
                    "--{long}"
                );
            }
        }
    }

    #[test]
    fn a_misspelt_key_is_refused_with_the_key_it_likely_means() {
        let err = parse("[gateway]\nplayground = false\nintrospecton = false\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`[gateway] introspecton`"), "{text}");
        assert!(text.contains("gantry.toml"), "{text}");
        assert!(text.contains("did you mean `introspection`"), "{text}");
    }

    #[test]
    fn a_key_in_the_wrong_section_is_told_where_it_belongs() {
        let text = parse("[gateway]\nlisten = \"127.0.0.1:0\"\n")
            .unwrap_err()
            .to_string();
        assert!(text.contains("belongs in `[server]`"), "{text}");
        let text = parse("listen = \"127.0.0.1:0\"\n").unwrap_err().to_string();
        assert!(text.contains("belongs in `[server]`"), "{text}");
    }

    #[test]
    fn values_become_the_text_a_flag_takes() {
        let file = parse(
            "[server]\nshutdown-grace-secs = 5\n[gateway]\nplayground = false\n\
             [cors]\ncors-allow-origins = [\"https://a.example\", \"https://b.example\"]\n",
        )
        .unwrap();
        let get = |s: &str, k: &str| file.values[&(s.to_owned(), k.to_owned())].clone();
        assert_eq!(
            get("server", "shutdown-grace-secs"),
            FileValue::One("5".into())
        );
        assert_eq!(get("gateway", "playground"), FileValue::One("false".into()));
        assert_eq!(
            get("cors", "cors-allow-origins"),
            FileValue::Many(vec!["https://a.example".into(), "https://b.example".into()])
        );
    }

    #[test]
    fn text_that_is_not_toml_is_refused_with_its_position() {
        let text = parse("[server\nlisten = 1").unwrap_err().to_string();
        assert!(text.contains("gantry.toml"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }
}
