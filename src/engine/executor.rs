//! The query lanes: dedicated thread pools that plan and run queries away from the runtime
//! that serves HTTP.
//!
//! Owns: two tokio runtimes of their own threads. The **cheap** lane plans every query and
//! runs those planned as cheap; the **heavy** lane runs the others (and cheap ones that
//! outlive their budget), on threads with a lower priority (`limits.query_thread_nice`), so
//! that when queries take every core, the threads serving `/health/live`, lookups and cheap
//! queries still get the CPU. Work spawned by DataFusion inside a query runs on the lane
//! that polls it.
//!
//! Must never: run query work on the HTTP runtime, or block the caller: a lane is reached only
//! through [`Lane::spawn`].

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::config::LimitsConfig;

/// One lane: a runtime and its threads.
#[derive(Debug)]
pub struct Lane {
    name: &'static str,
    handle: Handle,
    /// Held so the threads live as long as the lane; shut down without waiting on drop (a lane
    /// may be dropped from async code, where waiting is not allowed).
    runtime: Option<Runtime>,
}

impl Lane {
    fn start(name: &'static str, threads: usize, nice: i32) -> std::io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .max_blocking_threads(threads.max(1) * 4)
            .thread_name(format!("passerelle-{name}"))
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        Ok(Self {
            name,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on this lane's threads.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The two lanes.
#[derive(Debug, Clone)]
pub struct QueryLanes {
    pub cheap: Arc<Lane>,
    pub heavy: Arc<Lane>,
}

impl QueryLanes {
    pub fn start(limits: &LimitsConfig) -> std::io::Result<Self> {
        Ok(Self {
            cheap: Arc::new(Lane::start("cheap", limits.cheap_query_threads, 0)?),
            heavy: Arc::new(Lane::start(
                "heavy",
                limits.heavy_threads(),
                limits.query_thread_nice,
            )?),
        })
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux: per thread). A failure
/// is logged once per thread and otherwise ignored: priorities tune latency, they guarantee
/// nothing.
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
            tracing::warn!(error = %e, "cannot lower the priority of a query thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_lane_threads_not_the_callers() {
        let lanes = QueryLanes::start(&LimitsConfig::default()).unwrap();
        let caller = std::thread::current().id();
        let (name, id) = lanes
            .heavy
            .spawn(async {
                let t = std::thread::current();
                (t.name().unwrap_or_default().to_string(), t.id())
            })
            .await
            .unwrap();
        assert_eq!(name, "passerelle-heavy");
        assert_ne!(id, caller);
        // Dropping the lanes from async code does not panic.
        drop(lanes);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn heavy_threads_run_at_a_lower_priority() {
        let lanes = QueryLanes::start(&LimitsConfig::default()).unwrap();
        let nice = lanes
            .heavy
            .spawn(async { rustix::process::getpriority_process(Some(rustix::thread::gettid())) })
            .await
            .unwrap()
            .unwrap();
        let cheap = lanes
            .cheap
            .spawn(async { rustix::process::getpriority_process(Some(rustix::thread::gettid())) })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(nice, LimitsConfig::default().query_thread_nice);
        assert_eq!(cheap, 0);
    }
}
