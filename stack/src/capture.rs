//! Packet captures: one pcapng file per run with one interface per segment.
//!
//! Link type 228 (LINKTYPE_IPV4: raw IPv4, no link header) because libpcap refuses a pcapng
//! with two interfaces of type 101, while it reads 228; `if_tsresol = 9` because timestamps
//! are nanoseconds of virtual (or real) time and tshark would otherwise show them 1000 times
//! too large. Each packet is recorded once per segment, when it is put on the segment (as a
//! capture at the sender's interface sees it, lost packets included).

use crate::Time;
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Capture errors.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be created or written.
    #[error("capture file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// pcap-file refused a block.
    #[error("capture file {path}: {message}")]
    Pcap {
        /// The file.
        path: String,
        /// The cause.
        message: String,
    },
}

/// A pcapng writer with one interface per segment.
pub struct Capture<W: Write> {
    writer: PcapNgWriter<W>,
    path: String,
    packets: u64,
}

impl<W: Write> std::fmt::Debug for Capture<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("path", &self.path)
            .field("packets", &self.packets)
            .finish()
    }
}

impl Capture<BufWriter<File>> {
    /// Creates `path` and writes the section header and one interface block per segment name.
    pub fn create(path: &Path, segments: &[String]) -> Result<Self, CaptureError> {
        let p = path.display().to_string();
        let file = File::create(path).map_err(|source| CaptureError::Io {
            path: p.clone(),
            source,
        })?;
        Capture::new(BufWriter::new(file), &p, segments)
    }
}

impl<W: Write> Capture<W> {
    /// A capture on any writer (`path` only names it in errors).
    pub fn new(writer: W, path: &str, segments: &[String]) -> Result<Self, CaptureError> {
        let pcap_err = |e: pcap_file::PcapError| CaptureError::Pcap {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut writer = PcapNgWriter::new(writer).map_err(pcap_err)?;
        for name in segments {
            let mut idb = InterfaceDescriptionBlock::new(DataLink::IPV4, 65535);
            idb.options = vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(name.clone())),
                InterfaceDescriptionOption::IfTsResol(9),
            ];
            writer.write_pcapng_block(idb).map_err(pcap_err)?;
        }
        Ok(Capture {
            writer,
            path: path.to_owned(),
            packets: 0,
        })
    }

    /// Records one IPv4 packet seen on segment `segment` at `time`.
    pub fn record(
        &mut self,
        segment: usize,
        time: Time,
        packet: &[u8],
    ) -> Result<(), CaptureError> {
        let block = EnhancedPacketBlock {
            interface_id: u32::try_from(segment).unwrap_or(u32::MAX),
            timestamp: time,
            original_len: u32::try_from(packet.len()).unwrap_or(u32::MAX),
            data: Cow::Borrowed(packet),
            options: Vec::new(),
        };
        self.writer
            .write_pcapng_block(block)
            .map_err(|e| CaptureError::Pcap {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        self.packets += 1;
        Ok(())
    }

    /// Packets recorded so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes buffered blocks; the file is valid up to its last packet afterwards.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.writer
            .get_mut()
            .flush()
            .map_err(|source| CaptureError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, CaptureError> {
        self.flush()?;
        Ok(self.writer.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    #[test]
    fn writes_interfaces_with_names_nanosecond_resolution_and_packets() {
        let segs = vec!["lan-a".to_owned(), "public".to_owned()];
        let mut cap = Capture::new(Vec::new(), "mem", &segs).unwrap();
        let pkt = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        cap.record(1, Time::from_nanos(1_500_000_123), &pkt)
            .unwrap();
        let bytes = cap.finish().unwrap();
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut names = Vec::new();
        let mut packets = Vec::new();
        while let Some(b) = r.next_block() {
            match b.unwrap() {
                Block::InterfaceDescription(idb) => {
                    assert_eq!(idb.linktype, DataLink::IPV4);
                    assert!(
                        idb.options
                            .contains(&InterfaceDescriptionOption::IfTsResol(9))
                    );
                    for o in idb.options {
                        if let InterfaceDescriptionOption::IfName(n) = o {
                            names.push(n.into_owned());
                        }
                    }
                }
                Block::EnhancedPacket(epb) => {
                    packets.push((epb.interface_id, epb.timestamp, epb.data.into_owned()))
                }
                _ => {}
            }
        }
        assert_eq!(names, segs);
        assert_eq!(
            packets,
            vec![(1, Time::from_nanos(1_500_000_123), pkt.to_vec())]
        );
    }
}
