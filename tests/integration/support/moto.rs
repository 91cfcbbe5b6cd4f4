//! An S3-protocol server for tests: moto in server mode (`moto_server`, from
//! `tests/clients/requirements.txt`) on a free loopback port, and the shared hub's data
//! uploaded to it. `.ci/run` installs it and sets `PASSERELLE_INTEROP=required`; elsewhere the
//! tests that need it are skipped (with a message) when it is not installed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;

use super::hub;

/// A moto server on loopback, stopped on drop.
pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
    /// The access key id and secret requests are signed with.
    pub keys: (String, String),
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto on a free loopback port, or says why it cannot. It takes any credentials.
    pub fn start() -> Option<Moto> {
        Self::start_with(&[])
    }

    /// Starts moto checking credentials, with `bucket` and one user allowed everything (see
    /// `tests/storage/moto_credentials.py`).
    pub fn start_checking_credentials(bucket: &str) -> Option<Moto> {
        let mut moto = Self::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")])?;
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/storage/moto_credentials.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(moto.endpoint())
            .arg(bucket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (id, secret) = text.trim().split_once(' ').unwrap();
        moto.keys = (id.to_string(), secret.to_string());
        Some(moto)
    }

    pub fn start_with(env: &[(&str, &str)]) -> Option<Moto> {
        let required = std::env::var("PASSERELLE_INTEROP").is_ok_and(|v| v == "required");
        let installed = Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                !required,
                "PASSERELLE_INTEROP=required but moto_server is not installed"
            );
            eprintln!("skipped: pip install -r tests/clients/requirements.txt (moto[server])");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let moto = Moto {
            child,
            addr,
            keys: ("test".into(), "test".into()),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates `bucket` (moto accepts the unsigned request).
    pub fn create_bucket(&self, bucket: &str) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// A client of `bucket`.
    pub fn client(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(&self.keys.0)
            .with_secret_access_key(&self.keys.1)
            .build()
            .unwrap()
    }

    /// A credentials file (0600) for the hub: the endpoint, region and keys.
    pub fn credentials_file(&self, dir: &Path) -> PathBuf {
        self.credentials_file_with(dir, "s3-credentials", &self.keys.1)
    }

    /// [`Self::credentials_file`] named `name`, with `secret` as the secret access key.
    pub fn credentials_file_with(&self, dir: &Path, name: &str, secret: &str) -> PathBuf {
        let path = dir.join(name);
        passerelle::secret_file::write_new_private(
            &path,
            format!(
                "# moto on loopback\nAWS_ENDPOINT_URL={}\nAWS_REGION=us-east-1\n\
                 AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={secret}\n",
                self.endpoint(),
                self.keys.0
            )
            .as_bytes(),
        )
        .unwrap();
        path
    }
}

/// Every file under `from` (not its hidden folders: published tables, extracts), as
/// `(relative key, path)`.
pub fn data_files(from: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![from.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = path
                    .strip_prefix(from)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((key, path));
            }
        }
    }
    out
}

/// The shared hub's data uploaded under `prefix` of `bucket`.
pub async fn hub_on_bucket(moto: &Moto, bucket: &str, prefix: &str) {
    if moto.keys.0 == "test" {
        moto.create_bucket(bucket);
    }
    let s3 = moto.client(bucket);
    for (key, path) in data_files(&hub().root.join("data")) {
        let bytes = std::fs::read(&path).unwrap();
        s3.put(&ObjectPath::from(format!("{prefix}/{key}")), bytes.into())
            .await
            .unwrap();
    }
}

/// The shared hub's data on a bucket of a moto server of its own, with a credentials file and
/// an empty local working folder: what a gateway (or an executor) on that bucket needs.
pub struct HubBucket {
    pub moto: Moto,
    /// `s3://<bucket>/<prefix>`.
    pub url: String,
    pub credentials: PathBuf,
    /// An empty folder, for a gateway's `data.dir`.
    pub local: PathBuf,
    _dir: tempfile::TempDir,
}

impl HubBucket {
    /// Moto with the shared hub's data under `prefix` of `bucket`; `None` when moto is not
    /// installed.
    pub async fn start(bucket: &str, prefix: &str) -> Option<HubBucket> {
        let moto = Moto::start()?;
        hub_on_bucket(&moto, bucket, prefix).await;
        let dir = tempfile::tempdir().unwrap();
        let credentials = moto.credentials_file(dir.path());
        let local = dir.path().join("local");
        std::fs::create_dir_all(&local).unwrap();
        Some(HubBucket {
            moto,
            url: format!("s3://{bucket}/{prefix}"),
            credentials,
            local,
            _dir: dir,
        })
    }

    /// `config` reading its datasets from the bucket, its local folder the empty one.
    pub fn configure(&self, config: &mut passerelle::config::Config) {
        config.data.url = Some(self.url.clone());
        config.data.credentials_file = Some(self.credentials.clone());
        config.data.dir = self.local.clone();
    }

    /// The overrides that make a node (an executor, a gateway process) read the bucket.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PASSERELLE_DATA__URL".to_string(), self.url.clone()),
            (
                "PASSERELLE_DATA__CREDENTIALS_FILE".to_string(),
                self.credentials.display().to_string(),
            ),
        ]
    }
}
