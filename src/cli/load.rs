//! From the process's arguments, environment and configuration file to [`Cli`]: flags over
//! environment variables over the file over the defaults. clap reads the flags and the
//! environment; the file's values become the flags' defaults before it does, so every
//! value goes through the flag's own parser. Values from the environment and the file are
//! checked first, so an error names the variable or the file key it came from, not the
//! flag.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::{Arg, CommandFactory, FromArgMatches};

use super::file::{Catalog, FileValue, SettingsFile, section_of};
use super::{Cli, Command};

/// Why the settings could not be read. Printed as one line; the process exits with status 2,
/// as for any other usage error.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("unknown setting `{key}` in {}{hint}", path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        hint: String,
    },
    #[error("invalid value for {origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("{0}")]
    Inconsistent(String),
    /// clap's own: a bad flag, or `--help` and `--version` (which are not failures).
    #[error(transparent)]
    CommandLine(#[from] clap::Error),
}

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "GANTRY_CONFIG";

/// Reads the settings of this process: `argv` (with the program name first), the
/// environment and the configuration file.
pub fn parse<I, T>(argv: I) -> Result<Cli, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv = with_default_command(argv.into_iter().map(Into::into).collect());
    let cli = Cli::command();
    let catalog = Catalog::of(&cli);
    let file = match config_path(&argv) {
        Some(path) => Some(SettingsFile::read(&path, &catalog)?),
        None => None,
    };
    let mut command = cli;
    if let Some(name) = command_name(&argv)
        && let Some(sub) = command.find_subcommand(&name)
    {
        check_environment(sub.get_arguments())?;
        if let Some(file) = &file {
            let sub = sub.clone();
            check_file(&sub, file)?;
            command = command.mut_subcommand(&name, |sub| with_file_defaults(sub, file));
        }
    }
    let matches = command.try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    check_consistency(&cli.command)?;
    Ok(cli)
}

/// `serve` is the default command: with no command, or with flags first, it is put in.
fn with_default_command(mut argv: Vec<OsString>) -> Vec<OsString> {
    let first = first_command_position(&argv);
    let insert = match argv.get(first).and_then(|arg| arg.to_str()) {
        None => true,
        Some("-h" | "--help" | "-V" | "--version") => false,
        Some(arg) => arg.starts_with('-'),
    };
    if insert {
        argv.insert(first.min(argv.len()), OsString::from("serve"));
    }
    argv
}

/// Where the command's name is (or would be): after the program name and any `--config`.
fn first_command_position(argv: &[OsString]) -> usize {
    let mut at = 1;
    while let Some(arg) = argv.get(at).and_then(|arg| arg.to_str()) {
        if arg == "--config" {
            at += 2;
        } else if arg.starts_with("--config=") {
            at += 1;
        } else {
            break;
        }
    }
    at
}

fn command_name(argv: &[OsString]) -> Option<String> {
    argv.get(first_command_position(argv))
        .and_then(|arg| arg.to_str())
        .map(str::to_owned)
}

/// `--config FILE` (anywhere before `--`), else `GANTRY_CONFIG`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1).map(OsString::as_os_str);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// Every environment variable a flag of `args` reads, when set, must hold a value that
/// flag takes.
pub(crate) fn check_environment<'a>(
    args: impl Iterator<Item = &'a Arg>,
) -> Result<(), SettingsError> {
    for arg in args {
        let Some(name) = arg.get_env() else { continue };
        let Some(value) = std::env::var_os(name).filter(|value| !value.is_empty()) else {
            continue;
        };
        let text = value.to_string_lossy().into_owned();
        check_value(arg, std::slice::from_ref(&text)).map_err(|reason| SettingsError::Invalid {
            origin: format!(
                "{} (--{})",
                name.to_string_lossy(),
                arg.get_long().unwrap_or_default()
            ),
            reason,
        })?;
    }
    Ok(())
}

/// Every value the file gives a flag of `command` must be one that flag takes.
pub(crate) fn check_file(
    command: &clap::Command,
    file: &SettingsFile,
) -> Result<(), SettingsError> {
    for arg in command.get_arguments() {
        let Some(value) = file_value(arg, file) else {
            continue;
        };
        let (section, name) = key_of(arg).unwrap_or_default();
        let texts = value.texts();
        if matches!(value, FileValue::Many(_)) && !is_list(arg) {
            return Err(SettingsError::Invalid {
                origin: file.origin(&section, &name),
                reason: "expected one value, not a list".into(),
            });
        }
        check_value(arg, &texts).map_err(|reason| SettingsError::Invalid {
            origin: file.origin(&section, &name),
            reason,
        })?;
    }
    Ok(())
}

fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), clap::ArgAction::Append) || arg.get_value_delimiter().is_some()
}

fn key_of(arg: &Arg) -> Option<(String, String)> {
    let heading = arg.get_help_heading()?;
    let long = arg.get_long()?;
    Some((section_of(heading), long.to_owned()))
}

pub(crate) fn file_value<'a>(arg: &Arg, file: &'a SettingsFile) -> Option<&'a FileValue> {
    if arg.is_positional() || arg.is_global_set() {
        return None;
    }
    file.values.get(&key_of(arg)?)
}

/// The file's values as the defaults of `command`'s flags. A secret's default is never
/// shown in `--help`.
fn with_file_defaults(mut command: clap::Command, file: &SettingsFile) -> clap::Command {
    let given: Vec<(clap::Id, Vec<String>, bool)> = command
        .get_arguments()
        .filter_map(|arg| {
            let value = file_value(arg, file)?;
            let mut texts = value.texts();
            if let (Some(delimiter), FileValue::One(text)) = (arg.get_value_delimiter(), value) {
                texts = text.split(delimiter).map(str::to_owned).collect();
            }
            Some((arg.get_id().clone(), texts, arg.is_hide_env_values_set()))
        })
        .collect();
    for (id, texts, secret) in given {
        command = command.mut_arg(id, |arg| {
            let hidden = secret || arg.is_hide_default_value_set();
            arg.default_values(texts).hide_default_value(hidden)
        });
    }
    command
}

/// Runs `texts` through `arg`'s own parser (alone, with no environment or default), and
/// says why they do not parse.
fn check_value(arg: &Arg, texts: &[String]) -> Result<(), String> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    let probe = arg
        .clone()
        .env(None)
        .default_value(None)
        .required(false)
        .global(false);
    let command = clap::Command::new("gantry")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(probe);
    let argv = texts.iter().map(|text| format!("--{long}={text}"));
    command
        .try_get_matches_from(argv)
        .map(drop)
        .map_err(|err| reason(&err))
}

/// What a clap error says about a value, without its usage lines.
fn reason(err: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(err) {
        return source.to_string();
    }
    let invalid = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => format!("`{value}`"),
        _ => "the value".to_owned(),
    };
    match err.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(valid)) => {
            format!("{invalid} is not one of {}", valid.join(", "))
        }
        _ => err
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned(),
    }
}

/// What clap cannot check once values may come from the file: settings that need or
/// exclude each other.
fn check_consistency(command: &Command) -> Result<(), SettingsError> {
    let fail = |text: &str| Err(SettingsError::Inconsistent(text.to_owned()));
    let server = match command {
        Command::Serve(args) => Some(&args.common),
        Command::Gateway(args) => Some(&args.common),
        Command::Subgraph(args) => Some(&args.common),
        _ => None,
    };
    if let Some(common) = server
        && common.server.tls_cert.is_some() != common.server.tls_key.is_some()
    {
        return fail("`--tls-cert` and `--tls-key` go together");
    }
    let gateway = match command {
        Command::Serve(args) => Some(&args.gateway),
        Command::Gateway(args) => {
            match (&args.supergraph, args.subgraph.is_empty()) {
                (Some(_), false) => return fail("give `--supergraph` or `--subgraph`, not both"),
                (None, true) => {
                    return fail(
                        "the gateway needs `--supergraph FILE` or `--subgraph NAME=URL` (one per subgraph)",
                    );
                }
                _ => {}
            }
            if args.tls_client_cert.is_some() != args.tls_client_key.is_some() {
                return fail("`--tls-client-cert` and `--tls-client-key` go together");
            }
            Some(&args.gateway)
        }
        _ => None,
    };
    if let Some(gateway) = gateway
        && gateway.safelist
        && gateway.manifest.is_none()
    {
        return fail("`--safelist` needs `--manifest FILE`: the operations it allows");
    }
    Ok(())
}

/// The configuration file `gantry config` reads: as for any command.
pub(crate) fn config_file(
    path: Option<&Path>,
    catalog: &Catalog,
) -> Result<Option<SettingsFile>, SettingsError> {
    path.map(|path| SettingsFile::read(path, catalog))
        .transpose()
}

/// The text of an environment variable, as clap reads it (empty is unset).
pub(crate) fn env_text(name: &OsStr) -> Option<String> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(|value| value.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        with_default_command(
            std::iter::once("gantry")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect(),
        )
        .into_iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
    }

    #[test]
    fn flags_without_a_command_are_serve_flags() {
        assert_eq!(argv(&[]), ["gantry", "serve"]);
        assert_eq!(
            argv(&["--listen", "127.0.0.1:0"]),
            ["gantry", "serve", "--listen", "127.0.0.1:0"]
        );
        assert_eq!(
            argv(&["--config", "g.toml", "--playground"]),
            ["gantry", "--config", "g.toml", "serve", "--playground"]
        );
        assert_eq!(argv(&["gateway", "--listen", "x"])[1], "gateway");
        assert_eq!(argv(&["--help"]), ["gantry", "--help"]);
    }

    #[test]
    fn event_stream_reservation_limits_are_read_from_the_limits_section_and_flags() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "[limits]\nevent-stream-reservation-timeout-secs = \"1m\"\n\
             max-pending-event-streams-per-address = 4\n",
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let settings = |args: &[&str]| {
            let mut argv = vec!["gantry", "--config", path];
            argv.extend_from_slice(args);
            match parse(argv).unwrap().command {
                Command::Serve(serve) => serve.gateway.subscription_settings(),
                other => panic!("not serve: {other:?}"),
            }
        };
        let from_file = settings(&[]);
        assert_eq!(from_file.reservation_timeout.as_secs(), 60);
        assert_eq!(from_file.max_pending_streams_per_address, 4);
        assert_eq!(
            from_file.max_pending_streams,
            gantry_gateway::subscriptions::SubscriptionSettings::default().max_pending_streams
        );
        let flagged = settings(&["--max-pending-event-streams", "50"]);
        assert_eq!(flagged.max_pending_streams, 50);
        assert_eq!(flagged.max_pending_streams_per_address, 4);
    }

    #[test]
    fn a_value_is_checked_by_the_flags_own_parser() {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let arg = |long: &str| {
            serve
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap()
        };
        assert!(check_value(arg("playground"), &["0".into()]).is_ok());
        assert!(check_value(arg("redis-timeout-ms"), &["2s".into()]).is_ok());
        let err = check_value(arg("playground"), &["maybe".into()]).unwrap_err();
        assert!(err.contains("maybe"), "{err}");
        let err = check_value(arg("max-depth"), &["deep".into()]).unwrap_err();
        assert!(err.contains("invalid digit"), "{err}");
    }
}
