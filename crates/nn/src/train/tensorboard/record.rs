//! TFRecord framing, the container of TensorBoard's event files: each
//! record is its length (u64, little-endian), the masked CRC-32C of the
//! length, the data, and the masked CRC-32C of the data. A reader that
//! meets a record cut short (a run killed mid-write) stops before it.

use std::io::{self, Read, Write};

/// TensorFlow's CRC mask: rotate right by 15 and add a constant, so that a
/// CRC of data holding CRCs is not degenerate.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one record holding `data`.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// The records of a file's bytes, in order, up to the first one that is
/// cut short or fails its checksums (a run killed mid-write); the second
/// value says whether such a tail was left out.
pub fn read_records(mut input: impl Read) -> io::Result<(Vec<Vec<u8>>, bool)> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 12) else { return Ok((records, true)) };
        let (len, crc) = head.split_at(8);
        if masked_crc(len).to_le_bytes() != crc {
            return Ok((records, true));
        }
        let n = u64::from_le_bytes(len.try_into().unwrap()) as usize;
        let Some(body) = bytes.get(at + 12..at + 12 + n + 4) else { return Ok((records, true)) };
        let (data, crc) = body.split_at(n);
        if masked_crc(data).to_le_bytes() != crc {
            return Ok((records, true));
        }
        records.push(data.to_vec());
        at += 12 + n + 4;
    }
    Ok((records, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masked_crc_is_tensorflows() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720's check value), masked.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn records_round_trip_and_a_cut_tail_is_left_out() {
        let mut file = Vec::new();
        for r in [&b"first"[..], b"", b"third record"] {
            write_record(&mut file, r).unwrap();
        }
        let (records, cut) = read_records(&file[..]).unwrap();
        assert_eq!(records, vec![b"first".to_vec(), vec![], b"third record".to_vec()]);
        assert!(!cut);
        for keep in [file.len() - 1, file.len() - 10, 5] {
            let (records, cut) = read_records(&file[..keep]).unwrap();
            assert!(cut, "{keep} bytes");
            assert!(records.len() < 3);
        }
        let mut flipped = file.clone();
        flipped[14] ^= 1;
        assert_eq!(read_records(&flipped[..]).unwrap().0.len(), 0);
    }
}
