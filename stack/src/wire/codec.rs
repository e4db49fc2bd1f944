//! The codec core every wire format here shares: the bounds-checked [`Reader`], the one
//! [`WireError`] type and the `emit` copy. It sits below `binfm`, `toall` and `vertical` so
//! none of them has to import another just for the cursor.

/// Why bytes are not a BINFM message, a vertical-model message or a ToALL Tx. Each names
/// where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a field.
    #[error("truncated at {field}: need {need} bytes, {have} left")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The first two bytes are not `BF`.
    #[error("bad magic {0:02x?}, expected \"BF\"")]
    BadMagic([u8; 2]),
    /// A version we do not speak.
    #[error("{what}: unsupported version {version}")]
    BadVersion {
        /// Message or Tx.
        what: &'static str,
        /// Version found.
        version: u8,
    },
    /// An unknown message type code.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A length field above its bound.
    #[error("{field} is {len}, above the bound {max}")]
    OverBound {
        /// Field.
        field: &'static str,
        /// Length found.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// A field with a value outside its domain (unknown status, reserved flag bits, ...).
    #[error("{field}: invalid value {value}")]
    BadValue {
        /// Field.
        field: &'static str,
        /// Value found.
        value: u64,
    },
    /// Bytes left after a complete message.
    #[error("{len} trailing bytes after the message")]
    TrailingBytes {
        /// How many.
        len: usize,
    },
    /// `emit` was given a buffer shorter than `buffer_len`.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Buffer length.
        have: usize,
    },
}

/// Cursor over input bytes: every read is bounds-checked and names its field.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { rest: data }
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated {
                field,
                need: n,
                have: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                len: self.rest.len(),
            })
        }
    }
}

/// Copies an encoding into the front of `buf` (the body of every `emit`); returns its length.
pub(crate) fn copy_into(bytes: &[u8], buf: &mut [u8]) -> Result<usize, WireError> {
    let have = buf.len();
    let dst = buf
        .get_mut(..bytes.len())
        .ok_or(WireError::BufferTooSmall {
            need: bytes.len(),
            have,
        })?;
    dst.copy_from_slice(bytes);
    Ok(bytes.len())
}
