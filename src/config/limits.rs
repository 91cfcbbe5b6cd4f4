//! `[limits]`: what one query, one caller and the whole process may cost.
//!
//! Owns: the keys, their defaults and the checks that need nothing but the configuration.
//! Must never: read the machine beyond what a default needs (the memory ceiling's default
//! reads the machine's total memory once, at load).
//!
//! Three layers, each documented in `docs/operations.md` with what it protects:
//! - one query: SQL size, syntax-tree and plan size, planning time, values built by functions,
//!   memory, spill, rows, bytes, time;
//! - one caller: queries at once per principal and per habilitation (503 beyond, with
//!   `Retry-After`), lookups per minute;
//! - the process: query lanes (threads and slots, away from the threads that serve HTTP), and
//!   a memory ceiling kept by refusing new work.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Highest `max_sql_bytes` a hub may set: the audit trail keeps every accepted statement whole,
/// so this also bounds the size of one audit record.
pub const SQL_BYTES_CEILING: usize = 1024 * 1024;

/// `[limits]`. The defaults keep a 2-core hub alive under one hostile caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest SQL text accepted, in bytes (413 beyond).
    #[serde(default = "default_max_sql_bytes")]
    pub max_sql_bytes: usize,
    /// Deepest nesting of the SQL text (parentheses, subqueries, expressions).
    #[serde(default = "default_max_sql_nesting")]
    pub max_sql_nesting: usize,
    /// Most nodes of the SQL syntax tree (expressions, relations, queries), counting each
    /// reference to a common table expression as a copy of it, as the planner expands it.
    #[serde(default = "default_max_sql_nodes")]
    pub max_sql_nodes: usize,
    /// Most nodes of the logical plan (plan nodes and expressions, subqueries included).
    #[serde(default = "default_max_plan_nodes")]
    pub max_plan_nodes: usize,
    /// Longest planning (logical and physical optimisation), in milliseconds; checked
    /// between optimizer passes.
    #[serde(default = "default_planning_timeout_ms")]
    pub planning_timeout_ms: u64,
    /// Largest value one function call may build (a string, a list), in bytes; and what one
    /// call builds for a whole batch is taken from the query's memory.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// Wall-clock limit of one query, planning and streaming included, in seconds (504).
    #[serde(default = "default_query_timeout")]
    pub query_timeout_secs: u64,
    /// Most rows one answer carries; beyond, the answer says it is truncated.
    #[serde(default = "default_max_result_rows")]
    pub max_result_rows: usize,
    /// Most bytes one answer carries (encoded, before compression); same rule as rows.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: usize,
    /// Memory one query may hold for sorts, joins, aggregates and function values, in MiB.
    #[serde(default = "default_query_memory_mb")]
    pub query_memory_mb: usize,
    /// Heavy queries running at once (the heavy lane's slots); others wait up to
    /// `queue_timeout_secs` for a slot, then get 503.
    #[serde(default = "default_max_concurrent_queries")]
    pub max_concurrent_queries: usize,
    /// Queries one principal may run at once, both lanes together (503 beyond).
    #[serde(default = "default_queries_per_principal")]
    pub queries_per_principal: usize,
    /// Queries running at once under one habilitation, all its members together (503 beyond).
    #[serde(default = "default_queries_per_habilitation")]
    pub queries_per_habilitation: usize,
    /// How long a query whose principal's or habilitation's share is full waits for a place
    /// before 503, in milliseconds (absorbs bursts of small queries).
    #[serde(default = "default_share_wait_ms")]
    pub share_wait_ms: u64,
    /// How long a heavy query waits for a slot before 503, in seconds.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout_secs: u64,
    /// Threads of the heavy lane; 0: one per core.
    #[serde(default)]
    pub query_threads: usize,
    /// Niceness of the heavy lane's threads (0 to 19): the threads that serve HTTP, lookups and
    /// cheap queries win the CPU when heavy queries take all of it.
    #[serde(default = "default_query_thread_nice")]
    pub query_thread_nice: i32,
    /// Threads of the cheap lane.
    #[serde(default = "default_cheap_query_threads")]
    pub cheap_query_threads: usize,
    /// Cheap queries running at once.
    #[serde(default = "default_cheap_query_slots")]
    pub cheap_query_slots: usize,
    /// A query whose scans read at most this much (MiB: the compressed bytes of the columns
    /// they read, from the files' footers; a whole object on a bucket) and that joins nothing
    /// without an equality is planned as cheap.
    #[serde(default = "default_cheap_query_input_mb")]
    pub cheap_query_input_mb: u64,
    /// Time a query may run in the cheap lane before it moves to the heavy lane, in ms.
    #[serde(default = "default_cheap_query_ms")]
    pub cheap_query_ms: u64,
    /// Memory ceiling of the whole process, in MiB; new queries get 503 while the process is
    /// above 90 % of it, and queries' memory together never exceeds what is left of it after
    /// start. 0: 80 % of the machine's memory.
    #[serde(default)]
    pub process_memory_mb: usize,
    /// Folder for spill files when a query exceeds its memory; none (the default): no spill,
    /// the query fails cleanly instead.
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
    /// Most spill bytes one query may write, in MiB.
    #[serde(default = "default_max_spill_mb")]
    pub max_spill_mb: u64,
    /// Allow `WITH RECURSIVE` (off: a recursive query can be made to run forever).
    #[serde(default)]
    pub allow_recursive_queries: bool,
    /// Requests without a valid token one source address (an IPv6 /64) may make per minute;
    /// beyond, 429 before the token is even read.
    #[serde(default = "default_unauthenticated_per_minute")]
    pub unauthenticated_per_minute: u32,
    /// Most keys in one batch lookup (`POST /v1/lookup/{dataset}`).
    #[serde(default = "default_lookup_batch_max")]
    pub lookup_batch_max: usize,
    /// Lookups per minute per organisation and habilitation when the habilitation states no
    /// `expected_volume_per_minute`.
    #[serde(default = "default_lookup_per_minute")]
    pub lookup_default_per_minute: u32,
    /// Multiplies every habilitation's expected volume (headroom over the declared volume).
    #[serde(default = "default_lookup_rate_factor")]
    pub lookup_rate_factor: u32,
    /// How many gateways serve the hub behind one load balancer: each enforces its share of
    /// the hub-wide lookup quotas (the quota divided by this, at least 1 per minute), so
    /// that together they never allow more than the quota (a quota below the number of
    /// gateways excepted: 1 a minute on each). At most 1 024.
    #[serde(default = "default_gateways")]
    pub gateways: u32,
}

impl LimitsConfig {
    /// This gateway's share of a hub-wide per-minute quota: `quota / gateways`, at least 1.
    pub fn gateway_share(&self, quota: u32) -> u32 {
        (quota / self.gateways.max(1)).max(1)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sql_bytes: default_max_sql_bytes(),
            max_sql_nesting: default_max_sql_nesting(),
            max_sql_nodes: default_max_sql_nodes(),
            max_plan_nodes: default_max_plan_nodes(),
            planning_timeout_ms: default_planning_timeout_ms(),
            max_value_bytes: default_max_value_bytes(),
            query_timeout_secs: default_query_timeout(),
            max_result_rows: default_max_result_rows(),
            max_result_bytes: default_max_result_bytes(),
            query_memory_mb: default_query_memory_mb(),
            max_concurrent_queries: default_max_concurrent_queries(),
            queries_per_principal: default_queries_per_principal(),
            queries_per_habilitation: default_queries_per_habilitation(),
            share_wait_ms: default_share_wait_ms(),
            queue_timeout_secs: default_queue_timeout(),
            query_threads: 0,
            query_thread_nice: default_query_thread_nice(),
            cheap_query_threads: default_cheap_query_threads(),
            cheap_query_slots: default_cheap_query_slots(),
            cheap_query_input_mb: default_cheap_query_input_mb(),
            cheap_query_ms: default_cheap_query_ms(),
            process_memory_mb: 0,
            spill_dir: None,
            max_spill_mb: default_max_spill_mb(),
            allow_recursive_queries: false,
            lookup_batch_max: default_lookup_batch_max(),
            unauthenticated_per_minute: default_unauthenticated_per_minute(),
            lookup_default_per_minute: default_lookup_per_minute(),
            lookup_rate_factor: default_lookup_rate_factor(),
            gateways: default_gateways(),
        }
    }
}

impl LimitsConfig {
    /// Threads of the heavy lane (`query_threads`, or one per core).
    pub fn heavy_threads(&self) -> usize {
        if self.query_threads > 0 {
            self.query_threads
        } else {
            std::thread::available_parallelism().map_or(2, usize::from)
        }
    }

    /// The process memory ceiling in bytes (`process_memory_mb`, or 80 % of the machine's).
    pub fn process_memory_bytes(&self) -> usize {
        if self.process_memory_mb > 0 {
            return self.process_memory_mb.saturating_mul(1024 * 1024);
        }
        machine_memory_bytes().map_or(4usize << 30, |total| total / 5 * 4)
    }

    /// Checks that need nothing but the configuration: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("limits.max_sql_bytes", self.max_sql_bytes),
            ("limits.max_sql_nesting", self.max_sql_nesting),
            ("limits.max_sql_nodes", self.max_sql_nodes),
            ("limits.max_plan_nodes", self.max_plan_nodes),
            (
                "limits.planning_timeout_ms",
                usize::try_from(self.planning_timeout_ms).unwrap_or(usize::MAX),
            ),
            ("limits.max_value_bytes", self.max_value_bytes),
            ("limits.max_result_rows", self.max_result_rows),
            ("limits.max_result_bytes", self.max_result_bytes),
            ("limits.query_memory_mb", self.query_memory_mb),
            ("limits.max_concurrent_queries", self.max_concurrent_queries),
            ("limits.queries_per_principal", self.queries_per_principal),
            (
                "limits.queries_per_habilitation",
                self.queries_per_habilitation,
            ),
            ("limits.cheap_query_threads", self.cheap_query_threads),
            ("limits.cheap_query_slots", self.cheap_query_slots),
            (
                "limits.query_timeout_secs",
                usize::try_from(self.query_timeout_secs).unwrap_or(usize::MAX),
            ),
            ("limits.lookup_batch_max", self.lookup_batch_max),
            (
                "limits.unauthenticated_per_minute",
                self.unauthenticated_per_minute as usize,
            ),
            (
                "limits.lookup_default_per_minute",
                self.lookup_default_per_minute as usize,
            ),
            (
                "limits.lookup_rate_factor",
                self.lookup_rate_factor as usize,
            ),
            ("limits.gateways", self.gateways as usize),
        ] {
            if value == 0 {
                problems.push((key.into(), "must be at least 1".into()));
            }
        }
        if self.gateways > 1024 {
            problems.push(("limits.gateways".into(), "must be at most 1024".into()));
        }
        if self.max_sql_bytes > SQL_BYTES_CEILING {
            problems.push((
                "limits.max_sql_bytes".into(),
                format!(
                    "must be at most {SQL_BYTES_CEILING} (the audit trail keeps every statement whole)"
                ),
            ));
        }
        if !(0..=19).contains(&self.query_thread_nice) {
            problems.push((
                "limits.query_thread_nice".into(),
                "must be between 0 and 19".into(),
            ));
        }
        if self.max_value_bytes > self.query_memory_mb.saturating_mul(1024 * 1024) {
            problems.push((
                "limits.max_value_bytes".into(),
                "must not exceed `query_memory_mb`".into(),
            ));
        }
        if self.process_memory_mb > 0 && self.query_memory_mb >= self.process_memory_mb {
            problems.push((
                "limits.process_memory_mb".into(),
                "must be larger than `query_memory_mb`".into(),
            ));
        }
        problems
    }
}

/// Total memory of the machine (`MemTotal` of `/proc/meminfo`), when it can be read.
fn machine_memory_bytes() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

fn default_unauthenticated_per_minute() -> u32 {
    120
}
fn default_max_sql_bytes() -> usize {
    64 * 1024
}
fn default_max_sql_nesting() -> usize {
    40
}
fn default_max_sql_nodes() -> usize {
    10_000
}
fn default_max_plan_nodes() -> usize {
    20_000
}
fn default_planning_timeout_ms() -> u64 {
    5_000
}
fn default_max_value_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_query_timeout() -> u64 {
    120
}
fn default_max_result_rows() -> usize {
    1_000_000
}
fn default_max_result_bytes() -> usize {
    1024 * 1024 * 1024
}
fn default_query_memory_mb() -> usize {
    1024
}
fn default_max_concurrent_queries() -> usize {
    4
}
fn default_queries_per_principal() -> usize {
    2
}
fn default_queries_per_habilitation() -> usize {
    8
}
fn default_share_wait_ms() -> u64 {
    250
}
fn default_queue_timeout() -> u64 {
    10
}
fn default_query_thread_nice() -> i32 {
    10
}
fn default_cheap_query_threads() -> usize {
    2
}
fn default_cheap_query_slots() -> usize {
    8
}
fn default_cheap_query_input_mb() -> u64 {
    64
}
fn default_cheap_query_ms() -> u64 {
    1_000
}
fn default_max_spill_mb() -> u64 {
    10 * 1024
}
fn default_lookup_batch_max() -> usize {
    100
}
fn default_lookup_per_minute() -> u32 {
    600
}
fn default_gateways() -> u32 {
    1
}
fn default_lookup_rate_factor() -> u32 {
    2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each gateway's share of a hub-wide quota: never more than the quota together, at least
    /// one each.
    #[test]
    fn gateways_share_a_quota_without_exceeding_it() {
        let limits = |gateways| LimitsConfig {
            gateways,
            ..LimitsConfig::default()
        };
        assert_eq!(limits(1).gateway_share(250), 250);
        assert_eq!(limits(2).gateway_share(250), 125);
        assert_eq!(limits(3).gateway_share(250), 83);
        assert_eq!(limits(4).gateway_share(2), 1, "at least one each");
        assert_eq!(
            limits(0).gateway_share(250),
            250,
            "0 is refused by problems()"
        );
    }
}
