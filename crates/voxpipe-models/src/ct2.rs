//! Reader for CTranslate2's `model.bin` (binary version 6).
//!
//! Layout, little-endian: `u32` version, spec name (string), `u32` spec revision, `u32`
//! variable count, then per variable: name (string), `u8` rank, `u32` per dimension, `u8`
//! dtype, `u32` byte count, the data; then `u32` alias count and (alias, target) string pairs.
//! A string is a `u16` length (including a trailing NUL), the bytes, the NUL.

use std::collections::BTreeMap;

/// Element type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 8-bit integer (quantised weights).
    I8,
    /// 16-bit integer (scalars such as `num_heads`).
    I16,
    /// 32-bit integer.
    I32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One variable: its shape, type and raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Dimensions, outermost first (row-major, like PyTorch).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Raw data.
    pub data: Vec<u8>,
}

impl Variable {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of an integer scalar.
    pub fn as_int(&self) -> Option<i64> {
        match self.dtype {
            DType::I8 => self.data.first().map(|&b| b as i8 as i64),
            DType::I16 => self.data.get(..2).map(|b| i16::from_le_bytes([b[0], b[1]]) as i64),
            DType::I32 => self.data.get(..4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
            _ => None,
        }
    }
}

/// A parsed CTranslate2 model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ct2Model {
    /// Binary format version (6 is supported).
    pub version: u32,
    /// Spec name, e.g. `WhisperSpec`.
    pub spec: String,
    /// Spec revision.
    pub revision: u32,
    /// Variables by name.
    pub variables: BTreeMap<String, Variable>,
    /// Aliases: alias name → target name.
    pub aliases: BTreeMap<String, String>,
}

impl Ct2Model {
    /// Parses a whole `model.bin`. The error is a human-readable reason.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.u32()?;
        if version != 6 {
            return Err(format!("expected binary version 6, got {version}"));
        }
        let spec = r.string()?;
        let revision = r.u32()?;
        let count = r.u32()?;
        let mut variables = BTreeMap::new();
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()? as usize;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(r.u32()? as usize);
            }
            let code = r.u8()?;
            let dtype =
                DType::from_code(code).ok_or_else(|| format!("variable `{name}`: unknown dtype {code}"))?;
            let nbytes = r.u32()? as usize;
            let expected = shape.iter().product::<usize>() * dtype.size();
            if nbytes != expected {
                return Err(format!(
                    "variable `{name}`: expected {expected} bytes for shape {shape:?} {dtype:?}, got {nbytes}"
                ));
            }
            let data = r.take(nbytes)?.to_vec();
            variables.insert(name, Variable { shape, dtype, data });
        }
        let mut aliases = BTreeMap::new();
        if r.pos < bytes.len() {
            let n = r.u32()?;
            for _ in 0..n {
                let alias = r.string()?;
                let target = r.string()?;
                aliases.insert(alias, target);
            }
        }
        Ok(Self { version, spec, revision, variables, aliases })
    }

    /// The variable called `name`, following aliases.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        self.variables.get(name).or_else(|| self.aliases.get(name).and_then(|t| self.variables.get(t)))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            format!("truncated file: needed {n} bytes at offset {}, file has {}", self.pos, self.buf.len())
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| format!("non-UTF-8 name at offset {}", self.pos))
    }
}

/// Writes a CTranslate2 v6 file (for tests and tools that build small models).
pub fn write(model: &Ct2Model) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&model.version.to_le_bytes());
    string(&mut out, &model.spec);
    out.extend_from_slice(&model.revision.to_le_bytes());
    out.extend_from_slice(&(model.variables.len() as u32).to_le_bytes());
    for (name, v) in &model.variables {
        string(&mut out, name);
        out.push(v.shape.len() as u8);
        for &d in &v.shape {
            out.extend_from_slice(&(d as u32).to_le_bytes());
        }
        out.push(match v.dtype {
            DType::F32 => 0,
            DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 => 3,
            DType::F16 => 4,
            DType::BF16 => 5,
        });
        out.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&v.data);
    }
    out.extend_from_slice(&(model.aliases.len() as u32).to_le_bytes());
    for (a, t) in &model.aliases {
        string(&mut out, a);
        string(&mut out, t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_synthetic_file_with_scalars_tensors_and_aliases() {
        // Hand-assembled bytes, independent of `write`.
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&12u16.to_le_bytes());
        b.extend_from_slice(b"WhisperSpec\0");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        // var 1: "a/w" [2,3] f16
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(b"a/w\0");
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.push(4);
        b.extend_from_slice(&12u32.to_le_bytes());
        b.extend((0u8..12).collect::<Vec<_>>());
        // var 2: "a/num_heads" scalar i16 = 6
        b.extend_from_slice(&12u16.to_le_bytes());
        b.extend_from_slice(b"a/num_heads\0");
        b.push(0);
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&6i16.to_le_bytes());
        // one alias
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(b"b/w\0");
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(b"a/w\0");

        let m = Ct2Model::parse(&b).unwrap();
        assert_eq!((m.version, m.spec.as_str(), m.revision), (6, "WhisperSpec", 3));
        let w = m.get("a/w").unwrap();
        assert_eq!((w.shape.clone(), w.dtype, w.data.len()), (vec![2, 3], DType::F16, 12));
        assert_eq!(m.get("a/num_heads").unwrap().as_int(), Some(6));
        assert_eq!(m.get("b/w"), Some(w));
        let again = Ct2Model::parse(&write(&m)).unwrap();
        assert_eq!(again, m, "the writer round-trips");
    }

    #[test]
    fn rejects_other_versions_and_truncation() {
        let mut m = Ct2Model { version: 6, spec: "WhisperSpec".into(), revision: 3, ..Default::default() };
        m.variables.insert("x".into(), Variable { shape: vec![4], dtype: DType::F32, data: vec![0; 16] });
        let bytes = write(&m);
        assert!(Ct2Model::parse(&bytes[..bytes.len() - 10]).unwrap_err().contains("truncated"));
        let mut v5 = bytes.clone();
        v5[0] = 5;
        assert!(Ct2Model::parse(&v5).unwrap_err().contains("version 6"));
        let mut bad_size = bytes;
        // The byte count of "x" sits right before its data.
        let pos = bad_size.len() - 16 - 4 - 4;
        bad_size[pos] = 15;
        assert!(Ct2Model::parse(&bad_size).unwrap_err().contains("expected 16 bytes"));
    }
}
