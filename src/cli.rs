//! Command line: parses arguments, runs a command, turns its outcome into an exit code and one
//! clear line per problem on stderr.
//!
//! Owns: the commands of the contract and their flags. Must never: hold logic that tests cannot
//! reach (every command calls into the library), panic, or print a secret.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::demo::{self, DemoOptions};
use crate::telemetry::{self, LogFormat};

/// passerelle: the secure gateway of a sectoral data hub.
///
/// Authenticates researchers and administrations with OpenID Connect, applies the hub's
/// policies, and serves pseudonymised SQL and per-record lookups over HTTPS.
#[derive(Debug, Parser)]
#[command(name = "passerelle", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        value_enum,
        default_value = "human",
        env = "PASSERELLE_LOG_FORMAT",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a demo hub (synthetic data, policies, keys, certificate) and serve it with a
    /// local development issuer; prints ready-to-paste curl commands.
    Demo {
        /// Hub folder, created if missing and reused otherwise.
        #[arg(long, default_value = "./demo-hub")]
        dir: PathBuf,
        /// Number of hospital stays to generate (the other datasets scale with it).
        #[arg(long, default_value_t = demo::DEFAULT_ROWS, value_parser = clap::value_parser!(u64).range(1..=demo::MAX_ROWS))]
        rows: u64,
        /// Seed of the synthetic data generator (same rows and seed: same files).
        #[arg(long, default_value_t = demo::DEFAULT_SEED)]
        seed: u64,
        /// Address to serve HTTPS on (default: the hub's configuration, 127.0.0.1:8443, with
        /// metrics on 9464 and Flight SQL on 8444; given, those two take free ports of its
        /// address so that several demos can run side by side).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Write the hub folder, then exit without serving.
        #[arg(long)]
        generate_only: bool,
        /// Also start a cluster on loopback — a scheduler and this many executors, child
        /// processes, mutual TLS — and send every query of the heavy lane to it.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=8))]
        cluster: Option<u16>,
    },
    /// Run the cluster's scheduler (Ballista): takes physical plans from gateways and hands
    /// their tasks to executors, over mutual TLS (`[cluster]`).
    Scheduler {
        /// The configuration file with a `[cluster]` section (its certificate: the scheduler's).
        #[arg(long, env = "PASSERELLE_CONFIG")]
        config: PathBuf,
        /// Address to listen on (default: `cluster.scheduler`'s host and port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run one executor of the cluster: polls the scheduler for tasks, serves its shuffle
    /// files to gateways and executors, over mutual TLS (`[cluster]`).
    Executor {
        /// The configuration file with a `[cluster]` section (its certificate: an executor's).
        #[arg(long, env = "PASSERELLE_CONFIG")]
        config: PathBuf,
        /// Address of its Flight listener (a real port: it is told to the scheduler).
        #[arg(long)]
        listen: SocketAddr,
        /// The name or address others reach it by (default: `--listen`'s address); its
        /// certificate must be valid for it.
        #[arg(long)]
        advertise: Option<String>,
        /// Folder of its shuffle files (made 0700).
        #[arg(long, default_value = "./executor-work")]
        work_dir: PathBuf,
        /// Its name on the cluster, unique (default: `executor-<advertised host>-<port>`).
        #[arg(long)]
        id: Option<String>,
    },
    /// The cluster's own certificate authority and its nodes' certificates.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Serve a hub in production: trusts only the issuers in its configuration.
    Serve {
        /// The hub's configuration file.
        #[arg(long, env = "PASSERELLE_CONFIG")]
        config: PathBuf,
        /// Address to listen on (overrides `server.listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the Flight SQL listener (overrides `flight.listen`).
        #[arg(long)]
        flight_listen: Option<SocketAddr>,
    },
    /// Print what a principal with these claims can see, column by column, and the policy lines
    /// that decided it.
    Explain {
        /// The hub's configuration file.
        #[arg(long, env = "PASSERELLE_CONFIG")]
        config: PathBuf,
        /// The principal's claims as JSON, e.g. '{"sub":"x","groups":["projet-diabete"]}'.
        #[arg(long)]
        subject_claims: String,
        /// Only this habilitation.
        #[arg(long)]
        habilitation: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: ExplainFormat,
    },
    /// Validate configuration, keys, certificates, dataset catalog and data files; print every
    /// problem with its file (and line where it has one); exit 0 only when all is valid.
    Check {
        /// The hub's configuration file.
        #[arg(long, env = "PASSERELLE_CONFIG")]
        config: PathBuf,
    },
    /// Put the policy set of `policy.dir`, once validated, in the empty bucket of `policy.url`
    /// (gateways never fill an empty bucket themselves); refuses a bucket that holds a set or
    /// a history.
    SeedPolicy {
        /// The hub's configuration file.
        #[arg(long, env = "PASSERELLE_CONFIG")]
        config: PathBuf,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (the one served at `/openapi.json` and
    /// kept in `docs/openapi.json`).
    Openapi,
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit trail folder (every segment's hash chain, the retention anchor and the
    /// signed head), every gateway's trail under `audit.dir` when several write there
    /// (`audit.node`), or one segment file (its own chain only); exit 0 only if every trail is
    /// intact, otherwise name each broken one and its first bad record.
    Verify {
        /// The trail folder (`audit.dir`, or the folder of the nodes' trails), or one
        /// `audit-<seq>.jsonl` segment.
        path: PathBuf,
        /// Public key to trust (64 hex characters, e.g. the hub's `keys/audit-signing.pub`), or,
        /// for the nodes' trails, a folder of `<node>.pub` files (each node signs with its own
        /// key); by default each trail folder's own `audit.pub`.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Write a new authority (`ca.pem`, its key forgotten once it has signed) and the
    /// certificates and keys (0600) of one gateway, the scheduler and N executors.
    Certs {
        /// Folder to write them in (made 0700; existing files are never overwritten).
        #[arg(long)]
        dir: PathBuf,
        /// Number of executors.
        #[arg(long, default_value_t = 2)]
        executors: usize,
        /// A name or address the scheduler and executors are reached by (repeatable;
        /// `localhost` and `127.0.0.1` are always in).
        #[arg(long)]
        host: Vec<String>,
    },
}

/// Entry point of the binary.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format);
    crate::install_crypto_provider();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::SeedPolicy { config } => seed_policy(&config),
        Command::Openapi => {
            print!("{}", crate::server::openapi::document_json());
            ExitCode::SUCCESS
        }
        Command::Explain {
            config,
            subject_claims,
            habilitation,
            format,
        } => explain(&config, &subject_claims, habilitation.as_deref(), format),
        Command::Demo {
            dir,
            rows,
            seed,
            listen,
            generate_only,
            cluster,
        } => {
            let options = DemoOptions {
                dir,
                rows,
                seed,
                listen,
                generate_only,
                cluster: cluster.map(usize::from),
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            if generate_only {
                return report(demo::prepare(&options).map(|_| ()));
            }
            runtime()
                .and_then(|rt| rt.block_on(demo::run(options)).map_err(|e| e.to_string()))
                .map_or_else(fail, |()| ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { path, public_key },
        } => audit_verify(&path, public_key.as_deref()),
        Command::Scheduler { config, listen } => {
            crate::cluster::local::exit_with_parent();
            runtime()
            .and_then(|rt| rt.block_on(scheduler(config, listen)))
            .map_or_else(fail, |()| ExitCode::SUCCESS)
        }
        Command::Executor {
            config,
            listen,
            work_dir,
            id,
            advertise,
        } => {
            crate::cluster::local::exit_with_parent();
            runtime()
            .and_then(|rt| {
                let config = Config::load(&config).map_err(|e| e.to_string())?;
                let place = crate::cluster::executor::ExecutorPlace {
                    id: id.unwrap_or_else(|| {
                        format!(
                            "executor-{}-{}",
                            advertise.clone().unwrap_or_else(|| listen.ip().to_string()),
                            listen.port()
                        )
                    }),
                    listen,
                    advertise,
                    work_dir,
                };
                rt.block_on(crate::cluster::executor::run(&config, place))
            })
            .map_or_else(fail, |()| ExitCode::SUCCESS)
        }
        Command::Cluster {
            command:
                ClusterCommand::Certs {
                    dir,
                    executors,
                    host,
                },
        } => report(crate::cluster::pki::write(&dir, executors, &host).map(|files| {
            println!(
                "{}: authority ca.pem, gateway, scheduler and {} executor certificate(s) written",
                dir.display(),
                files.executors.len()
            );
        })),
        Command::Serve {
            config,
            listen,
            flight_listen,
        } => runtime()
            .and_then(|rt| rt.block_on(serve(config, listen, flight_listen)))
            .map_or_else(fail, |()| ExitCode::SUCCESS),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("passerelle")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

async fn serve(
    config: PathBuf,
    listen: Option<SocketAddr>,
    flight_listen: Option<SocketAddr>,
) -> Result<(), String> {
    let mut config = Config::load(&config).map_err(|e| e.to_string())?;
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(listen) = flight_listen {
        config.flight.listen = Some(listen);
    }
    let running = crate::hub::start(config).await.map_err(|e| e.to_string())?;
    running.run_until_signal().await.map_err(|e| e.to_string())
}

async fn scheduler(config: PathBuf, listen: Option<SocketAddr>) -> Result<(), String> {
    let config = Config::load(&config).map_err(|e| e.to_string())?;
    let listen = match listen {
        Some(listen) => listen,
        None => {
            let (host, port) = config
                .cluster
                .as_ref()
                .and_then(|c| c.scheduler_host_port())
                .ok_or("the scheduler needs a [cluster] section")?;
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| format!("cluster.scheduler: cannot resolve {host}"))?
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    crate::cluster::scheduler::run(&config, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => return fail(e.to_string()),
    };
    let problems = crate::hub::check(&config);
    // Warnings do not fail the check: they name choices an operator should confirm.
    for warning in crate::hub::warnings(&config) {
        eprintln!("{warning}");
    }
    if problems.is_empty() {
        println!("{}: valid", path.display());
        ExitCode::SUCCESS
    } else {
        for problem in &problems {
            eprintln!("{problem}");
        }
        eprintln!("{} problem(s) found", problems.len());
        ExitCode::FAILURE
    }
}

fn seed_policy(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => return fail(e.to_string()),
    };
    match crate::hub::seed_policy(&config) {
        Ok(version) => {
            println!("the policy bucket now holds version {version} of policy.dir");
            ExitCode::SUCCESS
        }
        Err(problems) => fail(problems.join("\n")),
    }
}

fn audit_verify(path: &std::path::Path, public_key: Option<&std::path::Path>) -> ExitCode {
    use crate::audit;
    let is_head = path.file_name().is_some_and(|n| n == audit::HEAD_FILE);
    let dir = if is_head {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    if !dir.is_dir() {
        return match audit::verify_segment(path) {
            Ok((first, last, hash)) => {
                println!(
                    "{}: chain intact: seq {first} to {last}, last hash {hash} (one segment only: verify the trail folder to check the signed head)",
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(problem) => fail(verify_failure(path, &problem)),
        };
    }
    let verdicts = audit::verify_trails(dir, public_key);
    let nodes = !matches!(verdicts.as_slice(), [(name, _)] if name == ".");
    let mut broken = Vec::new();
    for (name, verdict) in &verdicts {
        let trail = if name == "." {
            dir.to_path_buf()
        } else {
            dir.join(name)
        };
        match verdict {
            Ok(report) if nodes => println!("node {name} ({}): {report}", trail.display()),
            Ok(report) => println!("{}: {report}", trail.display()),
            Err(problem) if nodes => {
                broken.push(format!("node {name}: {}", verify_failure(&trail, problem)));
            }
            Err(problem) => broken.push(verify_failure(&trail, problem)),
        }
    }
    if public_key.is_none() && broken.is_empty() {
        println!(
            "note: the public key was read from the trail folder itself; pin it with --public-key (e.g. the hub's keys/audit-signing.pub, or a folder of <node>.pub files for the nodes' trails) to detect a replaced key"
        );
    }
    match (broken.is_empty(), nodes) {
        (true, true) => {
            println!(
                "{}: {} node trail(s), all intact",
                dir.display(),
                verdicts.len()
            );
            ExitCode::SUCCESS
        }
        (true, false) => ExitCode::SUCCESS,
        (false, true) => fail(format!(
            "{}: {} of {} node trail(s) NOT intact\n{}",
            dir.display(),
            broken.len(),
            verdicts.len(),
            broken.join("\n")
        )),
        (false, false) => fail(broken.join("\n")),
    }
}

fn verify_failure(path: &std::path::Path, problem: &crate::audit::Problem) -> String {
    let first = problem
        .seq
        .map(|seq| format!(" (first bad record: seq {seq})"))
        .unwrap_or_default();
    format!(
        "audit trail {} is NOT intact: {problem}{first}",
        path.display()
    )
}

/// Output of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

fn explain(
    path: &std::path::Path,
    claims: &str,
    habilitation: Option<&str>,
    format: ExplainFormat,
) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => return fail(e.to_string()),
    };
    let set = match crate::hub::policy_set(&config) {
        Ok((set, _)) => set,
        Err(problems) => return fail(problems.join("\n")),
    };
    let claims: serde_json::Value = match serde_json::from_str(claims) {
        Ok(v) => v,
        Err(e) => return fail(format!("--subject-claims is not JSON: {e}")),
    };
    let principal = match crate::identity::Principal::for_explain(&claims) {
        Ok(p) => p,
        Err(e) => return fail(format!("--subject-claims: {e}")),
    };
    if let Some(id) = habilitation
        && set.habilitations.get(id).is_none()
    {
        return fail(format!("unknown habilitation `{id}`"));
    }
    let today = chrono::Utc::now().date_naive();
    match format {
        ExplainFormat::Text => print!(
            "{}",
            crate::policy::explain::render_text(&set, &principal, habilitation, today)
        ),
        ExplainFormat::Json => {
            let views = crate::policy::explain::views(&set, &principal, habilitation, today);
            let value = serde_json::json!({
                "policy_version": set.version,
                "principal": principal,
                "operator": set.is_operator(&principal),
                "habilitations": views,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}

fn report<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    result.map_or_else(|e| fail(e.to_string()), |()| ExitCode::SUCCESS)
}

fn fail(message: String) -> ExitCode {
    for line in message.lines() {
        eprintln!("passerelle: {line}");
    }
    ExitCode::FAILURE
}
