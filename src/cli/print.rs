//! `gantry config`: the effective settings (environment over file over defaults) as a
//! configuration file that `--config` loads again. Each key comes with its flag's help;
//! settings with no value are commented out. Secrets are never printed: a secret that is
//! set shows as a comment, a URL with its password replaced by `***`, anything else as
//! `<redacted>`, with the variable to give it in.

use std::fmt::Write as _;
use std::path::Path;

use clap::CommandFactory;

use super::Cli;
use super::file::{Catalog, FileValue, Setting, SettingsFile};
use super::load::{self, SettingsError};

/// Where a setting's value comes from.
enum Value {
    Set(Vec<String>),
    Unset,
}

pub fn run(config: Option<&Path>) -> Result<(), SettingsError> {
    print!("{}", render(config)?);
    Ok(())
}

pub fn render(config: Option<&Path>) -> Result<String, SettingsError> {
    let catalog = Catalog::of(&Cli::command());
    let file = load::config_file(config, &catalog)?;
    load::check_environment(catalog.settings().iter().map(|s| &s.arg))?;
    let mut out = String::from(
        "# The effective settings of gantry: environment variables over the configuration\n\
         # file over the defaults. Load it with `gantry --config FILE`. Secrets are left out.\n",
    );
    let mut section = "";
    for setting in catalog.settings() {
        if setting.section != section {
            section = &setting.section;
            let _ = write!(out, "\n[{section}]\n");
        }
        for line in wrap(&help(setting)) {
            let _ = writeln!(out, "# {line}");
        }
        let name = setting.name();
        match value(setting, file.as_ref()) {
            Value::Unset => {
                let _ = writeln!(out, "# {name} =");
            }
            Value::Set(texts) if setting.is_secret() => {
                let shown = texts.iter().map(|t| redact(t)).collect::<Vec<_>>();
                let env = setting
                    .arg
                    .get_env()
                    .map(|env| format!(" (secret: give it in {})", env.to_string_lossy()))
                    .unwrap_or_default();
                let _ = writeln!(out, "# {name} = {}{env}", toml(setting, &shown));
            }
            Value::Set(texts) => {
                let _ = writeln!(out, "{name} = {}", toml(setting, &texts));
            }
        }
    }
    Ok(out)
}

fn value(setting: &Setting, file: Option<&SettingsFile>) -> Value {
    let from_env = setting.arg.get_env().and_then(load::env_text);
    if let Some(text) = from_env {
        return Value::Set(split(setting, text));
    }
    if let Some(value) = file.and_then(|file| load::file_value(&setting.arg, file)) {
        return match value {
            FileValue::One(text) => Value::Set(split(setting, text.clone())),
            FileValue::Many(texts) => Value::Set(texts.clone()),
        };
    }
    let defaults: Vec<String> = setting
        .arg
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    if defaults.is_empty() {
        Value::Unset
    } else {
        Value::Set(defaults)
    }
}

fn split(setting: &Setting, text: String) -> Vec<String> {
    match setting.arg.get_value_delimiter() {
        Some(delimiter) => text.split(delimiter).map(str::to_owned).collect(),
        None => vec![text],
    }
}

/// The value as TOML: numbers and booleans bare, the rest quoted, lists as arrays.
fn toml(setting: &Setting, texts: &[String]) -> String {
    let scalar = |text: &String| -> toml_edit::Value {
        if let Ok(number) = text.parse::<i64>() {
            number.into()
        } else if let Ok(flag) = text.parse::<bool>() {
            flag.into()
        } else {
            text.as_str().into()
        }
    };
    if setting.is_list() {
        let array: toml_edit::Array = texts.iter().map(scalar).collect();
        return array.to_string();
    }
    texts
        .first()
        .map(|text| scalar(text).to_string())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A secret as it may be shown: a URL keeps all but its password (or all of it, when it
/// carries none).
fn redact(text: &str) -> String {
    if text.contains("://") && !text.contains("password=") {
        if !text.contains('@') {
            return text.to_owned();
        }
        let shown = gantry_kit::db::redact(text);
        if shown != text {
            return shown;
        }
    }
    "<redacted>".to_owned()
}

fn help(setting: &Setting) -> String {
    let mut help = setting
        .arg
        .get_help()
        .map(|help| help.to_string())
        .unwrap_or_default();
    if let Some(env) = setting.arg.get_env() {
        let _ = write!(help, " [env: {}]", env.to_string_lossy());
    }
    help
}

/// Help text in comment lines of at most 88 characters.
fn wrap(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 88 {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_url_keeps_everything_but_its_password() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(redact("-----BEGIN PRIVATE KEY-----"), "<redacted>");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact("redis://token@cache:6379"), "<redacted>");
        assert_eq!(redact("postgres://db/app?password=x"), "<redacted>");
    }
}
