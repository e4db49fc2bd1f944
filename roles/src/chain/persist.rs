//! The block log of an SN's data directory: one record per accepted block, in connection
//! order (parents first), so a restart re-adds them in order and rebuilds the store and the
//! search table.
//!
//! Record: `len u32 | crc32 u32 | block bytes` (big-endian; CRC-32/ISO-HDLC over the block
//! bytes). Each append is one write followed by `sync_data`. On open, records are read in
//! order and the first short, oversized or CRC-failing record (a torn last write) ends the
//! log: the file is truncated there. This is the one module of `chain` that does I/O; the
//! driver calls it, the sans-IO store never does.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::block::{BLOCK_BYTES_CEILING, Block};
use super::mempool::MempoolConfig;
use super::store::{BlockError, ChainConfig, ConfigError};
use super::{Chain, ChainTx, TxValidator};

/// File name of the block log inside a data directory.
pub const LOG_FILE: &str = "blocks.log";
/// Bytes before each record's block: length and CRC.
pub const RECORD_HEADER_LEN: usize = 8;

/// A persistence failure.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// File system error on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record with a good CRC that is not a block or not valid: the log belongs to another
    /// chain configuration (or tx format). Refused rather than silently dropped.
    #[error("{path}: record {record} is not a valid block of this chain: {reason}")]
    BadRecord {
        /// The log file.
        path: PathBuf,
        /// Record index (0-based).
        record: usize,
        /// Decoder or validation message.
        reason: String,
    },
    /// A block larger than the record format allows.
    #[error("block of {0} bytes cannot be logged")]
    TooLarge(usize),
    /// Bad chain configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What opening a log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Complete records read.
    pub records: usize,
    /// Bytes cut off after the last good record (0 for a clean log).
    pub truncated_bytes: u64,
}

/// An open block log, positioned at its end.
#[derive(Debug)]
pub struct BlockLog {
    file: File,
    path: PathBuf,
}

impl BlockLog {
    /// Opens (creating if needed) the log at `path`, returns its good records and truncates a
    /// torn tail.
    pub fn open(path: &Path) -> Result<(BlockLog, Vec<Vec<u8>>, Recovery), PersistError> {
        let io = |source| PersistError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io)?;
        let (records, good_len) = parse_records(&data);
        let truncated_bytes = (data.len() - good_len) as u64;
        if truncated_bytes > 0 {
            file.set_len(good_len as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let recovery = Recovery {
            records: records.len(),
            truncated_bytes,
        };
        Ok((
            BlockLog {
                file,
                path: path.to_path_buf(),
            },
            records,
            recovery,
        ))
    }

    /// Appends one record and waits for it to reach the disk (`sync_data`).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), PersistError> {
        if bytes.len() > BLOCK_BYTES_CEILING {
            return Err(PersistError::TooLarge(bytes.len()));
        }
        let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + bytes.len());
        rec.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        rec.extend_from_slice(&crc32fast::hash(bytes).to_be_bytes());
        rec.extend_from_slice(bytes);
        let io = |source| PersistError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&rec).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Good records of `data` and the byte length they cover.
fn parse_records(data: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(head) = data.get(pos..pos + RECORD_HEADER_LEN) {
        let mut len = [0u8; 4];
        let mut crc = [0u8; 4];
        len.copy_from_slice(&head[..4]);
        crc.copy_from_slice(&head[4..]);
        let len = u32::from_be_bytes(len) as usize;
        if len > BLOCK_BYTES_CEILING {
            break;
        }
        let start = pos + RECORD_HEADER_LEN;
        let Some(body) = data.get(start..start + len) else {
            break;
        };
        if crc32fast::hash(body) != u32::from_be_bytes(crc) {
            break;
        }
        out.push(body.to_vec());
        pos = start + len;
    }
    (out, pos)
}

/// Opens the data directory `dir` (creating it), replays its block log into a fresh
/// [`Chain`] and returns the chain, the log (for [`persist_connected`]) and what was found.
/// Blocks are re-added with `now_ms` as the receiver's time.
pub fn open_chain<T: ChainTx>(
    dir: &Path,
    config: ChainConfig,
    mempool: MempoolConfig,
    now_ms: u64,
    validate: TxValidator<'_, T>,
) -> Result<(Chain<T>, BlockLog, Recovery), PersistError> {
    std::fs::create_dir_all(dir).map_err(|source| PersistError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (log, records, recovery) = BlockLog::open(&dir.join(LOG_FILE))?;
    let mut chain = Chain::new(config, mempool)?;
    for (record, bytes) in records.iter().enumerate() {
        let bad = |reason: String| PersistError::BadRecord {
            path: log.path.clone(),
            record,
            reason,
        };
        let block = Block::<T>::decode_max(bytes, config.max_block_bytes)
            .map_err(|e| bad(e.to_string()))?;
        chain
            .add_block(block, now_ms, validate)
            .map_err(|e: BlockError| bad(e.to_string()))?;
    }
    while chain.poll_connected().is_some() {}
    Ok((chain, log, recovery))
}

/// Appends every block the chain connected since the last call to the log.
pub fn persist_connected<T: ChainTx>(
    chain: &mut Chain<T>,
    log: &mut BlockLog,
) -> Result<usize, PersistError> {
    let mut n = 0;
    while let Some(hash) = chain.poll_connected() {
        if let Some(block) = chain.block(&hash) {
            log.append(&block.encode())?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use super::*;

    fn fresh(dir: &Path) -> (Chain<DummyTx>, BlockLog, Recovery) {
        match open_chain(dir, easy_config(), MempoolConfig::default(), 100_000, &ok) {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        }
    }

    /// Mines `n` blocks of one tx each on the tip and logs them; returns their hashes.
    fn grow(chain: &mut Chain<DummyTx>, log: &mut BlockLog, n: u64) -> Vec<Hash> {
        let mut out = Vec::new();
        for i in 1..=n {
            let (tip, h) = chain.tip();
            let b = child(
                chain.store(),
                &tip,
                (h + 1) * 1000,
                1,
                vec![DummyTx::new(i as u8, 1)],
            );
            out.push(b.hash());
            chain
                .add_block(b, 100_000, &ok)
                .unwrap_or_else(|e| panic!("{e}"));
            persist_connected(chain, log).unwrap_or_else(|e| panic!("{e}"));
        }
        out
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn empty_dir_gives_genesis_only() {
        let d = tmp();
        let (chain, _log, rec) = fresh(d.path());
        assert_eq!(rec, Recovery::default());
        assert_eq!(chain.tip().1, 0);
        assert_eq!(
            std::fs::metadata(d.path().join(LOG_FILE))
                .map(|m| m.len())
                .ok(),
            Some(0)
        );
    }

    #[test]
    fn restart_rebuilds_store_and_search_table() {
        let d = tmp();
        let (mut chain, mut log, _) = fresh(d.path());
        let hashes = grow(&mut chain, &mut log, 5);
        drop(log);
        let (again, _log, rec) = fresh(d.path());
        assert_eq!(
            rec,
            Recovery {
                records: 5,
                truncated_bytes: 0
            }
        );
        assert_eq!(again.tip(), (hashes[4], 5));
        assert_eq!(
            again.lookup(&[3; 32]).map(|(t, h)| (t.seq, h)),
            Some((1, 3))
        );
    }

    #[test]
    fn torn_last_record_is_truncated() {
        let d = tmp();
        let (mut chain, mut log, _) = fresh(d.path());
        let hashes = grow(&mut chain, &mut log, 4);
        drop(log);
        let path = d.path().join(LOG_FILE);
        let full = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let last_len =
            (RECORD_HEADER_LEN + chain.block(&hashes[3]).map_or(0, |b| b.encoded_len())) as u64;
        let cut = full - last_len / 2;
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.set_len(cut).unwrap_or_else(|e| panic!("{e}"));
        drop(f);
        let (mut again, mut log, rec) = fresh(d.path());
        assert_eq!(
            rec,
            Recovery {
                records: 3,
                truncated_bytes: cut - (full - last_len)
            }
        );
        assert_eq!(again.tip(), (hashes[2], 3));
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            Some(full - last_len)
        );
        // The log is usable again: the lost block can be re-added and logged.
        if let Some(b) = chain.block(&hashes[3]) {
            again
                .add_block(b.clone(), 100_000, &ok)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(persist_connected(&mut again, &mut log).ok(), Some(1));
        drop(log);
        let (third, _log, rec) = fresh(d.path());
        assert_eq!(rec.records, 4);
        assert_eq!(third.tip(), (hashes[3], 4));
    }

    #[test]
    fn bad_crc_ends_the_log() {
        let d = tmp();
        let (mut chain, mut log, _) = fresh(d.path());
        let hashes = grow(&mut chain, &mut log, 3);
        drop(log);
        let path = d.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        let rec_len = RECORD_HEADER_LEN + chain.block(&hashes[0]).map_or(0, |b| b.encoded_len());
        // Flip a byte inside the second record's block.
        bytes[rec_len + RECORD_HEADER_LEN + 10] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let (again, _log, rec) = fresh(d.path());
        assert_eq!(
            rec,
            Recovery {
                records: 1,
                truncated_bytes: (bytes.len() - rec_len) as u64
            }
        );
        assert_eq!(again.tip(), (hashes[0], 1));
    }

    #[test]
    fn valid_crc_but_foreign_block_is_an_error() {
        let d = tmp();
        let mut log = BlockLog::open(&d.path().join(LOG_FILE))
            .map(|(l, _, _)| l)
            .unwrap_or_else(|e| panic!("{e}"));
        log.append(b"not a block").unwrap_or_else(|e| panic!("{e}"));
        drop(log);
        let r = open_chain::<DummyTx>(d.path(), easy_config(), MempoolConfig::default(), 0, &ok);
        assert!(matches!(r, Err(PersistError::BadRecord { record: 0, .. })));
    }
}
