//! What the TPC-H benches share: their settings from the environment, the data folder
//! generated once, medians.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// `name` parsed from the environment, `default` when unset or empty; a value that does not
/// parse stops the bench (a typo must not measure something else).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        _ => default,
    }
}

/// `TPCH_QUERIES` (e.g. `1,6,q18`), default all 22.
pub fn queries_from_env() -> Vec<usize> {
    match std::env::var("TPCH_QUERIES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|q| {
                let n: usize = q.trim().trim_start_matches(['q', 'Q']).parse().unwrap();
                assert!((1..=22).contains(&n), "no TPC-H query {n}");
                n
            })
            .collect(),
        _ => (1..=22).collect(),
    }
}

/// `TPCH_DIR`, or `tpch-sf<SF>` in `/var/cache/passerelle` when writable, else in the
/// temporary folder.
pub fn data_dir(scale_factor: f64) -> PathBuf {
    match std::env::var("TPCH_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let name = format!("tpch-sf{scale_factor}");
            let cache = Path::new("/var/cache/passerelle");
            if std::fs::create_dir_all(cache).is_ok()
                && std::fs::metadata(cache).is_ok_and(|m| !m.permissions().readonly())
            {
                cache.join(name)
            } else {
                std::env::temp_dir().join(format!("passerelle-{name}"))
            }
        }
    }
}

/// Generates the tables once with `generate`; a marker file says the folder is complete.
pub fn ensure_data(dir: &Path, scale_factor: f64, generate: impl FnOnce(&Path)) {
    let marker = dir.join(".complete");
    if marker.exists() {
        eprintln!("data: reusing {}", dir.display());
        return;
    }
    eprintln!(
        "data: generating SF {scale_factor} into {} …",
        dir.display()
    );
    let start = Instant::now();
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    generate(dir);
    std::fs::write(&marker, format!("{scale_factor}\n")).unwrap();
    eprintln!("data: generated in {:.1} s", start.elapsed().as_secs_f64());
}

pub fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    }
}
