use anyhow::Context as _;
use clap::Parser as _;
use openhive_server::cli::{Cli, Command};
use openhive_server::config::Config;

/// mimalloc for every allocation: Rust's here, C's (SQLite) through its `override` feature
/// (ARCHITECTURE.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    openhive_server::heap_trim::configure_allocator();
    // Before any HTTP client is built (reqwest's TLS needs a process-wide crypto provider).
    openhive_sync::client::install_crypto_provider();
    let cli = Cli::parse();
    // The demo draws a live status line: keep its logs to warnings unless RUST_LOG says more,
    // and leave out the retried handshakes of its own staggered setup.
    let default_level = match cli.command {
        Command::Demo(_) => "warn,openhive_sync::link=error",
        Command::Serve(_) => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::load(args.config.as_deref(), &args.overrides())
                .context("loading configuration")?;
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(serve(config))
        }
        Command::Demo(args) => {
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(openhive_server::demo::run(openhive::open_store, args.hub))
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Install the handlers before anything is announced, so a signal sent as soon as the
    // address is logged is never lost to the default action.
    let shutdown = ShutdownSignal::install().context("installing signal handlers")?;
    let running = openhive::start(config)
        .await
        .context("starting the server")?;
    tracing::info!("OpenHive listening on http://{}", running.addr);
    shutdown.recv().await;
    tracing::info!("shutting down");
    running.shutdown().await.context("shutting down")?;
    Ok(())
}

/// SIGINT or SIGTERM.
struct ShutdownSignal {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignal {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(ShutdownSignal {})
    }

    #[cfg(unix)]
    async fn recv(mut self) {
        tokio::select! {
            _ = self.int.recv() => {},
            _ = self.term.recv() => {},
        }
    }

    #[cfg(not(unix))]
    async fn recv(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
