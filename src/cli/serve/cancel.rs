//! Cancel requests (`pg_cancel_backend`, psql's Ctrl-C, psycopg's `cancel()`) for the whole of
//! a statement. pgwire races the query handler against the request only until the handler
//! returns its response; the rows are streamed afterwards, and for a scan of Dataverse that is
//! where the time goes. So each statement also gets a [`Cancel`] registered under its
//! connection's (process id, secret key), and its row stream ends with `57014` once a request
//! with that key arrives. Dropping the stream stops the scan's requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::ConnectionManager;
use datafusion_postgres::pgwire::api::cancel::CancelHandler;
use datafusion_postgres::pgwire::api::results::{QueryResponse, Response};
use datafusion_postgres::pgwire::error::PgWireError;
use datafusion_postgres::pgwire::messages::cancel::CancelRequest;
use futures::StreamExt;

use crate::cli::cancel::Cancel;

/// A connection's key in cancel requests.
pub type BackendKey = (i32, Vec<u8>);

/// The running statements of every connection, by key; shared by all connections (a cancel
/// request arrives on a connection of its own).
#[derive(Default)]
pub struct Statements {
    running: Mutex<HashMap<BackendKey, Arc<Cancel>>>,
}

impl Statements {
    /// Starts a statement on connection `key`: a cancel request from now on stops it.
    pub fn start(&self, key: BackendKey) -> Arc<Cancel> {
        let cancel = Arc::new(Cancel::default());
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, cancel.clone());
        cancel
    }

    /// The connection is gone.
    pub fn forget(&self, key: &BackendKey) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn cancel(&self, key: &BackendKey) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cancel) = running.get(key) {
            cancel.cancel();
        }
    }
}

/// Handles cancel requests: the planning phase through pgwire's connection manager, the rows
/// through [`Statements`].
pub struct ServeCancel {
    pub manager: Arc<ConnectionManager>,
    pub statements: Arc<Statements>,
}

#[async_trait]
impl CancelHandler for ServeCancel {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.statements
            .cancel(&(request.pid, request.secret_key.to_bytes().to_vec()));
        self.manager.cancel(request.pid, &request.secret_key).await;
    }
}

/// `response` with its rows stopped by `cancel`: the stream then ends with `57014`.
pub fn cancellable(response: Response, cancel: Arc<Cancel>) -> Response {
    let Response::Query(mut query) = response else {
        return response;
    };
    let fields = query.row_schema();
    let tag = query.command_tag().to_string();
    let rows = std::mem::replace(query.data_rows(), Box::pin(futures::stream::empty()));
    let stream = futures::stream::unfold(Some((rows, cancel)), |state| async move {
        let (mut rows, cancel) = state?;
        tokio::select! {
            biased;
            () = cancel.cancelled() => Some((Err(PgWireError::QueryCanceled), None)),
            row = rows.next() => row.map(|row| (row, Some((rows, cancel)))),
        }
    });
    let mut wrapped = QueryResponse::new(fields, stream);
    wrapped.set_command_tag(&tag);
    Response::Query(wrapped)
}
