//! The kernel sources and their compilation with NVRTC.
//!
//! Every `.cu` file under `kernels/` is compiled straight to a CUBIN for
//! the device's own architecture (`sm_XY`), so the driver loads machine
//! code and never has to JIT PTX newer than itself. Each image is made once
//! per process and also kept on disk ([`kernel_cache_dir`]), checked
//! against its source, options and NVRTC release before it is used again:
//! compiling `cells.cu` takes seconds, which every run would otherwise pay
//! before its first step; the folder keeps the 4 images of each source and
//! architecture used last. Options: `--fmad=false`
//! (every `a*b+c` rounds twice, as the CPU reference computes it; the
//! pointwise kernels are memory-bound, so fused multiply-adds would buy
//! nothing) and precise division and square roots (NVRTC's default).
//!
//! This part needs only libnvrtc, no GPU and no driver: the CI test
//! `tests/cuda_nvrtc.rs` compiles every file for sm_80 and sm_90 and
//! requires an empty log (no warnings).

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::nvrtc::{result, sys};

use super::CudaError;

/// One kernel source file and the kernels the Rust side launches from it.
#[derive(Debug)]
pub struct Source {
    /// File name under `trainer/src/cuda/kernels/`.
    pub name: &'static str,
    /// The CUDA C++ source.
    pub code: &'static str,
    /// `extern "C"` kernels it must define.
    pub kernels: &'static [&'static str],
}

/// Recurrent cells: pointwise steps, and whole sequences in one cooperative launch.
pub const CELLS: Source = Source {
    name: "cells.cu",
    code: include_str!("kernels/cells.cu"),
    kernels: &[
        "lstm_forward",
        "lstm_backward",
        "gru_forward",
        "gru_backward",
        "lstm_forward_seq",
        "lstm_backward_seq",
        "gru_forward_seq",
        "gru_backward_seq",
    ],
};

/// Gather, biases, dropout, table gradient.
pub const LAYERS: Source = Source {
    name: "layers.cu",
    code: include_str!("kernels/layers.cu"),
    kernels: &[
        "embed_forward",
        "add_bias",
        "dropout_forward",
        "mul_inplace",
        "table_backward",
    ],
};

/// Softmax cross-entropy and the loss reduction.
pub const LOSS: Source = Source {
    name: "loss.cu",
    code: include_str!("kernels/loss.cu"),
    kernels: &["softmax_xent", "sum_f64"],
};

/// Gradient norm, Adam, RMSprop.
pub const OPTIM: Source = Source {
    name: "optim.cu",
    code: include_str!("kernels/optim.cu"),
    kernels: &[
        "sumsq_partials",
        "clip_coef",
        "guard",
        "adam_step",
        "rmsprop_step",
    ],
};

/// Every kernel source.
pub const SOURCES: [&Source; 4] = [&CELLS, &LAYERS, &LOSS, &OPTIM];

/// The NVRTC options for a real architecture, e.g. `sm_90`.
pub fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--fmad=false".into(),
        "--std=c++17".into(),
    ]
}

/// What NVRTC produced for one source.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Machine code for the architecture (CUBIN).
    pub cubin: Vec<u8>,
    /// The PTX it went through.
    pub ptx: String,
    /// NVRTC's log (warnings), trimmed; empty when clean.
    pub log: String,
}

/// True when libnvrtc can be loaded (never panics, unlike the first NVRTC call without it).
pub fn available() -> bool {
    // SAFETY: only tries to dlopen the candidate names.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's version (major, minor).
pub fn version() -> Result<(i32, i32), CudaError> {
    if !available() {
        return Err(CudaError::NoNvrtc);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| CudaError::Nvrtc {
            file: "-".into(),
            log: format!("nvrtcVersion: {e:?}"),
        })?;
    Ok((major, minor))
}

/// Compiles `src` for `arch` (`sm_80`, `sm_90`, ...).
pub fn compile(src: &Source, arch: &str) -> Result<Compiled, CudaError> {
    if !available() {
        return Err(CudaError::NoNvrtc);
    }
    let fail = |what: &str, log: String| CudaError::Nvrtc {
        file: src.name.to_string(),
        log: format!("{what}: {log}"),
    };
    let code = CString::new(src.code).map_err(|_| fail("source", "contains a NUL byte".into()))?;
    let name = CString::new(src.name).expect("file names have no NUL");
    let prog = result::create_program(&code, Some(&name))
        .map_err(|e| fail("nvrtcCreateProgram", format!("{e:?}")))?;
    // Destroys the program on every path out.
    struct Guard(sys::nvrtcProgram);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: created above, destroyed once.
            let _ = unsafe { result::destroy_program(self.0) };
        }
    }
    let guard = Guard(prog);
    let opts = options(arch);
    // SAFETY: `prog` is live (guard) and the options are valid C strings.
    let compiled = unsafe { result::compile_program(guard.0, &opts) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(guard.0) }
        .map(|raw| c_chars_to_string(&raw))
        .unwrap_or_default();
    if let Err(e) = compiled {
        return Err(fail(&format!("{e:?} with {}", opts.join(" ")), log));
    }
    // SAFETY: compiled successfully above.
    let ptx =
        unsafe { result::get_ptx(guard.0) }.map_err(|e| fail("nvrtcGetPTX", format!("{e:?}")))?;
    let mut size = 0usize;
    // SAFETY: valid program and out-pointer.
    unsafe { sys::nvrtcGetCUBINSize(guard.0, &mut size) }
        .result()
        .map_err(|e| fail("nvrtcGetCUBINSize", format!("{e:?}")))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: the buffer holds `size` bytes as NVRTC asked.
    unsafe { sys::nvrtcGetCUBIN(guard.0, cubin.as_mut_ptr() as *mut c_char) }
        .result()
        .map_err(|e| fail("nvrtcGetCUBIN", format!("{e:?}")))?;
    if cubin.is_empty() {
        return Err(fail("nvrtcGetCUBIN", format!("no machine code for {arch}")));
    }
    Ok(Compiled {
        cubin,
        ptx: c_chars_to_string(&ptx),
        log: log.trim().to_string(),
    })
}

fn c_chars_to_string(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .map(|&c| c.to_ne_bytes()[0])
        .take_while(|&b| b != 0)
        .collect();
    CStr::from_bytes_until_nul(&[bytes.as_slice(), &[0]].concat())
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where a kernel image came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Compiled by NVRTC in this call.
    Compiled,
    /// Read from the folder of images kept between runs.
    Disk,
}

/// What a kept image was compiled from: a file whose name (a hash of this)
/// matches but whose contents differ is recompiled rather than trusted.
#[derive(PartialEq, serde::Serialize, serde::Deserialize)]
struct KeptFrom {
    format: u32,
    name: String,
    arch: String,
    nvrtc: (i32, i32),
    options: Vec<String>,
    source: String,
}

/// One kept image, stored as postcard followed by a CRC-32 of those bytes
/// (a damaged file is recompiled too).
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    from: KeptFrom,
    cubin: Vec<u8>,
}

const KEPT_FORMAT: u32 = 1;
const KEPT_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
const NAME_CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// The folder that keeps compiled images between runs:
/// `$CHARLM_KERNEL_CACHE` (`off` for none), else
/// `$XDG_CACHE_HOME/charlm/kernels`, else `$HOME/.cache/charlm/kernels`.
pub fn kernel_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = env("CHARLM_KERNEL_CACHE") {
        return (d != "off").then(|| PathBuf::from(d));
    }
    env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("charlm").join("kernels"))
}

/// `src`'s machine code for `arch`: read from `dir` when a kept image
/// matches the source, options and NVRTC release exactly, else compiled and
/// kept there.
pub fn load_or_compile(
    src: &Source,
    arch: &str,
    dir: Option<&Path>,
) -> Result<(Vec<u8>, Origin), CudaError> {
    let from = KeptFrom {
        format: KEPT_FORMAT,
        name: src.name.to_string(),
        arch: arch.to_string(),
        nvrtc: version()?,
        options: options(arch),
        source: src.code.to_string(),
    };
    let file = dir.map(|d| {
        let key = postcard::to_stdvec(&from).unwrap_or_default();
        d.join(format!(
            "{}-{arch}-{:016x}.bin",
            src.name,
            NAME_CRC.checksum(&key)
        ))
    });
    if let Some(file) = file.as_deref()
        && let Some(kept) = read_kept(file)
        && kept.from == from
        && !kept.cubin.is_empty()
    {
        // Marks it used, for `prune` (best effort, as everything here).
        let _ = std::fs::File::options()
            .append(true)
            .open(file)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok((kept.cubin, Origin::Disk));
    }
    let kept = Kept {
        cubin: compile(src, arch)?.cubin,
        from,
    };
    if let Some(file) = file {
        // Best effort: a folder that cannot be written only costs the next
        // run the compilation.
        if write_kept(&file, &kept).is_ok() {
            prune(&file, &format!("{}-{arch}-", src.name));
        }
    }
    Ok((kept.cubin, Origin::Compiled))
}

/// Images kept per kernel source and architecture: the ones used last. A
/// new charlm release, another NVRTC or other options each make a new
/// image; two releases used in turn still find theirs.
pub const KEEP_PER_SOURCE: usize = 4;

/// Leftovers of a writer that died between writing and renaming are
/// removed once they are this old.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// After `file` was written: removes the images of the same source and
/// architecture (`prefix`) beyond the [`KEEP_PER_SOURCE`] used last (by
/// modification time, which a read refreshes), and their stale temporary
/// files. Best effort: whatever cannot be listed or removed stays.
fn prune(file: &Path, prefix: &str) {
    let Some(dir) = file.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut images = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(modified) = e.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if name.starts_with(prefix) && name.ends_with(".bin") {
            images.push((modified, e.path()));
        } else if name.starts_with(&format!(".{prefix}"))
            && name.ends_with(".tmp")
            && now
                .duration_since(modified)
                .is_ok_and(|age| age > STALE_TEMP)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    // Newest first; the image just written stays whatever the clock says.
    images.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    images.retain(|(_, p)| p != file);
    for (_, old) in images.iter().skip(KEEP_PER_SOURCE - 1) {
        let _ = std::fs::remove_file(old);
    }
}

fn read_kept(file: &Path) -> Option<Kept> {
    let bytes = std::fs::read(file).ok()?;
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if KEPT_CRC.checksum(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    postcard::from_bytes(body).ok()
}

/// Writes `kept` to a temporary file beside `file` and renames it into
/// place, so a reader never sees half a file.
fn write_kept(file: &Path, kept: &Kept) -> std::io::Result<()> {
    let mut bytes = postcard::to_stdvec(kept).map_err(std::io::Error::other)?;
    bytes.extend_from_slice(&KEPT_CRC.checksum(&bytes).to_le_bytes());
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // unique to this writer, also between threads of one process
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

type Cache = Mutex<HashMap<(&'static str, String), Arc<Vec<u8>>>>;

/// `src`'s machine code for `arch`, once per process
/// ([`load_or_compile`] with [`kernel_cache_dir`]).
pub fn cached(src: &'static Source, arch: &str) -> Result<Arc<Vec<u8>>, CudaError> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (src.name, arch.to_string());
    if let Some(c) = cache.lock().expect("nvrtc cache lock").get(&key) {
        return Ok(c.clone());
    }
    let (cubin, _) = load_or_compile(src, arch, kernel_cache_dir().as_deref())?;
    let c = Arc::new(cubin);
    cache
        .lock()
        .expect("nvrtc cache lock")
        .insert(key, c.clone());
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn touch(path: &Path, hours_ago: u64) {
        let f = std::fs::File::create(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(hours_ago * 3600))
            .unwrap();
    }

    #[test]
    fn prune_keeps_the_images_used_last_of_one_source_and_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        // The image just written has a clock-skewed, ancient time: it stays.
        let new = at("k-sm_80-new.bin");
        touch(&new, 100);
        for h in 1..=5 {
            touch(&at(&format!("k-sm_80-old{h}.bin")), h);
        }
        touch(&at("k-sm_90-other.bin"), 50);
        touch(&at("k2-sm_80-other.bin"), 50);
        touch(&at(".k-sm_80-a.bin.7.0.tmp"), 2);
        touch(&at(".k-sm_80-b.bin.7.1.tmp"), 0);
        prune(&new, "k-sm_80-");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".k-sm_80-b.bin.7.1.tmp",
                "k-sm_80-new.bin",
                "k-sm_80-old1.bin",
                "k-sm_80-old2.bin",
                "k-sm_80-old3.bin",
                "k-sm_90-other.bin",
                "k2-sm_80-other.bin",
            ]
        );
        assert_eq!(KEEP_PER_SOURCE, 4);
    }
}
