//! Stopping a statement for real. Dropping a query's stream aborts DataFusion's spawned tasks
//! only at their next `.await`, and a CPU-bound operator (a nested-loop join feeding an
//! aggregate) can produce batch after batch without ever awaiting: it would spin on after
//! "cancelled" and keep the runtime from shutting down. So every edge of the physical plan
//! gets a [`CancelCheckExec`] whose stream checks the statement's [`Cancel`] flag at each
//! batch: once set, every operator's next poll ends in an error and its task finishes.
//!
//! [`Interrupts`] turns SIGINT and SIGTERM into that flag: a signal during a statement cancels
//! it; a second signal while it is still stopping, a signal between statements of a script, or
//! any signal during shutdown ends the process at once with `128 + signal` (130 for SIGINT, as
//! shells expect). At an idle prompt the terminal is in raw mode and Ctrl-C is a key that
//! rustyline reports, so the prompt decides (see `repl.rs`).

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;
use tokio::sync::Notify;

pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

/// The message of a cancelled statement.
pub const CANCELLED: &str = "query cancelled";

/// One statement's cancellation flag.
#[derive(Debug, Default)]
pub struct Cancel {
    flag: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once [`Cancel::cancel`] has been called.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// The error an operator returns once its statement is cancelled.
pub fn cancelled_error() -> DataFusionError {
    DataFusionError::Execution(CANCELLED.to_string())
}

/// Whether `error` is (or wraps) a cancellation.
pub fn is_cancelled(error: &DataFusionError) -> bool {
    error.to_string().contains(CANCELLED)
}

/// Puts a [`CancelCheckExec`] above every node of `plan` (the root included).
pub fn with_cancel_checks(
    plan: Arc<dyn ExecutionPlan>,
    cancel: &Arc<Cancel>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
    let plan = if children.is_empty() {
        plan
    } else {
        let wrapped = children
            .into_iter()
            .map(|c| with_cancel_checks(c, cancel))
            .collect::<Result<Vec<_>>>()?;
        // The wrappers have their inputs' properties: nothing to recompute.
        plan.replace_children(
            wrapped,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
        )?
    };
    Ok(Arc::new(CancelCheckExec {
        properties: plan.properties().clone(),
        input: plan,
        cancel: cancel.clone(),
    }))
}

/// Passes its input's batches through, and ends in an error once the statement is cancelled.
#[derive(Debug)]
pub struct CancelCheckExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    cancel: Arc<Cancel>,
}

/// The name EXPLAIN ANALYZE would show; the printer leaves these lines out.
pub const CANCEL_CHECK_EXEC: &str = "CancelCheckExec";

impl DisplayAs for CancelCheckExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CANCEL_CHECK_EXEC}")
    }
}

impl ExecutionPlan for CancelCheckExec {
    fn name(&self) -> &str {
        CANCEL_CHECK_EXEC
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        Ok(Arc::new(CancelCheckExec {
            properties: input.properties().clone(),
            input,
            cancel: self.cancel.clone(),
        }))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if self.cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        Ok(Box::pin(CancelCheckStream {
            input: self.input.execute(partition, context)?,
            cancel: self.cancel.clone(),
            done: false,
        }))
    }
}

struct CancelCheckStream {
    input: SendableRecordBatchStream,
    cancel: Arc<Cancel>,
    done: bool,
}

impl Stream for CancelCheckStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cancel.is_cancelled() {
            self.done = true;
            return Poll::Ready(Some(Err(cancelled_error())));
        }
        self.input.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for CancelCheckStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}

/// SIGINT and SIGTERM for the whole process (see the module documentation).
#[derive(Clone)]
pub struct Interrupts {
    inner: Arc<Inner>,
}

struct Inner {
    running: Mutex<Option<Arc<Cancel>>>,
    /// The signal that cancelled the last statement (0: none).
    signal: AtomicI32,
    /// At a prompt, an idle SIGINT is left to the prompt; in a script it ends the process.
    interactive: AtomicBool,
    shutting_down: AtomicBool,
}

impl Interrupts {
    /// Installs the handlers (inside the runtime). Handlers that cannot be installed leave the
    /// default behaviour (the process ends on the signal), which is still correct.
    pub fn install(interactive: bool) -> Self {
        let inner = Arc::new(Inner {
            running: Mutex::new(None),
            signal: AtomicI32::new(0),
            interactive: AtomicBool::new(interactive),
            shutting_down: AtomicBool::new(false),
        });
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                let inner = inner.clone();
                tokio::spawn(async move {
                    loop {
                        let sig = tokio::select! {
                            Some(()) = int.recv() => SIGINT,
                            Some(()) = term.recv() => SIGTERM,
                            else => return,
                        };
                        inner.on_signal(sig);
                    }
                });
            }
        }
        Self { inner }
    }

    /// Registers a running statement; it stays registered until the guard is dropped.
    pub fn statement(&self) -> StatementGuard {
        let cancel = Arc::new(Cancel::default());
        self.inner.signal.store(0, Ordering::SeqCst);
        *self.inner.running.lock().expect("not poisoned") = Some(cancel.clone());
        StatementGuard {
            inner: self.inner.clone(),
            cancel,
        }
    }

    /// The signal that cancelled the last statement, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// From now on any signal ends the process at once.
    pub fn shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }
}

impl Inner {
    fn on_signal(&self, sig: i32) {
        if self.shutting_down.load(Ordering::SeqCst) {
            self.exit_now(sig);
        }
        let running = self.running.lock().expect("not poisoned").clone();
        match running {
            Some(cancel) if !cancel.is_cancelled() => {
                self.signal.store(sig, Ordering::SeqCst);
                cancel.cancel();
            }
            // A second signal while the statement is still stopping.
            Some(_) => self.exit_now(sig),
            None if sig == SIGINT && self.interactive.load(Ordering::SeqCst) => {}
            None => self.exit_now(sig),
        }
    }

    fn exit_now(&self, sig: i32) -> ! {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            // Whatever the progress line showed goes.
            eprint!("\r\x1b[2K");
        }
        std::process::exit(128 + sig)
    }
}

/// A registered statement: its flag, unregistered on drop.
pub struct StatementGuard {
    inner: Arc<Inner>,
    cancel: Arc<Cancel>,
}

impl StatementGuard {
    pub fn cancel(&self) -> &Arc<Cancel> {
        &self.cancel
    }
}

impl Drop for StatementGuard {
    fn drop(&mut self) {
        let mut running = self.inner.running.lock().expect("not poisoned");
        if running
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &self.cancel))
        {
            *running = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancelled_flag_wakes_its_waiter() {
        let cancel = Arc::new(Cancel::default());
        let waiter = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        });
        tokio::task::yield_now().await;
        cancel.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
