//! The deployment files — `Dockerfile`, `deploy/compose.yaml` and `deploy/kubernetes/` —
//! checked against the binary they run. No container engine runs here, so they are read
//! as text and YAML: every command and flag must parse with the real command line (with its
//! environment turned into the flags it stands for, so values are checked too), every
//! environment variable must be one the binary reads, every port must be the one the
//! process listens on, every probe path must answer `200` on the real app, and every name
//! one manifest gives another (secrets, config, services, the autoscaler's target) must
//! exist.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use gantry::cli::{Cli, Command};
use serde::Deserialize;
use serde_norway::Value;

use crate::helpers::{Backend, Stack, TestApp, fresh_database, settings};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every environment variable the binary reads, with the flag it stands for (`None`: read
/// by the logging set-up, not a flag).
fn known_env() -> BTreeMap<String, Option<String>> {
    fn walk(command: &clap::Command, into: &mut BTreeMap<String, Option<String>>) {
        for arg in command.get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                into.insert(env.to_string_lossy().into_owned(), Some(long.to_owned()));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, into);
        }
    }
    let mut env = BTreeMap::new();
    walk(&Cli::command(), &mut env);
    for name in [
        gantry::telemetry::LOG_FILTER_ENV,
        gantry::telemetry::LOG_FORMAT_ENV,
    ] {
        env.insert(name.to_owned(), None);
    }
    env
}

/// The flags `gantry ARGS` accepts (a subcommand's own and the global ones).
fn flags_of(args: &[String]) -> BTreeSet<String> {
    let cli = Cli::command();
    let sub = args
        .first()
        .and_then(|name| cli.find_subcommand(name))
        .unwrap_or(&cli);
    sub.get_arguments()
        .chain(cli.get_arguments())
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect()
}

/// Parses `gantry ARGS` as the binary would in an environment `env` (values not known
/// here, such as secrets, as `None`): each variable must be one the binary reads, and
/// each that this command takes is passed as its flag, so its value is parsed too.
fn parse(what: &str, args: &[String], env: &BTreeMap<String, Option<String>>) -> Cli {
    let known = known_env();
    let flags = flags_of(args);
    let mut argv = vec!["gantry".to_owned()];
    argv.extend(args.iter().cloned());
    for (name, value) in env {
        let flag = known
            .get(name)
            .unwrap_or_else(|| panic!("{what}: gantry reads no variable {name}"));
        if let (Some(flag), Some(value)) = (flag, value)
            && flags.contains(flag)
        {
            argv.push(format!("--{flag}={value}"));
        }
        if name == gantry::telemetry::LOG_FORMAT_ENV {
            assert!(
                matches!(value.as_deref(), Some("json" | "text")),
                "{what}: {name}={value:?}"
            );
        }
    }
    Cli::try_parse_from(&argv).unwrap_or_else(|err| panic!("{what}: gantry {argv:?}: {err}"))
}

/// The address a parsed command listens on (each command's default when not given).
fn listen(cli: &Cli) -> SocketAddr {
    let given = match &cli.command {
        Command::Serve(args) => args.listen,
        Command::Gateway(args) => args.listen,
        Command::Subgraph(args) => args.listen,
        _ => panic!("not a server command"),
    };
    given.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4000)))
}

fn is_server(cli: &Cli) -> bool {
    matches!(
        cli.command,
        Command::Serve(_) | Command::Gateway(_) | Command::Subgraph(_)
    )
}

/// The `--subgraph NAME=URL` values of a gateway command.
fn subgraph_urls(cli: &Cli) -> Vec<reqwest::Url> {
    match &cli.command {
        Command::Gateway(args) => args
            .subgraph
            .iter()
            .map(|s| reqwest::Url::parse(&s.url).unwrap())
            .collect(),
        _ => Vec::new(),
    }
}

/// The HTTP paths the deployment files probe, by the command that must serve them.
#[derive(Default)]
struct Probes(BTreeSet<(&'static str, String)>);

impl Probes {
    fn add(&mut self, cli: &Cli, path: &str) {
        let kind = match &cli.command {
            Command::Serve(_) => "serve",
            Command::Gateway(_) => "gateway",
            Command::Subgraph(args) => match args.name {
                gantry::cli::SubgraphName::Users => "users",
                gantry::cli::SubgraphName::Posts => "posts",
            },
            _ => panic!("a probe on a command that serves nothing"),
        };
        self.0.insert((kind, path.to_owned()));
    }

    /// Asks each path of the app that must serve it; every one must answer `200`.
    async fn check(&self) {
        let stack = Stack::new(Backend::Sqlite).await;
        let gateway = {
            let users = format!("users={}", stack.users.url("/graphql"));
            let posts = format!("posts={}", stack.posts.url("/graphql"));
            let cli = Cli::try_parse_from([
                "gantry",
                "gateway",
                "--data-dir",
                &stack.users.data_dir.path().display().to_string(),
                "--subgraph",
                &users,
                "--subgraph",
                &posts,
            ])
            .unwrap();
            let Command::Gateway(args) = &cli.command else {
                unreachable!()
            };
            let app = gantry::commands::gateway::build(&args.common, args)
                .await
                .unwrap();
            TestApp::serve(
                app.router,
                Some(app.tasks),
                stack.users.data_dir.clone(),
                stack.users.database_url.clone(),
            )
            .await
        };
        let serve = {
            let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
            let url = fresh_database(Backend::Sqlite, dir.path()).await;
            let common = settings(dir.path(), &url, &[]);
            let app = gantry::commands::serve::build(&common, &gantry::cli::ServeArgs::default())
                .await
                .unwrap();
            TestApp::serve(app.router, Some(app.tasks), dir, url).await
        };
        for (kind, path) in &self.0 {
            let app = match *kind {
                "serve" => &serve,
                "gateway" => &gateway,
                "users" => &stack.users,
                _ => &stack.posts,
            };
            let status = reqwest::get(app.url(path)).await.unwrap().status();
            assert_eq!(status, 200, "GET {path} on `{kind}`");
        }
    }
}

/// A Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (keyword, rest) = line.trim().split_once(char::is_whitespace).unwrap();
            (keyword.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

fn json_array(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("{text}: not exec form: {err}"))
}

#[tokio::test]
async fn the_dockerfile_builds_with_node_and_runs_gantry_as_a_non_root_user_with_a_health_check() {
    let all = instructions(&read(&root().join("Dockerfile")));
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (keyword, _))| keyword == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "a multi-stage build");
    let (build, runtime) = all.split_at(*stages.last().unwrap());
    assert!(
        build
            .iter()
            .any(|(k, rest)| k == "RUN" && rest.contains("nodejs") && rest.contains("npm")),
        "the build stage installs Node.js and npm for the playground bundle"
    );
    assert!(
        runtime[0].1.contains("slim"),
        "a small runtime image: {}",
        runtime[0].1
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, user)| user.clone())
        .expect("a USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as {user}");

    let mut env = BTreeMap::new();
    for (_, rest) in runtime.iter().filter(|(k, _)| k == "ENV") {
        for pair in rest.split_whitespace() {
            let (name, value) = pair.split_once('=').expect("ENV NAME=VALUE");
            env.insert(name.to_owned(), Some(value.to_owned()));
        }
    }
    let get = |keyword: &str| -> Vec<String> {
        runtime
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, rest)| json_array(rest))
            .unwrap_or_else(|| panic!("no {keyword}"))
    };
    let entrypoint = get("ENTRYPOINT");
    assert_eq!(entrypoint, ["gantry"]);
    let cli = parse("Dockerfile CMD", &get("CMD"), &env);
    let port = listen(&cli).port();
    let exposed: Vec<u16> = runtime
        .iter()
        .filter(|(k, _)| k == "EXPOSE")
        .flat_map(|(_, rest)| rest.split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    assert_eq!(exposed, [port], "EXPOSE is the port gantry listens on");

    let (_, check) = runtime
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    let command = json_array(check.split_once("CMD").expect("HEALTHCHECK … CMD").1.trim());
    let url = command
        .iter()
        .find_map(|arg| reqwest::Url::parse(arg).ok())
        .expect("a URL in the health check");
    assert_eq!(url.port(), Some(port));
    let mut probes = Probes::default();
    // Every command the image runs must answer it: the CMD, and each deploy/ picks.
    probes.add(&cli, url.path());
    for command in [
        vec!["subgraph", "users"],
        vec!["subgraph", "posts"],
        vec!["gateway", "--subgraph", "users=http://users:4000/graphql"],
    ] {
        let args: Vec<String> = command.into_iter().map(str::to_owned).collect();
        probes.add(&parse("Dockerfile HEALTHCHECK", &args, &env), url.path());
    }
    probes.check().await;
}

/// A compose service's or container's environment: literal values as `Some`.
fn env_map(value: &Value) -> BTreeMap<String, Option<String>> {
    value
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            (name.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_compose_file_runs_the_three_processes_on_the_ports_and_names_they_use() {
    let mut compose: Value =
        serde_norway::from_str(&read(&root().join("deploy/compose.yaml"))).expect("YAML");
    compose.apply_merge().unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for needed in ["postgres", "redis", "users", "posts", "gateway"] {
        assert!(names.contains(needed), "a `{needed}` service");
    }
    let mut listens = BTreeMap::new();
    let mut gantry_services = Vec::new();
    let mut probes = Probes::default();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if service["build"].is_null() {
            continue;
        }
        let env = env_map(&service["environment"]);
        let cli = parse(
            &format!("compose service {name}"),
            &strings(&service["command"]),
            &env,
        );
        assert!(is_server(&cli), "{name}");
        listens.insert(name, listen(&cli).port());
        for (variable, value) in &env {
            if let Some(url) = value.as_deref().and_then(|v| reqwest::Url::parse(v).ok())
                && variable.ends_with("_URL")
            {
                let host = url.host_str().unwrap();
                assert!(
                    names.contains(host),
                    "{name}: {variable} names no service {host}"
                );
            }
        }
        probes.add(&cli, "/health");
        probes.add(&cli, "/ready");
        gantry_services.push((name, cli, service));
    }
    assert_eq!(gantry_services.len(), 3, "users, posts and the gateway");
    for (name, cli, service) in &gantry_services {
        for url in subgraph_urls(cli) {
            let host = url.host_str().unwrap();
            assert_eq!(
                Some(url.port().unwrap_or(80)),
                listens.get(host).copied(),
                "{name}: {url} is where `{host}` listens"
            );
        }
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let inside: u16 = port
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(Some(inside), listens.get(name).copied(), "{name}: {port:?}");
        }
    }
    probes.check().await;
}

/// Every document of every manifest in `deploy/kubernetes`, by file.
fn kubernetes() -> Vec<(String, Value)> {
    let dir = root().join("deploy/kubernetes");
    let mut documents = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = read(&path);
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).expect("YAML");
            if !value.is_null() {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                documents.push((file, value));
            }
        }
    }
    documents
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|wanted| wanted.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[tokio::test]
async fn the_kubernetes_manifests_run_the_binary_on_its_ports_with_its_settings_and_probes() {
    let documents = kubernetes();
    let of_kind = |kind: &str| -> Vec<&Value> {
        documents
            .iter()
            .filter(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d)
            .collect()
    };
    let name = |d: &Value| d["metadata"]["name"].as_str().unwrap().to_owned();

    let listed = strings(&of_kind("Kustomization").first().expect("a kustomization")["resources"]);
    let files: BTreeSet<String> = documents
        .iter()
        .filter(|(_, d)| d["kind"] != "Kustomization")
        .map(|(file, _)| file.clone())
        .collect();
    assert_eq!(
        listed.into_iter().collect::<BTreeSet<_>>(),
        files,
        "the kustomization lists every manifest"
    );

    let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for secret in of_kind("Secret") {
        let keys = secret["stringData"]
            .as_mapping()
            .or(secret["data"].as_mapping())
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str().unwrap().to_owned())
            .collect();
        secrets.insert(name(secret), keys);
    }
    let configs: BTreeMap<String, BTreeMap<String, Option<String>>> = of_kind("ConfigMap")
        .into_iter()
        .map(|c| (name(c), env_map(&c["data"])))
        .collect();

    let workloads: Vec<&Value> = of_kind("Deployment")
        .into_iter()
        .chain(of_kind("Job"))
        .collect();
    let mut components = BTreeSet::new();
    let mut probes = Probes::default();
    let mut listens: BTreeMap<String, u16> = BTreeMap::new();
    for workload in &workloads {
        let what = format!("{} {}", workload["kind"].as_str().unwrap(), name(workload));
        let pod = &workload["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
        let volumes: BTreeMap<String, &Value> = pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
            .collect();
        for container in pod["containers"].as_sequence().unwrap() {
            let mut env = BTreeMap::new();
            for source in container["envFrom"].as_sequence().into_iter().flatten() {
                let config = source["configMapRef"]["name"].as_str().unwrap();
                env.extend(
                    configs
                        .get(config)
                        .unwrap_or_else(|| panic!("{what}: no ConfigMap {config}"))
                        .clone(),
                );
            }
            for variable in container["env"].as_sequence().into_iter().flatten() {
                let value = variable["value"].as_str().map(str::to_owned);
                if let Some(reference) = variable["valueFrom"]["secretKeyRef"].as_mapping() {
                    let secret = reference["name"].as_str().unwrap();
                    let key = reference["key"].as_str().unwrap();
                    assert!(
                        secrets.get(secret).is_some_and(|keys| keys.contains(key)),
                        "{what}: no key {key} in Secret {secret}"
                    );
                }
                env.insert(variable["name"].as_str().unwrap().to_owned(), value);
            }
            let cli = parse(&what, &strings(&container["args"]), &env);
            if let Some(Some(file)) = env.get("GANTRY_JWT_PRIVATE_KEY_FILE") {
                let mounted = container["volumeMounts"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|mount| {
                        let dir = mount["mountPath"].as_str().unwrap();
                        let volume = volumes[mount["name"].as_str().unwrap()];
                        let secret = volume["secret"]["secretName"].as_str();
                        Path::new(file).parent() == Some(Path::new(dir))
                            && secret.is_some_and(|s| {
                                secrets.get(s).is_some_and(|keys| {
                                    keys.contains(
                                        Path::new(file).file_name().unwrap().to_str().unwrap(),
                                    )
                                })
                            })
                    });
                assert!(mounted, "{what}: {file} is a key of a mounted Secret");
            }
            if !is_server(&cli) {
                assert!(container["readinessProbe"].is_null(), "{what}");
                continue;
            }
            let port = listen(&cli).port();
            let ports: BTreeMap<String, u16> = container["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|p| {
                    let number = u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap();
                    (p["name"].as_str().unwrap_or_default().to_owned(), number)
                })
                .collect();
            assert!(
                ports.values().all(|p| *p == port),
                "{what}: containerPort {ports:?} is where gantry listens ({port})"
            );
            for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
                let get = &container[probe]["httpGet"];
                assert_eq!(get["path"].as_str(), Some(path), "{what}: {probe}");
                let target = match &get["port"] {
                    Value::String(named) => ports[named],
                    other => u16::try_from(other.as_u64().unwrap()).unwrap(),
                };
                assert_eq!(target, port, "{what}: {probe} port");
                probes.add(&cli, path);
            }
            let component =
                workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            components.insert(component);
            listens.insert(name(workload), port);
        }
    }
    for needed in ["gateway", "users", "posts", "migrate"] {
        let found = workloads.iter().any(|w| {
            w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == needed
        });
        assert!(found, "a workload for {needed}");
    }

    let deployments = of_kind("Deployment");
    for service in of_kind("Service") {
        let selected: Vec<&&Value> = deployments
            .iter()
            .filter(|d| {
                labels_match(
                    &service["spec"]["selector"],
                    &d["spec"]["template"]["metadata"]["labels"],
                )
            })
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "Service {} selects one Deployment",
            name(service)
        );
        let container_ports = &selected[0]["spec"]["template"]["spec"]["containers"][0]["ports"];
        for port in service["spec"]["ports"].as_sequence().unwrap() {
            let target = &port["targetPort"];
            let found = container_ports
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| &p["name"] == target || &p["containerPort"] == target);
            assert!(found, "Service {}: targetPort {target:?}", name(service));
        }
        // What a gateway's --subgraph URLs point at is a Service on the right port.
        for deployment in &deployments {
            for container in deployment["spec"]["template"]["spec"]["containers"]
                .as_sequence()
                .unwrap()
            {
                let cli = parse("gateway", &strings(&container["args"]), &BTreeMap::new());
                for url in subgraph_urls(&cli) {
                    if url.host_str() == Some(&name(service)) {
                        let port =
                            u16::try_from(service["spec"]["ports"][0]["port"].as_u64().unwrap())
                                .unwrap();
                        assert_eq!(url.port_or_known_default(), Some(port), "{url}");
                    }
                }
            }
        }
    }
    for deployment in &deployments {
        for container in deployment["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .unwrap()
        {
            let cli = parse("gateway", &strings(&container["args"]), &BTreeMap::new());
            for url in subgraph_urls(&cli) {
                let host = url.host_str().unwrap();
                assert!(
                    of_kind("Service").iter().any(|s| name(s) == host),
                    "{url}: no Service {host}"
                );
            }
        }
    }

    let hpa = of_kind("HorizontalPodAutoscaler");
    let pdb = of_kind("PodDisruptionBudget");
    let gateway = deployments
        .iter()
        .find(|d| {
            d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
        })
        .expect("a gateway Deployment");
    assert_eq!(hpa.len(), 1);
    assert_eq!(
        hpa[0]["spec"]["scaleTargetRef"]["name"].as_str(),
        Some(name(gateway).as_str())
    );
    assert!(
        !gateway["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
            .is_null(),
        "CPU autoscaling needs a CPU request"
    );
    assert_eq!(pdb.len(), 1);
    assert!(labels_match(
        &pdb[0]["spec"]["selector"]["matchLabels"],
        &gateway["spec"]["template"]["metadata"]["labels"]
    ));
    assert!(secrets.contains_key("gantry-database") && secrets.contains_key("gantry-jwt"));
    probes.check().await;
}
