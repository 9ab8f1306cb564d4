//! The portal's files as shipped: each named by its content's hash (so the server can let
//! browsers cache it for good, `crates/server/src/lib.rs`, `app_with_portal`) and precompressed
//! with brotli and gzip (so the server sends the smaller one the browser accepts, without
//! compressing on every request).

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Failure, Result};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
}

fn write(path: &Path, bytes: &[u8]) -> Result {
    std::fs::write(path, bytes)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

/// The first 16 hex digits of the SHA-256 of `bytes`: the server's `is_content_hashed` form.
pub(crate) fn hash(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Renames wasm-bindgen's `NAME_bg.wasm` and `NAME.js` in `out` to `NAME-<hash>_bg.wasm` and
/// `NAME-<hash>.js`, the glue pointing at the renamed module; returns the glue's new name.
pub(crate) fn hash_module(out: &Path, name: &str) -> Result<String> {
    let wasm_path = out.join(format!("{name}_bg.wasm"));
    let wasm = read(&wasm_path)?;
    let wasm_name = format!("{name}-{}_bg.wasm", hash(&wasm));
    std::fs::rename(&wasm_path, out.join(&wasm_name))
        .map_err(|e| Failure(format!("cannot rename {}: {e}", wasm_path.display())))?;
    let js_path = out.join(format!("{name}.js"));
    let js = String::from_utf8(read(&js_path)?)
        .map_err(|_| Failure(format!("{} is not UTF-8", js_path.display())))?;
    // wasm-bindgen's `--target web` glue finds its module as `new URL('NAME_bg.wasm', ...)`
    // (with double quotes after terser).
    let old = format!("{name}_bg.wasm");
    if js.matches(&old).count() != 1 {
        return Err(Failure(format!(
            "{} does not name {old} exactly once: the wasm-bindgen glue changed form; see xtask/src/ship.rs",
            js_path.display()
        )));
    }
    let js = js.replace(&old, &wasm_name);
    let js_name = format!("{name}-{}.js", hash(js.as_bytes()));
    write(&out.join(&js_name), js.as_bytes())?;
    std::fs::remove_file(&js_path)
        .map_err(|e| Failure(format!("cannot remove {}: {e}", js_path.display())))?;
    Ok(js_name)
}

/// Copies `from` into `out` as `STEM-<hash>.EXT`; returns that name.
pub(crate) fn hash_copy(from: &Path, out: &Path, stem: &str, ext: &str) -> Result<String> {
    let bytes = read(from)?;
    let name = format!("{stem}-{}.{ext}", hash(&bytes));
    write(&out.join(&name), &bytes)?;
    Ok(name)
}

/// Writes `FILE.br` (brotli, best quality) and `FILE.gz` (gzip, level 9) beside every file in
/// `out` and its folders (wasm-bindgen's `snippets/`) that is not one already.
pub(crate) fn precompress(out: &Path) -> Result {
    let entries = std::fs::read_dir(out)
        .map_err(|e| Failure(format!("cannot list {}: {e}", out.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            precompress(&path)?;
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_file() || name.ends_with(".br") || name.ends_with(".gz") {
            continue;
        }
        let bytes = read(&path)?;
        let mut br = Vec::new();
        {
            let params = brotli::enc::BrotliEncoderParams {
                quality: 11,
                lgwin: 22,
                ..Default::default()
            };
            brotli::BrotliCompress(&mut bytes.as_slice(), &mut br, &params)
                .map_err(|e| Failure(format!("brotli {}: {e}", path.display())))?;
        }
        write(&out.join(format!("{name}.br")), &br)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes)
            .map_err(|e| Failure(format!("gzip {}: {e}", path.display())))?;
        let gz = gz
            .finish()
            .map_err(|e| Failure(format!("gzip {}: {e}", path.display())))?;
        write(&out.join(format!("{name}.gz")), &gz)?;
    }
    Ok(())
}

/// Sizes of a shipped file: as built, and its precompressed brotli and gzip forms (0 if absent).
pub(crate) fn sizes(path: &Path) -> (u64, u64, u64) {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let with = |ext: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(ext);
        len(Path::new(&s))
    };
    (len(path), with(".br"), with(".gz"))
}

/// The file in `dir` named `STEM-<hash>SUFFIX` (after [`hash_module`]).
pub(crate) fn find(dir: &Path, stem: &str, suffix: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&format!("{stem}-")))
                .and_then(|n| n.strip_suffix(suffix))
                .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
}
