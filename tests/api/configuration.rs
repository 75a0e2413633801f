//! One settings tree, as an operator meets it: a TOML file whose keys are the flags, with
//! flags over environment variables over the file over the defaults; durations with units;
//! booleans bare or as `true`/`false`/`1`/`0`; `gantry config` printing the effective
//! settings with secrets left out; each command's `--help` listing only its own options;
//! and errors that name the file key or the environment variable at fault.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use gantry::cli::{Cli, Command};
use serde_json::{Value, json};

use crate::helpers::{Process, gantry, run, start_command};

/// A configuration file in its own folder, with a data dir beside it.
struct ConfigFile {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl ConfigFile {
    /// `text` plus a `[database]` section pointing the data dir into the temporary folder.
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gantry.toml");
        let data = dir.path().join("data");
        let text = if text.contains("[database]") {
            text.replace(
                "[database]\n",
                &format!("[database]\ndata-dir = {:?}\n", data.display().to_string()),
            )
        } else {
            format!(
                "{text}\n[database]\ndata-dir = {:?}\n",
                data.display().to_string()
            )
        };
        std::fs::write(&path, text).unwrap();
        Self { dir, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// Starts `gantry ARGS` (which must make it listen on port 0) and waits for its address.
async fn start(args: &[&str], env: &[(&str, &str)]) -> Process {
    start_command(gantry(args, env)).await
}

async fn status_of(process: &Process, path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{}{path}", process.address))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `expiresIn` of a fresh account's access token: the access-token lifetime in seconds.
async fn access_token_lifetime(process: &Process) -> i64 {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let username = format!("ttl_{}", &id[20..]);
    let response: Value = reqwest::Client::new()
        .post(format!("http://{}/graphql", process.address))
        .json(&json!({
            "query": "mutation($input: RegisterInput!) { register(input: $input) { expiresIn } }",
            "variables": { "input": {
                "username": username,
                "email": format!("{username}@example.com"),
                "password": "correct horse battery",
                "displayName": "Lifetime",
            }},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["data"]["register"]["expiresIn"]
        .as_i64()
        .unwrap_or_else(|| panic!("{response}"))
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `gantry ARGS` with text logs, as an operator at a terminal would run it.
async fn run_plain(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut env = env.to_vec();
    env.push(("GANTRY_LOG_FORMAT", "text"));
    run(args, &env).await
}

/// A settings error: exit status 2, one plain `error:` line on stderr.
fn assert_one_plain_error(output: &std::process::Output) -> String {
    let stderr = stderr_of(output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no colour codes: {stderr:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_owned()
}

#[tokio::test]
async fn settings_from_the_file_alone_take_effect_with_no_command_given() {
    let file = ConfigFile::new(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [gateway]\nplayground = false\n\
         [auth]\naccess-token-ttl-secs = \"5m\"\n",
    );

    let server = start(&["--config", file.path()], &[]).await;

    assert_eq!(status_of(&server, "/health").await, 200);
    assert_eq!(status_of(&server, "/").await, 404, "the playground is off");
    assert_eq!(access_token_lifetime(&server).await, 300);
    assert!(file.dir.path().join("data").exists(), "the file's data dir");
}

#[tokio::test]
async fn the_environment_overrides_the_file_and_a_flag_overrides_both() {
    let file = ConfigFile::new(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [gateway]\nplayground = false\n\
         [auth]\naccess-token-ttl-secs = \"5m\"\n",
    );
    let env = [
        ("GANTRY_CONFIG", file.path()),
        ("GANTRY_PLAYGROUND", "1"),
        ("GANTRY_ACCESS_TOKEN_TTL_SECS", "1h"),
    ];

    let env_over_file = start(&["serve"], &env).await;
    assert_eq!(status_of(&env_over_file, "/").await, 200, "env turns it on");
    assert_eq!(access_token_lifetime(&env_over_file).await, 3600);
    drop(env_over_file);

    let flag_over_env = start(
        &["serve", "--playground=0", "--access-token-ttl-secs", "2m"],
        &env,
    )
    .await;
    assert_eq!(
        status_of(&flag_over_env, "/").await,
        404,
        "the flag turns it off"
    );
    assert_eq!(access_token_lifetime(&flag_over_env).await, 120);
}

#[tokio::test]
async fn serve_flags_without_a_command_run_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();

    let server = start(
        &[
            "--data-dir",
            &data,
            "--playground",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await;

    assert_eq!(status_of(&server, "/").await, 200);
    assert!(Path::new(&data).join("gantry.db").exists());
}

#[tokio::test]
async fn an_unknown_key_is_refused_naming_the_key_and_the_file() {
    let file = ConfigFile::new("[gateway]\nplaygrund = false\n");

    let output = run_plain(&["--config", file.path()], &[]).await;

    let error = assert_one_plain_error(&output);
    assert!(error.contains("`[gateway] playgrund`"), "{error}");
    assert!(error.contains(file.path()), "{error}");
    assert!(error.contains("did you mean `playground`"), "{error}");
}

#[tokio::test]
async fn a_bad_value_in_the_file_names_its_key() {
    let file = ConfigFile::new("[server]\nshutdown-grace-secs = \"500ms\"\n");

    let output = run_plain(&["serve", "--config", file.path()], &[]).await;

    let error = assert_one_plain_error(&output);
    assert!(error.contains("`[server] shutdown-grace-secs`"), "{error}");
    assert!(error.contains("whole number of seconds"), "{error}");
}

#[tokio::test]
async fn a_bad_environment_value_names_the_variable() {
    let output = run_plain(&["serve"], &[("GANTRY_PLAYGROUND", "maybe")]).await;
    let error = assert_one_plain_error(&output);
    assert!(error.contains("GANTRY_PLAYGROUND"), "{error}");
    assert!(error.contains("maybe"), "{error}");

    let output = run_plain(&["gateway"], &[("GANTRY_REDIS_TIMEOUT_MS", "soon")]).await;
    let error = assert_one_plain_error(&output);
    assert!(error.contains("GANTRY_REDIS_TIMEOUT_MS"), "{error}");
    assert!(error.contains("`soon` is not a duration"), "{error}");
}

/// With JSON logs, the error is one JSON log line a collector reads.
#[tokio::test]
async fn a_settings_error_is_a_json_log_line_when_logs_are_json() {
    let output = run(&["serve"], &[("GANTRY_PLAYGROUND", "maybe")]).await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line: Value = serde_json::from_str(lines[0]).unwrap_or_else(|_| panic!("{stderr}"));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(line.to_string().contains("GANTRY_PLAYGROUND"), "{line}");
}

#[tokio::test]
async fn settings_that_need_each_other_are_checked_whatever_their_source() {
    let file = ConfigFile::new("[persisted-queries]\nsafelist = true\n");

    let output = run_plain(&["serve", "--config", file.path()], &[]).await;

    let error = assert_one_plain_error(&output);
    assert!(error.contains("`--safelist` needs `--manifest"), "{error}");
}

/// Secrets given by the environment and by the file.
const SECRETS: [&str; 4] = [
    "env-db-password",
    "env-key-pem",
    "file-redis-password",
    "file-token",
];

#[tokio::test]
async fn gantry_config_prints_no_secret_and_loads_back_to_the_same_settings() {
    let file = ConfigFile::new(
        "[gateway]\nplayground = false\n\
         [server]\nshutdown-grace-secs = \"5s\"\n\
         [redis]\nredis-url = \"redis://:file-redis-password@cache:6379\"\n\
         [persisted-queries]\nsafelist-bypass-header = \"x-internal:file-token\"\n\
         [cors]\ncors-allow-origins = [\"https://app.example\", \"https://*.example.org\"]\n",
    );
    let env = [
        (
            "DATABASE_URL",
            "postgres://app:env-db-password@db.example:5432/app",
        ),
        ("GANTRY_JWT_PRIVATE_KEY", "env-key-pem"),
        ("GANTRY_MAX_DEPTH", "12"),
    ];

    let printed = run(&["config", "--config", file.path()], &env).await;
    assert!(printed.status.success(), "{}", stderr_of(&printed));
    let printed = String::from_utf8(printed.stdout).unwrap();
    let help = run(&["serve", "--config", file.path(), "--help"], &env).await;
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--redis-url"), "{help}");

    for secret in SECRETS {
        assert!(!help.contains(secret), "{secret} in --help:\n{help}");
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert!(
        printed.contains("postgres://app:***@db.example:5432/app"),
        "{printed}"
    );
    assert!(printed.contains("\n[gateway]\n"), "{printed}");
    assert!(printed.contains("\nplayground = false\n"), "{printed}");
    assert!(
        printed.contains("\nmax-depth = 12\n"),
        "env over default: {printed}"
    );
    assert!(
        printed.contains("\nshutdown-grace-secs = \"5s\"\n"),
        "{printed}"
    );
    assert!(
        printed.contains(
            "\ncors-allow-origins = [\"https://app.example\", \"https://*.example.org\"]\n"
        ),
        "{printed}"
    );
    assert!(
        printed.contains("\njwt-issuer = \"gantry\"\n"),
        "defaults: {printed}"
    );

    let again = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(again.path(), &printed).unwrap();
    let again_path = again.path().to_str().unwrap();
    let reprinted = run(&["config", "--config", again_path], &env).await;
    assert!(reprinted.status.success(), "{}", stderr_of(&reprinted));
    let reprinted = String::from_utf8(reprinted.stdout).unwrap();
    let values = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(values(&reprinted), values(&printed));
    assert!(
        reprinted.contains("postgres://app:***@db.example:5432/app"),
        "the environment's secret is still there, still redacted"
    );
    let serve = run(&["serve", "--config", again_path, "--help"], &env).await;
    assert!(serve.status.success(), "{}", stderr_of(&serve));
}

/// The long options `gantry ARGS --help` lists.
async fn options_in_help(args: &[&str]) -> Vec<String> {
    let mut argv = args.to_vec();
    argv.push("--help");
    let output = run(&argv, &[]).await;
    assert!(output.status.success(), "{}", stderr_of(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .filter(|word| word.starts_with("--"))
        .map(|word| {
            word.trim_end_matches([',', '.'])
                .split('=')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn each_command_lists_only_its_own_options() {
    let server_options = [
        "--listen",
        "--playground",
        "--redis-url",
        "--request-timeout-ms",
    ];
    for command in ["manifest", "schema", "compose", "config"] {
        let options = options_in_help(&[command]).await;
        for option in server_options
            .iter()
            .chain(&["--data-dir", "--database-url"])
        {
            assert!(
                !options.iter().any(|o| o == option),
                "{command}: {options:?}"
            );
        }
    }
    let migrate = options_in_help(&["migrate"]).await;
    assert!(migrate.iter().any(|o| o == "--database-url"), "{migrate:?}");
    assert!(
        !migrate
            .iter()
            .any(|o| o == "--playground" || o == "--listen")
    );
    let subgraph = options_in_help(&["subgraph"]).await;
    assert!(subgraph.iter().any(|o| o == "--redis-url"), "{subgraph:?}");
    assert!(
        !subgraph.iter().any(|o| o == "--playground"),
        "{subgraph:?}"
    );
    let serve = options_in_help(&["serve"]).await;
    for option in server_options {
        assert!(serve.iter().any(|o| o == option), "serve: {option}");
    }
    let top = options_in_help(&[]).await;
    assert!(top.iter().any(|o| o == "--config"), "{top:?}");
    assert!(!top.iter().any(|o| o == "--playground"), "{top:?}");
}

/// Every boolean of every command takes the same forms.
#[test]
fn every_boolean_is_usable_bare_and_as_true_false_1_0() {
    let cli = Cli::command();
    let mut checked = 0;
    for command in cli.get_subcommands() {
        let name = command.get_name();
        let required: Vec<&str> = match name {
            "subgraph" => vec!["users"],
            "gateway" => vec!["--supergraph", "supergraph.graphql"],
            _ => vec![],
        };
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let is_boolean =
                arg.get_value_parser().type_id() == clap::builder::ValueParser::bool().type_id();
            if !is_boolean || matches!(long, "help" | "version") {
                continue;
            }
            let mut extra: Vec<&str> = vec![];
            if long == "safelist" {
                extra = vec!["--manifest", "m.json"];
            }
            for (form, expected) in [
                (format!("--{long}"), true),
                (format!("--{long}=true"), true),
                (format!("--{long}=1"), true),
                (format!("--{long}=false"), false),
                (format!("--{long}=0"), false),
            ] {
                let mut argv = vec!["gantry", name];
                argv.extend(&required);
                argv.extend(&extra);
                argv.push(&form);
                let matches = cli
                    .clone()
                    .try_get_matches_from(&argv)
                    .unwrap_or_else(|err| panic!("{argv:?}: {err}"));
                let (_, sub) = matches.subcommand().unwrap();
                let id = arg.get_id().as_str();
                assert_eq!(sub.get_one::<bool>(id).copied(), Some(expected), "{argv:?}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} booleans found");
}

#[test]
fn a_command_line_with_only_flags_is_serve() {
    let cli = gantry::cli::parse(["gantry", "--listen", "127.0.0.1:0", "--playground=0"]).unwrap();
    let Command::Serve(serve) = cli.command else {
        panic!("not serve")
    };
    assert_eq!(serve.listen.map(|a| a.port()), Some(0));
    assert!(!serve.gateway.playground);
}

/// The example file of the README's "Configuration" section is one `gantry` loads.
#[tokio::test]
async fn the_readme_example_file_loads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\n# gantry.toml")
        .expect("the README has the example file");
    let example = &readme[start + "```toml\n".len()..];
    let example = &example[..example.find("```").unwrap()];
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), example).unwrap();

    let output = run(&["config", "--config", file.path().to_str().unwrap()], &[]).await;

    assert!(output.status.success(), "{}", stderr_of(&output));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        printed.contains("\nrate-limit-window-secs = \"1m\"\n"),
        "{printed}"
    );
}
