//! `serve` and `compose`: the functions under the embedded WASI host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::cli::Global;

pub async fn serve(
    g: &Global,
    manifest: PathBuf,
    components: Option<PathBuf>,
    listen: SocketAddr,
    token: Option<String>,
) -> anyhow::Result<()> {
    let access = crate::serve::registry_access(&g.registry, std::env::vars())?;
    let mut env = access.env;
    if let Some(t) = token {
        env.push(("EXPOSR_API_TOKEN".to_owned(), t));
    }
    let opts = crate::serve::Options {
        manifest,
        components,
        registry: access.dir,
        listen,
        env,
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
