//! Reading and writing safetensors files: host-side tensor data, dtype
//! conversion, validation with clear errors, atomic writes.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use half::{bf16, f16};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use wgrad_autograd::Device;
use wgrad_autograd::{DType, Tensor};

use super::CheckpointError;
use crate::state::StateDict;

/// safetensors' own limit on the JSON header.
const MAX_HEADER: u64 = 100_000_000;
/// Bytes of the little-endian header length that starts every file.
const LEN_BYTES: usize = 8;

/// Tensor data on the host in a dtype a file can hold and wgrad can convert.
#[derive(Clone, Debug)]
pub(crate) enum HostData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    U32(Vec<u32>),
    /// Also holds I32 files' data (exactly).
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl HostData {
    /// Decodes little-endian bytes; `None` for a dtype wgrad does not take.
    fn decode(dtype: Dtype, bytes: &[u8]) -> Option<HostData> {
        fn le<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            bytes.chunks_exact(N).map(|c| f(c.try_into().expect("chunks_exact gives N bytes"))).collect()
        }
        Some(match dtype {
            Dtype::F32 => HostData::F32(le(bytes, f32::from_le_bytes)),
            // bf16 is the top half of an f32, so widening is exact.
            Dtype::BF16 => HostData::F32(le(bytes, |b| bf16::from_le_bytes(b).to_f32())),
            Dtype::F16 => HostData::F16(le(bytes, f16::from_le_bytes)),
            Dtype::U32 => HostData::U32(le(bytes, u32::from_le_bytes)),
            Dtype::I64 => HostData::I64(le(bytes, i64::from_le_bytes)),
            Dtype::I32 => HostData::I64(le(bytes, |b| i32::from_le_bytes(b) as i64)),
            Dtype::F64 => HostData::F64(le(bytes, f64::from_le_bytes)),
            _ => return None,
        })
    }

    /// Copies a device tensor's elements to the host.
    pub(crate) fn read(t: &Tensor) -> wgrad_autograd::Result<HostData> {
        Ok(match t.dtype() {
            DType::F32 => HostData::F32(t.try_to_vec()?),
            DType::F16 => HostData::F16(t.to_vec_f16()),
            DType::U32 => HostData::U32(t.to_vec_u32()),
        })
    }

    /// The dtype [`load_state_dict`] gives this data: its own where wgrad has
    /// it, F32 for the converted ones.
    fn natural_dtype(&self) -> DType {
        match self {
            HostData::F16(_) => DType::F16,
            HostData::U32(_) => DType::U32,
            HostData::F32(_) | HostData::I64(_) | HostData::F64(_) => DType::F32,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            HostData::F32(_) => "F32",
            HostData::F16(_) => "F16",
            HostData::U32(_) => "U32",
            HostData::I64(_) => "I64",
            HostData::F64(_) => "F64",
        }
    }

    fn to_f32(&self) -> Vec<f32> {
        match self {
            HostData::F32(v) => v.clone(),
            HostData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HostData::U32(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Uploads as `dtype` (PyTorch `copy_` semantics: numeric conversion),
    /// refusing only conversions that would invent integers: floats into U32
    /// and integers outside U32's range. `Err(msg)` says why.
    pub(crate) fn upload(&self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor, String> {
        let tensor = match (dtype, self) {
            (DType::F32, d) => Tensor::try_from_vec(&d.to_f32(), shape, device),
            (DType::F16, HostData::F16(v)) => Tensor::try_from_f16(v, shape, device),
            (DType::F16, HostData::F64(v)) => {
                Tensor::try_from_f16(&v.iter().map(|&x| f16::from_f64(x)).collect::<Vec<_>>(), shape, device)
            }
            (DType::F16, d) => {
                Tensor::try_from_f16(&d.to_f32().into_iter().map(f16::from_f32).collect::<Vec<_>>(), shape, device)
            }
            (DType::U32, HostData::U32(v)) => Tensor::try_from_u32(v, shape, device),
            (DType::U32, HostData::I64(v)) => {
                let out: Result<Vec<u32>, String> = v
                    .iter()
                    .map(|&x| u32::try_from(x).map_err(|_| format!("value {x} does not fit the model's U32 tensor")))
                    .collect();
                Tensor::try_from_u32(&out?, shape, device)
            }
            (DType::U32, d) => return Err(format!("{} data cannot be loaded into a U32 tensor", d.name())),
        };
        tensor.map_err(|e| e.to_string())
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            HostData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// One tensor of a file, on the host.
#[derive(Clone, Debug)]
pub(crate) struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

/// A file's tensors (by name) and `__metadata__`, validated.
pub(crate) struct HostFile {
    pub tensors: BTreeMap<String, HostTensor>,
    pub meta: BTreeMap<String, String>,
}

fn not_safetensors(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::NotSafetensors { path: path.to_path_buf(), reason: reason.into() }
}

/// Reads and validates a whole file.
pub(crate) fn read_file(path: &Path) -> Result<HostFile, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::io(path, "reading", e))?;
    parse(path, &bytes)
}

/// Validates `bytes` in the order a reader meets problems, so the message
/// names the first thing that is wrong rather than a downstream symptom.
fn parse(path: &Path, bytes: &[u8]) -> Result<HostFile, CheckpointError> {
    let len = bytes.len();
    let Some(len_field) = bytes.get(..LEN_BYTES) else {
        return Err(not_safetensors(
            path,
            format!("the file has {len} bytes, fewer than the 8-byte header length every safetensors file starts with"),
        ));
    };
    let n = u64::from_le_bytes(len_field.try_into().expect("8 bytes"));
    let after = (len - LEN_BYTES) as u64;
    if n > MAX_HEADER {
        return Err(not_safetensors(
            path,
            format!("wrong header length: the first 8 bytes say {n}, over safetensors' {MAX_HEADER}-byte limit"),
        ));
    }
    if n > after {
        return Err(not_safetensors(
            path,
            format!(
                "wrong header length: the first 8 bytes say {n} but only {after} bytes follow (or the file is cut inside its header)"
            ),
        ));
    }
    let header = &bytes[LEN_BYTES..LEN_BYTES + n as usize];
    let metadata = match SafeTensors::read_metadata(bytes) {
        Ok((_, m)) => m,
        Err(SafeTensorError::InvalidHeader(e)) => {
            return Err(not_safetensors(path, format!("the header is not UTF-8 text: {e}")))
        }
        Err(SafeTensorError::InvalidHeaderDeserialization(e)) => {
            return Err(not_safetensors(path, format!("the header is not safetensors JSON: {e}")))
        }
        Err(SafeTensorError::MetadataIncompleteBuffer) => {
            // The header parsed; only the data length disagrees with it.
            let expected = serde_json::from_slice::<Metadata>(header).map(|m| m.data_len()).unwrap_or(0);
            let actual = len - LEN_BYTES - n as usize;
            return Err(if actual < expected {
                CheckpointError::Truncated { path: path.to_path_buf(), expected, actual }
            } else {
                not_safetensors(path, format!("{} bytes of stray data follow the last tensor", actual - expected))
            });
        }
        Err(SafeTensorError::InvalidOffset(name)) => {
            return Err(not_safetensors(
                path,
                format!("tensor {name:?}'s data offsets do not continue where the previous tensor ends"),
            ))
        }
        Err(SafeTensorError::TensorInvalidInfo) => {
            return Err(not_safetensors(path, "a tensor's byte range does not match its shape and dtype"))
        }
        Err(e) => return Err(not_safetensors(path, format!("invalid header: {e}"))),
    };
    let data = &bytes[LEN_BYTES + n as usize..];
    let mut tensors = BTreeMap::new();
    for (name, info) in metadata.tensors() {
        // safetensors checks the element count, which a zero size keeps
        // small; the other sizes still multiply into the strides.
        if info.shape.iter().filter(|&&d| d != 0).try_fold(1usize, |n, &d| n.checked_mul(d)).is_none() {
            return Err(CheckpointError::invalid(
                path,
                format!("tensor {name:?} has shape {:?}, whose sizes multiply past 2^64", info.shape),
            ));
        }
        let (start, end) = info.data_offsets;
        let Some(host) = HostData::decode(info.dtype, &data[start..end]) else {
            return Err(CheckpointError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: name,
                dtype: format!("{:?}", info.dtype),
            });
        };
        tensors.insert(name, HostTensor { shape: info.shape.clone(), data: host });
    }
    let meta = metadata.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok(HostFile { tensors, meta })
}

/// Loads every tensor of a safetensors file onto `device`, with the file's
/// `__metadata__` as [`StateDict::meta`].
///
/// F32, F16 and U32 tensors keep their dtype; F64, BF16, I64 and I32 become
/// F32 (see the [module docs](super)). Errors name the path and what is
/// wrong: I/O, not safetensors, truncated, unsupported dtype (naming the
/// tensor), device upload.
pub fn load_state_dict(path: impl AsRef<Path>, device: &Device) -> Result<StateDict, CheckpointError> {
    let path = path.as_ref();
    let file = read_file(path)?;
    let mut state = StateDict { tensors: BTreeMap::new(), meta: file.meta };
    for (name, t) in file.tensors {
        let tensor = t
            .data
            .upload(&t.shape, t.data.natural_dtype(), device)
            .map_err(|msg| CheckpointError::invalid(path, format!("tensor {name:?}: {msg}")))?;
        state.tensors.insert(name, tensor);
    }
    Ok(state)
}

/// Saves `state` to `path` atomically: [`write_temp`] then
/// [`PendingSave::commit`]. A crash at any moment leaves either the previous
/// file or the new one at `path`.
pub fn save_state_dict(path: impl AsRef<Path>, state: &StateDict) -> Result<(), CheckpointError> {
    write_temp(path, state)?.commit()
}

/// A checkpoint fully written and synced to a temporary file beside its
/// target, not yet in place.
///
/// [`commit`](Self::commit) renames it over the target. Dropping it without
/// committing deletes the temporary (an abandoned save); if the process dies
/// instead, the target is untouched and only the temporary is left behind.
/// Splitting the two steps lets tests stop a save between them.
#[derive(Debug)]
pub struct PendingSave {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PendingSave {
    /// The temporary file holding the new checkpoint.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The file the checkpoint will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the temporary over the target (atomic on POSIX and Windows
    /// file systems), then syncs the directory on Unix so the rename is durable.
    pub fn commit(mut self) -> Result<(), CheckpointError> {
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| CheckpointError::io(&self.target, "renaming the temporary file over it", e))?;
        self.committed = true;
        #[cfg(unix)]
        {
            let dir = directory_of(&self.target);
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| CheckpointError::io(dir, "syncing the directory after the rename", e))?;
        }
        remove_stale_temporaries(&self.target);
        Ok(())
    }
}

impl Drop for PendingSave {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the temporary is garbage either way.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Deletes the temporaries that killed writers left beside `target`
/// (`.<name>.<pid>.<n>.tmp` of a process that no longer runs), once a save
/// has put a complete checkpoint in place. Best effort: a file that cannot
/// be read or removed is left alone. Where the system cannot tell whether a
/// process runs (no `/proc`), only temporaries untouched for a day go.
fn remove_stale_temporaries(target: &Path) {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let Ok(entries) = std::fs::read_dir(directory_of(target)) else { return };
    let prefix = format!(".{name}.");
    let has_proc = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".tmp")) else { continue };
        let Some(Ok(pid)) = rest.split_once('.').map(|(pid, _)| pid.parse::<u32>()) else { continue };
        let stale = if pid == std::process::id() {
            false // a save of this process may be under way
        } else if has_proc {
            !Path::new("/proc").join(pid.to_string()).exists()
        } else {
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            age.is_some_and(|a| a.as_secs() > 24 * 3600)
        };
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Creates a temporary file no other save (this process or another) uses.
fn create_temp(target: &Path) -> Result<(File, PathBuf), CheckpointError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .ok_or_else(|| CheckpointError::invalid(target, "the path does not name a file"))?
        .to_string_lossy()
        .into_owned();
    let dir = directory_of(target);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(f) => return Ok((f, temp)),
            // A stale temporary of a crashed process with our pid: skip it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CheckpointError::io(&temp, "creating the temporary file", e)),
        }
    }
}

fn file_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::U32 => Dtype::U32,
    }
}

/// Writes `state` as a safetensors file to a fresh temporary beside `path`
/// and syncs it to disk; the first half of [`save_state_dict`].
///
/// The header is built from shapes and dtypes alone, then tensors are read
/// back from the device and written one at a time.
pub fn write_temp(path: impl AsRef<Path>, state: &StateDict) -> Result<PendingSave, CheckpointError> {
    let target = path.as_ref();
    if state.tensors.contains_key("__metadata__") {
        return Err(CheckpointError::invalid(
            target,
            "`__metadata__` is reserved by safetensors and cannot name a tensor",
        ));
    }
    // safetensors' order: descending alignment, then name.
    let mut order: Vec<(&String, &Tensor, Dtype)> =
        state.tensors.iter().map(|(k, t)| (k, t, file_dtype(t.dtype()))).collect();
    order.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    let mut offset = 0;
    let mut infos = Vec::with_capacity(order.len());
    for (name, t, dtype) in &order {
        let bytes = t.numel() * t.dtype().size();
        infos.push((
            (*name).clone(),
            TensorInfo { dtype: *dtype, shape: t.shape().to_vec(), data_offsets: (offset, offset + bytes) },
        ));
        offset += bytes;
    }
    let meta: Option<HashMap<String, String>> =
        (!state.meta.is_empty()).then(|| state.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let header = Metadata::new(meta, infos)
        .and_then(|m| serde_json::to_vec(&m).map_err(SafeTensorError::from))
        .map_err(|e| CheckpointError::invalid(target, format!("cannot build the safetensors header: {e}")))?;
    let mut header = header;
    header.resize(header.len().next_multiple_of(LEN_BYTES), b' ');
    if header.len() as u64 > MAX_HEADER {
        return Err(CheckpointError::invalid(
            target,
            "the header (names, shapes, metadata) exceeds safetensors' 100 MB limit",
        ));
    }

    let (file, temp) = create_temp(target)?;
    // From here on, dropping `pending` on an error removes the temporary.
    let pending = PendingSave { temp, target: target.to_path_buf(), committed: false };
    let werr = |e| CheckpointError::io(&pending.temp, "writing the temporary file", e);
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&(header.len() as u64).to_le_bytes()).map_err(werr)?;
    w.write_all(&header).map_err(werr)?;
    for (name, t, _) in &order {
        let host = HostData::read(t).map_err(|e| CheckpointError::State {
            context: format!("{}: reading tensor {name:?} from the device", target.display()),
            source: e,
        })?;
        w.write_all(&host.to_le_bytes()).map_err(werr)?;
    }
    let file = w.into_inner().map_err(|e| werr(e.into_error()))?;
    file.sync_all().map_err(|e| CheckpointError::io(&pending.temp, "syncing the temporary file", e))?;
    Ok(pending)
}
