//! ISO/IEC 7816-4 padding, as Lockbox's `padding` option: append `0x80`, then zeros up to a
//! multiple of the block size (a full block is added when the input is already aligned).

use crate::error::{Error, Result};

const MAX_BLOCK: usize = 1 << 20;

fn check_block(block: usize) -> Result<()> {
    if block == 0 || block > MAX_BLOCK {
        return Err(Error::config(format!(
            "padding block size must be 1..={MAX_BLOCK}, got {block}"
        )));
    }
    Ok(())
}

/// Length of `len` bytes once padded to `block`.
pub fn padded_len(len: usize, block: usize) -> Result<usize> {
    check_block(block)?;
    Ok((len / block + 1) * block)
}

/// Pad `buf[start..]` in place.
pub fn pad_in_place(buf: &mut Vec<u8>, start: usize, block: usize) -> Result<()> {
    let len = buf.len() - start;
    let target = padded_len(len, block)?;
    buf.push(0x80);
    buf.resize(start + target, 0);
    Ok(())
}

/// Pad a copy.
pub fn pad(data: &[u8], block: usize) -> Result<Vec<u8>> {
    let mut out = data.to_vec();
    pad_in_place(&mut out, 0, block)?;
    Ok(out)
}

/// Remove the padding in place; a value that is not correctly padded is a `DecryptionFailed`
/// error (it authenticated, so the padding option does not match the writer's).
pub fn unpad_in_place(buf: &mut Vec<u8>, block: usize) -> Result<()> {
    check_block(block)?;
    if buf.is_empty() || !buf.len().is_multiple_of(block) {
        return Err(invalid());
    }
    let Some(pos) = buf.iter().rposition(|&b| b != 0) else {
        return Err(invalid());
    };
    if buf[pos] != 0x80 || buf.len() - pos > block {
        return Err(invalid());
    }
    buf.truncate(pos);
    Ok(())
}

fn invalid() -> Error {
    Error::new(crate::ErrorKind::DecryptionFailed, "Invalid padding")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(pad(b"", 4).unwrap(), [0x80, 0, 0, 0]);
        assert_eq!(pad(b"abc", 4).unwrap(), *b"abc\x80");
        assert_eq!(pad(b"abcd", 4).unwrap(), *b"abcd\x80\0\0\0");
        assert_eq!(pad(b"hello", 16).unwrap().len(), 16);
    }

    #[test]
    fn unpad_round_trip_and_rejects() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).map(|b| b | 1).collect();
            let mut p = pad(&data, 16).unwrap();
            unpad_in_place(&mut p, 16).unwrap();
            assert_eq!(p, data);
        }
        for bad in [&b""[..], b"abc", b"abcd", b"\0\0\0\0", b"ab\x80\x01"] {
            assert!(unpad_in_place(&mut bad.to_vec(), 4).is_err(), "{bad:?}");
        }
    }
}
