//! `serve` and `compose`: the functions under the embedded WASI host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::cli::Global;

/// The bearer tokens the host hands to the components that declare them.
pub struct Tokens {
    /// The API token.
    pub api: Option<String>,
    /// The admin token.
    pub admin: Option<String>,
}

pub async fn serve(
    g: &Global,
    manifest: PathBuf,
    components: Option<PathBuf>,
    listen: SocketAddr,
    tokens: Tokens,
    limits: crate::serve::Limits,
) -> anyhow::Result<()> {
    let access = crate::serve::registry_access(&g.registry, std::env::vars())?;
    let opts = crate::serve::Options {
        manifest,
        components,
        registry: access.dir,
        listen,
        env: access.env,
        token: tokens.api,
        admin_token: tokens.admin,
        limits,
    };
    crate::serve::serve(opts, |addr| {
        println!("listening on http://{addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    })
    .await
}

pub fn compose(socket: &Path, plugs: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    crate::serve::compose::compose_files(socket, plugs, out)?;
    println!("{}", out.display());
    Ok(())
}
