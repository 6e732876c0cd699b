//! Static composition: plugs the validator component into a component that imports its
//! interfaces (the models function), so that one self-contained `.wasm` runs unchanged on Spin,
//! under `wasmtime serve` and under the embedded host; none of them has to link components at
//! load time. `wac-graph` (the library behind `wac plug`) does the work.

use std::path::Path;

use anyhow::Context;
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// The socket's imports satisfied by the plugs' exports; every other import (WASI) stays an
/// import of the result, and the result exports what the socket exports.
pub fn compose(socket: &[u8], plugs: &[Vec<u8>]) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes("exposr:socket", None, socket.to_vec(), graph.types_mut())
        .context("the socket is not a component")?;
    let socket = graph.register_package(package)?;
    let mut ids = Vec::new();
    for (i, bytes) in plugs.iter().enumerate() {
        let package = Package::from_bytes(
            &format!("exposr:plug{i}"),
            None,
            bytes.clone(),
            graph.types_mut(),
        )
        .with_context(|| format!("plug {i} is not a component"))?;
        ids.push(graph.register_package(package)?);
    }
    wac_graph::plug(&mut graph, ids, socket).context("plugging the components together")?;
    Ok(graph.encode(EncodeOptions::default())?)
}

/// [`compose`] over files; writes `out` atomically (a temporary file, then a rename).
pub fn compose_files(
    socket: &Path,
    plugs: &[std::path::PathBuf],
    out: &Path,
) -> anyhow::Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let socket_bytes = read(socket)?;
    let plug_bytes = plugs
        .iter()
        .map(|p| read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bytes = compose(&socket_bytes, &plug_bytes)
        .with_context(|| format!("composing {}", socket.display()))?;
    let tmp = out.with_extension("wasm.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
