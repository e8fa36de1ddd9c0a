//! Named f32 tensors in safetensors files: the byte form shared by model files,
//! checkpoints and initial weights.

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Named f32 tensors plus string metadata: the content of one safetensors file.
pub type NamedTensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Serialise named f32 tensors and metadata to safetensors bytes (see [`serialize`]).
pub fn to_safetensors_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let bytes = d.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), Dtype::F32, s.clone(), bytes)
        })
        .collect();
    serialize(&raw, metadata)
}

/// safetensors bytes of `(name, dtype, shape, little-endian data)` tensors and
/// metadata, deterministic: header keys (metadata included) and data in name order,
/// so the same content always gives the same bytes (the `safetensors` crate writes
/// metadata in hash-map order). Read back by the `safetensors` crate.
pub fn serialize(
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut order: Vec<&(String, Dtype, Vec<usize>, Vec<u8>)> = tensors.iter().collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    }
    let mut offset = 0usize;
    for (name, dtype, shape, data) in &order {
        let want = shape.iter().product::<usize>() * dtype.size();
        if data.len() != want {
            bail!("tensor {name}: {} bytes for shape {shape:?}", data.len());
        }
        let dtype = serde_json::to_value(dtype)?;
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()] }),
        );
        offset += data.len();
    }
    let mut head = serde_json::to_string(&header)?.into_bytes();
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for t in order {
        out.extend_from_slice(&t.3);
    }
    Ok(out)
}

/// TransformerLens's buffers (the attention mask, a bool tensor, and `IGNORE`): state,
/// not weights, so files saved by TransformerLens may hold them.
pub fn is_transformer_lens_buffer(name: &str) -> bool {
    name.ends_with(".mask") || name == "IGNORE" || name.ends_with(".IGNORE")
}

/// Parse safetensors bytes holding f32 tensors (TransformerLens's buffers are left out,
/// whatever their dtype).
pub fn from_safetensors_bytes(buf: &[u8]) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let st = SafeTensors::deserialize(buf)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if is_transformer_lens_buffer(&name) {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            bail!(
                "tensor {name} has dtype {:?}; bitgrok reads F32 tensors only",
                view.dtype()
            );
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), data));
    }
    let (_, header) = SafeTensors::read_metadata(buf)?;
    let meta = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((out, meta))
}

/// The most tensor data one model file may hold (1 GiB: a width-2048 model at
/// p = 1024 has about 0.2 GiB); a file claiming more is refused before it is read.
pub const MAX_TENSOR_BYTES: u64 = 1 << 30;
/// The longest header a safetensors file may have (the format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Read a safetensors file of f32 tensors. Its header is checked first (length,
/// JSON, tensor data that fills the rest of the file exactly and stays within
/// [`MAX_TENSOR_BYTES`]), so a damaged or hostile file costs no more memory than
/// its header.
pub fn read_safetensors(path: &Path) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    use std::io::Read;
    let shown = path.display();
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {shown}"))?;
    let len = f
        .metadata()
        .with_context(|| format!("reading {shown}"))?
        .len();
    let mut head = [0u8; 8];
    f.read_exact(&mut head)
        .with_context(|| format!("{shown} is not a safetensors file: shorter than 8 bytes"))?;
    let n = u64::from_le_bytes(head);
    if !(2..=MAX_HEADER_BYTES).contains(&n) || 8 + n > len {
        bail!(
            "{shown} is not a safetensors file: its header length {n} does not fit a \
             file of {len} bytes (allowed: 2 to {MAX_HEADER_BYTES})"
        );
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("reading {shown}"))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .with_context(|| format!("{shown} is not a safetensors file: unreadable header"))?;
    let data = len - 8 - n;
    let end = json
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.as_str() != "__metadata__")
                .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    if end != data {
        bail!("{shown}: its header describes {end} bytes of tensor data, the file holds {data}");
    }
    if data > MAX_TENSOR_BYTES {
        bail!(
            "{shown} holds {data} bytes of tensors; bitgrok reads model files of at most \
             {MAX_TENSOR_BYTES} bytes"
        );
    }
    let mut buf = Vec::with_capacity(len as usize);
    buf.extend_from_slice(&head);
    buf.extend_from_slice(&header);
    f.read_to_end(&mut buf)
        .with_context(|| format!("reading {shown}"))?;
    from_safetensors_bytes(&buf).with_context(|| format!("parsing {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_or_damaged_files_are_refused_from_their_header() {
        let t = tempfile::tempdir().unwrap();
        // A sparse 2 GiB file: zero header length, refused without reading it.
        let sparse = t.path().join("sparse.safetensors");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let err = read_safetensors(&sparse).unwrap_err().to_string();
        assert!(err.contains("not a safetensors file"), "{err}");
        // A valid header for a 2 GiB tensor over a sparse body: refused by size.
        let big = t.path().join("big.safetensors");
        let header = format!(
            "{{\"w\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[0,{}]}}}}",
            1u64 << 29,
            2u64 << 30
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        std::fs::write(&big, &bytes).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        f.set_len(bytes.len() as u64 + (2u64 << 30)).unwrap();
        let err = read_safetensors(&big).unwrap_err().to_string();
        assert!(err.contains("at most"), "{err}");
        // A header whose tensors do not fill the file.
        std::fs::File::options()
            .write(true)
            .open(&big)
            .unwrap()
            .set_len(bytes.len() as u64 + 12)
            .unwrap();
        let err = read_safetensors(&big).unwrap_err().to_string();
        assert!(err.contains("the file holds 12"), "{err}");
        // A good file still reads.
        let good = t.path().join("good.safetensors");
        let one = to_safetensors_bytes(
            &[("a".to_string(), vec![2], vec![1.0f32, 2.0])],
            &BTreeMap::new(),
        )
        .unwrap();
        std::fs::write(&good, one).unwrap();
        assert_eq!(read_safetensors(&good).unwrap().0["a"].1, vec![1.0, 2.0]);
    }

    #[test]
    fn the_same_content_gives_the_same_bytes_and_reads_back() {
        let meta: BTreeMap<String, String> =
            (0..20).map(|i| (format!("k{i}"), i.to_string())).collect();
        let a = ("a".to_string(), vec![2], vec![1.0f32, 2.0]);
        let b = ("b".to_string(), vec![1, 3], vec![3.0f32, 4.0, 5.0]);
        let one = to_safetensors_bytes(&[a.clone(), b.clone()], &meta).unwrap();
        let two = to_safetensors_bytes(&[b, a], &meta).unwrap();
        assert_eq!(one, two);
        let (t, m) = from_safetensors_bytes(&one).unwrap();
        assert_eq!(m, meta);
        assert_eq!(t["b"], (vec![1, 3], vec![3.0, 4.0, 5.0]));
        assert_eq!(t["a"], (vec![2], vec![1.0, 2.0]));
    }
}
