//! Decoding of FTS5's records (its `%_data` averages record, its `%_docsize` rows): SQLite
//! varints, as FTS5 writes them. Part of FTS5's on-disk format, which SQLite keeps
//! compatible.

use crate::error::StoreError;

/// The error of a record of `posts_fts` that does not decode.
pub fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("posts_fts: undecodable {what}"))
}

/// Reads one SQLite varint (FTS5's `sqlite3Fts5GetVarint`: big-endian groups of 7 bits, the
/// ninth byte whole). `None` if the buffer ends first.
pub fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let c = *buf.get(*at)?;
        *at += 1;
        if i == 8 {
            return Some((v << 8) | u64::from(c));
        }
        v = (v << 7) | u64::from(c & 0x7f);
        if c < 0x80 {
            return Some(v);
        }
    }
    Some(v)
}

/// Sum of a record of varints (a `%_docsize` row, or the column totals of the averages).
pub fn sum_varints(buf: &[u8], mut at: usize) -> Option<i64> {
    let mut total: i64 = 0;
    while at < buf.len() {
        total = total.checked_add(i64::try_from(varint(buf, &mut at)?).ok()?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_as_sqlite_writes_them() {
        let mut at = 0;
        assert_eq!(varint(&[0x07], &mut at), Some(7));
        let mut at = 0;
        assert_eq!(varint(&[0x81, 0x00], &mut at), Some(128));
        assert_eq!(sum_varints(&[0x07, 0x12], 0), Some(25));
        let mut at = 0;
        assert_eq!(varint(&[0x81], &mut at), None);
        assert_eq!(varint(&[0xff; 9], &mut 0), Some(u64::MAX));
    }
}
