//! The bucket's I/O runtime: one thread whose Tokio runtime carries every HTTP request to the
//! store, whichever runtime (the query lanes', the server's, none) awaits the answer.
//!
//! Must never: be dropped from inside an async context by its owner thread (the runtime is
//! owned and dropped by its own thread, told to stop when this handle goes).

use std::future::Future;

use tokio::runtime::Handle;

/// A running I/O runtime; stopped when dropped.
pub(super) struct IoRuntime {
    handle: Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl IoRuntime {
    pub(super) fn start() -> std::io::Result<IoRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("passerelle-object-io")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("passerelle-object-io-owner".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(IoRuntime {
            handle,
            _stop: stop,
        })
    }

    pub(super) fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs `work` to completion from code that is not async (or is, on a runtime that must
    /// not be blocked from within): on a thread of its own, with this runtime's timers.
    pub(super) fn block_on<F: Future + Send>(&self, work: F) -> F::Output
    where
        F::Output: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| self.handle.block_on(work))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}
