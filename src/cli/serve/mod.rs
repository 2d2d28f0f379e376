//! `dvsql serve`: the environment over the Postgres wire protocol (ARCHITECTURE.md: "Serve
//! contract"), for BI tools and drivers that speak Postgres.
//!
//! Built on `datafusion-postgres` (pgwire underneath): it plans with DataFusion, maps Arrow
//! types to Postgres ones, answers the `pg_catalog` / `information_schema` queries of psql,
//! DBeaver and Metabase, and handles the simple and extended protocols. dvsql adds the parts
//! that are its own: each connection gets a session of its own (as at the prompt, so `SET`
//! stays with it), [`guard`] keeps the server read-only and loads `table_changes` metadata,
//! [`copy`] answers `COPY … TO STDOUT`, [`cancel`] stops a statement while its rows stream,
//! [`errors`] gives errors their SQLSTATE, [`auth`] checks the password with SCRAM, and TLS is
//! optional.

pub mod auth;
pub mod cancel;
pub mod copy;
pub mod errors;
pub mod guard;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use datafusion_dataverse::Dataverse;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::ScramAuth;
use datafusion_postgres::pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use datafusion_postgres::pgwire::api::portal::Portal;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::tokio::process_socket;
use datafusion_postgres::pgwire::tokio::tokio_rustls::TlsAcceptor;
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls;
use datafusion_postgres::{DfSessionService, QueryHook};
use tokio::net::TcpListener;

use cancel::{BackendKey, ServeCancel, Statements};

/// What `dvsql serve` was asked for.
pub struct ServeOptions {
    pub listen: String,
    pub password: Option<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub quiet: bool,
}

/// What every connection shares.
struct Shared {
    /// The environments, the first the default catalog.
    environments: Vec<Dataverse>,
    scram: Option<Arc<auth::SaltedPassword>>,
    manager: Arc<ConnectionManager>,
    statements: Arc<Statements>,
}

/// The address to listen on, refused when it is not one or when it reaches beyond this
/// machine without a password. Checked before connecting to any environment.
pub fn listen_address(listen: &str, has_password: bool) -> Result<SocketAddr, String> {
    let address: SocketAddr = listen.parse().map_err(|_| {
        format!("--listen {listen:?} is not an address and port such as 127.0.0.1:5433")
    })?;
    if !address.ip().is_loopback() && !has_password {
        return Err(format!(
            "--listen {address} accepts connections from other machines, so it needs a password: \
             set {} or give --password-file",
            auth::PASSWORD_VARIABLE
        ));
    }
    Ok(address)
}

/// Listens and serves until the process is stopped.
pub async fn serve(environments: Vec<Dataverse>, options: ServeOptions) -> Result<(), String> {
    let address = listen_address(&options.listen, options.password.is_some())?;
    let tls = match &options.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    // Fails now rather than at the first connection (two environments of one name).
    session_context(&environments)?;
    let shared = Arc::new(Shared {
        environments,
        scram: options
            .password
            .as_deref()
            .map(|p| Arc::new(auth::SaltedPassword::new(p))),
        manager: Arc::new(ConnectionManager::new()),
        statements: Arc::new(Statements::default()),
    });
    // The first line is what scripts and tests wait for.
    println!(
        "dvsql serve: listening on {bound} ({}, {})",
        if shared.scram.is_some() {
            "password required"
        } else {
            "no password"
        },
        if tls.is_some() { "TLS" } else { "no TLS" }
    );
    if !options.quiet {
        println!(
            "  connect: psql -h {} -p {} -U dvsql{}",
            bound.ip(),
            bound.port(),
            if tls.is_some() {
                " 'sslmode=require'"
            } else {
                ""
            }
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait a little instead of spinning.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let connection = match Connection::new(shared) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    eprintln!("dvsql serve: connection from {peer} closed: {e}");
                    return;
                }
            };
            let _ = process_socket(socket, tls, Handlers(connection)).await;
        });
    }
}

/// The certificate chain and key, read once at start.
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    // The key's own error text could quote the file; say only which file failed.
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|_| format!("cannot read a PEM private key from {}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the TLS certificate and key do not fit together: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One client connection: its own session context, the shared environment.
struct Connection {
    shared: Arc<Shared>,
    service: Arc<DfSessionService>,
    startup: Arc<Startup>,
    /// The connection's cancel key, once a statement has run (to forget it at the end).
    key: Mutex<Option<BackendKey>>,
}

impl Connection {
    fn new(shared: Arc<Shared>) -> Result<Self, String> {
        let ctx = session_context(&shared.environments)?;
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            guard::hook(shared.environments[0].clone()),
            Arc::new(copy::CopyToStdout),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let service = Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx), hooks));
        let parameters = Arc::new(DefaultServerParameterProvider::default());
        let startup = match &shared.scram {
            Some(password) => Startup::Scram(
                SASLAuthStartupHandler::new(parameters)
                    .with_scram(ScramAuth::new(password.clone()))
                    .with_connection_manager(shared.manager.clone()),
            ),
            None => Startup::Trust(TrustStartup {
                manager: shared.manager.clone(),
            }),
        };
        Ok(Self {
            shared,
            service,
            startup: Arc::new(startup),
            key: Mutex::new(None),
        })
    }

    /// Registers the statement about to run for cancel requests.
    fn start_statement<C: ClientInfo>(&self, client: &C) -> Arc<crate::cli::cancel::Cancel> {
        let (pid, secret) = client.pid_and_secret_key();
        let key: BackendKey = (pid, secret.to_bytes().to_vec());
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
        self.shared.statements.start(key)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(key) = self.key.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.shared.statements.forget(&key);
        }
    }
}

/// A session like the prompt's ([`Dataverse::session_context_for`]) plus the `pg_catalog`
/// schema and the functions clients call while looking around.
fn session_context(environments: &[Dataverse]) -> Result<SessionContext, String> {
    let ctx =
        Dataverse::session_context_for(environments).map_err(|e| crate::cli::exec::one_line(&e))?;
    let catalog = ctx.state().config_options().catalog.default_catalog.clone();
    setup_pg_catalog(&ctx, &catalog, EmptyContextProvider)
        .map_err(|e| format!("cannot set up pg_catalog: {e}"))?;
    Ok(ctx)
}

/// Start-up without a password (loopback only).
struct TrustStartup {
    manager: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for TrustStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }
}

/// Password or not.
enum Startup {
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
    Trust(TrustStartup),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: datafusion_postgres::pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Scram(h) => h.on_startup(client, message).await,
            Startup::Trust(h) => h.on_startup(client, message).await,
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let cancel = self.start_statement(client);
        let responses =
            <DfSessionService as SimpleQueryHandler>::do_query(&self.service, client, query)
                .await?;
        Ok(responses
            .into_iter()
            .map(|r| cancel::cancellable(r, cancel.clone()))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = <DfSessionService as ExtendedQueryHandler>::QueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.service.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let cancel = self.start_statement(client);
        let response = <DfSessionService as ExtendedQueryHandler>::do_query(
            &self.service,
            client,
            portal,
            max_rows,
        )
        .await?;
        Ok(cancel::cancellable(response, cancel))
    }
}

/// The handlers pgwire asks a connection for.
struct Handlers(Arc<Connection>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.0.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::ErrorHandler> {
        Arc::new(errors::ServeErrors)
    }

    fn cancel_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::cancel::CancelHandler> {
        Arc::new(ServeCancel {
            manager: self.0.shared.manager.clone(),
            statements: self.0.shared.statements.clone(),
        })
    }
}
