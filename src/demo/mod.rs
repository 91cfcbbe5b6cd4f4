//! Demo: the newcomer's first command. Creates a hub folder with synthetic data, the demo
//! policies, keys and certificates, then serves it with a local development issuer and prints
//! ready-to-paste `curl` commands for every persona.
//!
//! Owns: synthetic datasets (`data`), demo personas, the development issuer, hub folder
//! creation.
//!
//! Must never: be reachable from `serve` (nothing outside this module can build a
//! `DevIssuer`, and no configuration key can name one), write the issuer's key to disk, or
//! generate anything but synthetic data.

pub mod data;
pub mod hub;
pub mod issuer;
mod login;
pub mod personas;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::Config;

pub use hub::{HubLayout, HubReport};
pub use issuer::DevIssuer;

pub use data::{DEFAULT_ROWS, DEFAULT_SEED, MAX_ROWS};

/// What `passerelle demo` was asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub rows: u64,
    pub seed: u64,
    pub listen: Option<SocketAddr>,
    pub generate_only: bool,
    pub progress: bool,
    /// `--cluster N`: a scheduler and N executors on loopback run the heavy lane's queries.
    pub cluster: Option<usize>,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{file}: {reason}")]
    Io { file: String, reason: String },
    #[error("data generation failed: {0}")]
    Generate(#[from] data::GenerateError),
    #[error(transparent)]
    MasterKey(#[from] crate::pseudonym::MasterKeyError),
    #[error("certificate generation failed: {0}")]
    Tls(String),
    #[error("development issuer: {0}")]
    Issuer(String),
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
}

impl DemoError {
    pub fn io(path: &Path, e: &std::io::Error) -> Self {
        DemoError::Io {
            file: path.display().to_string(),
            reason: e.kind().to_string(),
        }
    }
}

/// Generates (or reuses) the hub folder and reports what it did on stderr.
pub fn prepare(options: &DemoOptions) -> Result<HubReport, DemoError> {
    let report = hub::ensure(&options.dir, options.rows, options.seed, options.progress)?;
    let layout = HubLayout::new(&options.dir);
    if report.created {
        eprintln!("created demo hub in {}", options.dir.display());
    } else {
        eprintln!("reusing demo hub in {}", options.dir.display());
    }
    if report.regenerated_data {
        for (name, rows) in &report.datasets {
            eprintln!("  {name:<28} {rows:>10} rows");
        }
        eprintln!("  generated in {:.1} s", report.seconds);
    }
    eprintln!("  configuration: {}", layout.config().display());
    Ok(report)
}

/// `passerelle demo`: prepare the hub, then serve it with the development issuer until
/// Ctrl-C/SIGTERM.
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    prepare(&options)?;
    let layout = HubLayout::new(&options.dir);
    let mut config = Config::load(&layout.config()).map_err(crate::hub::HubError::from)?;
    if let Some(listen) = options.listen {
        config.server.listen = listen;
        // Several demos may run side by side: the metrics listener follows `--listen` to a
        // free port of the same address (printed below).
        if config.server.metrics_listen.is_some() {
            config.server.metrics_listen = Some(SocketAddr::new(listen.ip(), 0));
        }
        // And so does Flight SQL (a hub written before it had none: it gets one).
        config.flight.listen = Some(SocketAddr::new(listen.ip(), 0));
    } else if config.flight.listen.is_none() {
        config.flight.listen = Some(SocketAddr::from(([127, 0, 0, 1], 8444)));
    }
    let issuer = DevIssuer::start().await?;
    // The citizen persona is the first CAF recipient of the data: its journal shows the CAF's
    // lookups of the tour.
    let citizen = first_recipient(&layout.data().join("social/allocataires.parquet"));
    if let Some(nir) = &citizen {
        issuer.set_citizen_nir(nir);
    }
    // The development issuer is trusted in memory only, for this process.
    config.identity.issuers.push(issuer.issuer_config());
    // The operators' console signs in with the development issuer: its redirect URI names the
    // listener, so a listener asked on port 0 gets a free port chosen now.
    if config.server.listen.port() == 0
        && let Ok(free) = std::net::TcpListener::bind(config.server.listen)
        && let Ok(addr) = free.local_addr()
    {
        config.server.listen = addr;
    }
    if config.console.is_none() && config.server.listen.port() != 0 {
        let listen = config.server.listen;
        let host = if listen.ip().is_unspecified() {
            format!("127.0.0.1:{}", listen.port())
        } else {
            listen.to_string()
        };
        config.console = Some(issuer.console_config(&format!("https://{host}")));
    }
    // The local cluster lives as long as the demo (its processes stop when it is dropped).
    let cluster = match options.cluster {
        Some(executors) => {
            let binary = std::env::current_exe().map_err(|e| DemoError::Io {
                file: "passerelle".into(),
                reason: e.to_string(),
            })?;
            let local = crate::cluster::local::LocalCluster::start(
                &binary,
                &layout.config(),
                &options.dir.join("cluster"),
                executors,
            )
            .map_err(|reason| DemoError::Io {
                file: "cluster".into(),
                reason,
            })?;
            config.cluster = Some(local.gateway.clone());
            // Every query that reads a dataset takes the heavy lane, hence the cluster.
            config.limits.cheap_query_input_mb = 0;
            Some(local)
        }
        None => None,
    };
    let running = crate::hub::start(config).await?;
    if let Some(local) = &cluster {
        println!(
            "Cluster: scheduler {} and {} executor(s) ({}), mutual TLS; every query that reads a dataset runs there.\n",
            local.gateway.scheduler,
            local.executors.len(),
            local
                .executors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    print_tour(
        &options.dir,
        running.addr,
        running.metrics_addr,
        running.flight_addr,
        &issuer,
        citizen.as_deref(),
    )?;
    running
        .run_until_signal()
        .await
        .map_err(|e| DemoError::Io {
            file: "server".into(),
            reason: e.to_string(),
        })?;
    drop(issuer);
    drop(cluster);
    Ok(())
}

/// Prints ready-to-paste `curl` commands (stdout, so they can be piped or copied).
fn print_tour(
    dir: &Path,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    flight: Option<SocketAddr>,
    issuer: &DevIssuer,
    citizen: Option<&str>,
) -> Result<(), DemoError> {
    let host = |addr: SocketAddr| {
        if addr.ip().is_unspecified() {
            format!("127.0.0.1:{}", addr.port())
        } else {
            addr.to_string()
        }
    };
    let base = format!("https://{}", host(addr));
    let ca = HubLayout::new(dir).ca_cert();
    let ca = shell_quote(&ca.display().to_string());
    println!();
    println!("passerelle demo hub: {base}");
    println!(
        "development issuer (demo only, loopback): {}",
        issuer.issuer()
    );
    println!("operators' console (sign in as `operateur`): {base}/console");
    if let Some(nir) = citizen {
        println!("citizens' journal (sign in as `citoyen`, NIR {nir}): {base}/moi");
    }
    println!();
    println!("  curl --cacert {ca} {base}/health/ready");
    if let Some(metrics) = metrics {
        println!("  curl --cacert {ca} https://{}/metrics", host(metrics));
    }
    for (persona, token) in issuer.all_tokens()? {
        println!();
        println!("# {}", persona.title);
        println!("curl --cacert {ca} {base}/v1/me -H 'Authorization: Bearer {token}'");
    }
    if let Some(flight) = flight {
        println!();
        println!("# Arrow Flight SQL (ADBC, Python: pip install adbc-driver-flightsql pyarrow)");
        println!("#   import adbc_driver_flightsql.dbapi as flight_sql, json, urllib.request");
        println!(
            "#   token = json.load(urllib.request.urlopen('{}/token/chercheuse-diabete'))['access_token']",
            issuer.issuer()
        );
        println!(
            "#   conn = flight_sql.connect('grpc+tls://{}', db_kwargs={{'adbc.flight.sql.authorization_header': 'Bearer ' + token, 'adbc.flight.sql.client_option.tls_root_certs': open({ca:?}).read()}})",
            host(flight)
        );
        println!(
            "#   conn.cursor().execute('SELECT count(*) FROM sante.sejours').fetch_arrow_table()"
        );
    }
    println!();
    println!(
        "Tokens last {} hours; a fresh one: curl {}/token/<persona>",
        issuer::TOKEN_LIFETIME.as_secs() / 3600,
        issuer.issuer()
    );
    println!("Stop with Ctrl-C.");
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The NIR of the first row of `social.allocataires` (the demo's citizen), if it can be read.
fn first_recipient(file: &Path) -> Option<String> {
    use arrow::array::{Array, AsArray};
    let file = std::fs::File::open(file).ok()?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .ok()?
        .with_batch_size(1)
        .build()
        .ok()?;
    for batch in reader.flatten() {
        let column = batch.column_by_name("nir")?;
        let nir = column.as_string_opt::<i32>()?;
        if nir.len() > 0 && nir.is_valid(0) {
            return Some(nir.value(0).to_string());
        }
    }
    None
}
