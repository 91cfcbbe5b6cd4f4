//! What one query may cost: SQL size, nesting and syntax-tree size, plan size, planning time,
//! values built by functions, time, result rows and bytes, memory and spill; and the per-query
//! DataFusion runtime that enforces the memory and spill parts.
//!
//! Owns: [`QueryLimits`] (from `[limits]`) and [`EngineRuntime`], the hub-wide caches and
//! memory budget shared by every query plus a fresh memory pool (drawing on that budget) and
//! disk manager per query.
//!
//! Must never: let a query allocate without a pool, or spill outside the configured folder.

use std::sync::Arc;
use std::time::Duration;

use datafusion::error::Result;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnv;

use super::memory::HubMemory;

use crate::config::LimitsConfig;

/// Per-query limits.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub max_sql_bytes: usize,
    pub max_sql_nesting: usize,
    pub max_sql_nodes: usize,
    pub max_plan_nodes: usize,
    pub planning_timeout: Duration,
    pub max_value_bytes: usize,
    /// Queries reading at most this many bytes of data files (and joining nothing without an
    /// equality) are cheap.
    pub cheap_input_bytes: u64,
    /// Time a cheap query may run in the cheap lane before it moves to the heavy lane.
    pub cheap_budget: Duration,
    pub max_rows: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub spill_dir: Option<std::path::PathBuf>,
    pub max_spill_bytes: u64,
    pub allow_recursive: bool,
}

impl From<&LimitsConfig> for QueryLimits {
    fn from(c: &LimitsConfig) -> Self {
        Self {
            max_sql_bytes: c.max_sql_bytes,
            max_sql_nesting: c.max_sql_nesting,
            max_sql_nodes: c.max_sql_nodes,
            max_plan_nodes: c.max_plan_nodes,
            planning_timeout: Duration::from_millis(c.planning_timeout_ms),
            max_value_bytes: c.max_value_bytes,
            cheap_input_bytes: c.cheap_query_input_mb.saturating_mul(1024 * 1024),
            cheap_budget: Duration::from_millis(c.cheap_query_ms),
            max_rows: c.max_result_rows,
            max_bytes: c.max_result_bytes,
            timeout: Duration::from_secs(c.query_timeout_secs),
            memory_bytes: c.query_memory_mb.saturating_mul(1024 * 1024),
            spill_dir: c.spill_dir.clone(),
            max_spill_bytes: c.max_spill_mb.saturating_mul(1024 * 1024),
            allow_recursive: c.allow_recursive_queries,
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self::from(&LimitsConfig::default())
    }
}

/// The hub's DataFusion runtime: caches (Parquet footers, file listings), object stores and
/// the memory budget shared by every query; memory pool and spill files per query.
#[derive(Debug, Clone)]
pub struct EngineRuntime {
    shared: Arc<RuntimeEnv>,
    memory: Arc<HubMemory>,
}

impl Default for EngineRuntime {
    fn default() -> Self {
        Self::new(crate::config::LimitsConfig::default().process_memory_bytes())
    }
}

impl EngineRuntime {
    /// A runtime whose queries together stay under `ceiling` bytes of process memory.
    pub fn new(ceiling: usize) -> Self {
        // Only its caches and object store registry are used; each query gets its own pool
        // and disk manager.
        Self {
            shared: Arc::new(RuntimeEnv::default()),
            memory: HubMemory::new(ceiling),
        }
    }

    /// The hub's memory (ceiling, budget, resident size).
    pub fn memory(&self) -> &Arc<HubMemory> {
        &self.memory
    }

    /// A runtime for one query: its own memory pool of `limits.memory_bytes` drawing on the
    /// hub's budget and, only when a spill folder is configured, its own spill budget there.
    pub fn for_query(&self, limits: &QueryLimits) -> Result<Arc<RuntimeEnv>> {
        // SECURITY: a query that outgrows its pool, or the hub's budget, fails cleanly (or
        // spills into the configured folder only); it cannot take the hub's memory.
        let pool = self.memory.query_pool(limits.memory_bytes);
        let mode = match &limits.spill_dir {
            Some(dir) => DiskManagerMode::Directories(vec![dir.clone()]),
            None => DiskManagerMode::Disabled,
        };
        let mut disk = DiskManagerBuilder::default().with_mode(mode);
        if limits.spill_dir.is_some() {
            disk = disk.with_max_temp_directory_size(limits.max_spill_bytes);
        }
        Ok(Arc::new(RuntimeEnv {
            memory_pool: pool,
            disk_manager: Arc::new(disk.build()?),
            cache_manager: self.shared.cache_manager.clone(),
            object_store_registry: self.shared.object_store_registry.clone(),
        }))
    }
}
