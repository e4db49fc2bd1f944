//! The call's audio (docs/design.md, "Audio"): G.711 μ-law at 8 kHz in 20 ms frames (160 bytes, 50
//! packets/s, RTP payload type 0), a synthetic tone so a decrypted call can be written to a
//! WAV and listened to, and what a receiver measures (loss, duplicates, RFC 3550 jitter,
//! one-way delay). No clock here: callers pass arrival and send times in nanoseconds.

use crate::Time;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

/// Samples per second (G.711).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (and μ-law bytes) per 20 ms frame.
pub const FRAME_SAMPLES: usize = 160;
/// Audio frame period (20 ms: 160 samples at 8 kHz).
pub const FRAME_PERIOD: Duration = Duration::from_millis(20);
/// Static RTP payload type of G.711 μ-law (RFC 3551).
pub const PT_PCMU: u8 = 0;
/// Frames in one hour: the most a [`Recording`] holds and [`ReceiverStats`] keeps delays for.
pub const MAX_RECORDING_FRAMES: u64 = 3600 * 50;
/// Peak amplitude of [`tone_frame`]: full scale at -10 dB, loud enough to hear gaps and far
/// from clipping.
pub const TONE_AMPLITUDE: f64 = 32767.0 * 0.316_227_766;

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// G.711 μ-law encoding of a 16-bit sample (the classic biased-segment algorithm; the top
/// 14 bits matter, as in the standard).
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS; // 0x84..=0x7fff
    let segment = (s >> 7) as u32; // 1..=255
    let exponent = (31 - segment.leading_zeros()).min(7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | ((exponent as i32) << 4) | mantissa) as u8
}

/// G.711 μ-law decoding: the centre of the code's quantisation step.
pub fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS; // 0..=32124
    let v = if u & 0x80 != 0 { -magnitude } else { magnitude };
    v as i16
}

/// Frame `index` (20 ms each) of a continuous sine at `freq_hz`, μ-law encoded (about -10 dBFS).
pub fn tone_frame(freq_hz: f64, index: u64) -> [u8; FRAME_SAMPLES] {
    let mut out = [0u8; FRAME_SAMPLES];
    let start = index.wrapping_mul(FRAME_SAMPLES as u64);
    for (i, b) in out.iter_mut().enumerate() {
        let n = start.wrapping_add(i as u64) as f64;
        // Phase as a fraction of a cycle first, so long calls keep their precision.
        let cycles = (freq_hz * n / f64::from(SAMPLE_RATE)).fract();
        let v = TONE_AMPLITUDE * (std::f64::consts::TAU * cycles).sin();
        *b = ulaw_encode(v.round() as i16);
    }
    out
}

/// What a call sends: a synthetic tone, or recorded samples played in a loop (a WAV file
/// read with [`read_wav`]). Shared, not copied, by every call of an end node.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    /// A continuous sine at this frequency (Hz).
    Tone(f64),
    /// 8 kHz samples, μ-law encoded, looped from the first one at the start of each call;
    /// never empty.
    Samples(std::sync::Arc<[u8]>),
}

impl From<f64> for AudioSource {
    fn from(hz: f64) -> Self {
        AudioSource::Tone(hz)
    }
}

impl AudioSource {
    /// 8 kHz 16-bit samples to send in a loop; `None` when there are none.
    pub fn samples(pcm: &[i16]) -> Option<AudioSource> {
        (!pcm.is_empty())
            .then(|| AudioSource::Samples(pcm.iter().map(|&s| ulaw_encode(s)).collect()))
    }

    /// Frame `index` (20 ms) of this source.
    pub fn frame(&self, index: u64) -> [u8; FRAME_SAMPLES] {
        match self {
            AudioSource::Tone(hz) => tone_frame(*hz, index),
            AudioSource::Samples(s) => {
                let mut out = [0u8; FRAME_SAMPLES];
                let len = s.len() as u64;
                let start = index.wrapping_mul(FRAME_SAMPLES as u64);
                for (i, b) in out.iter_mut().enumerate() {
                    let at = start.wrapping_add(i as u64) % len.max(1);
                    *b = s.get(at as usize).copied().unwrap_or(0xff);
                }
                out
            }
        }
    }
}

/// The outgoing side of a call's audio: one frame of its [`AudioSource`] every
/// [`FRAME_PERIOD`] from the moment media starts. Both models' calls send with it, so their
/// audio paths are the same by construction.
#[derive(Debug, Clone)]
pub struct ToneClock {
    source: AudioSource,
    next: Option<Time>,
    index: u64,
}

impl ToneClock {
    /// A stopped clock for `source` (a tone frequency converts).
    pub fn new(source: impl Into<AudioSource>) -> Self {
        ToneClock {
            source: source.into(),
            next: None,
            index: 0,
        }
    }

    /// Media starts: the first frame is due at `now`.
    pub fn start(&mut self, now: Time) {
        self.next = Some(now);
    }

    /// Media stops.
    pub fn stop(&mut self) {
        self.next = None;
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Option<Time> {
        self.next
    }

    /// The next frame due by `now` (RTP timestamp and payload), advancing the clock; `None`
    /// when nothing is due.
    pub fn pop_due(&mut self, now: Time) -> Option<(u32, [u8; FRAME_SAMPLES])> {
        let at = self.next.filter(|&at| at <= now)?;
        let index = self.index;
        self.index += 1;
        self.next = Some(at + FRAME_PERIOD);
        let ts = (index as u32).wrapping_mul(FRAME_SAMPLES as u32);
        Some((ts, self.source.frame(index)))
    }
}

/// Writes 16-bit PCM mono WAV at SAMPLE_RATE (must decode with `sox --i`).
pub fn write_wav(path: &Path, samples: &[i16]) -> io::Result<()> {
    let data_len = samples
        .len()
        .checked_mul(2)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n <= u32::MAX - 36)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} samples do not fit in one WAV file", samples.len()),
            )
        })?;
    let mut w = io::BufWriter::new(std::fs::File::create(path)?);
    w.write_all(b"RIFF")?;
    w.write_all(&(36 + data_len).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?; // fmt chunk size
    w.write_all(&1u16.to_le_bytes())?; // PCM
    w.write_all(&1u16.to_le_bytes())?; // mono
    w.write_all(&SAMPLE_RATE.to_le_bytes())?;
    w.write_all(&(SAMPLE_RATE * 2).to_le_bytes())?; // bytes per second
    w.write_all(&2u16.to_le_bytes())?; // block align
    w.write_all(&16u16.to_le_bytes())?; // bits per sample
    w.write_all(b"data")?;
    w.write_all(&data_len.to_le_bytes())?;
    for s in samples {
        w.write_all(&s.to_le_bytes())?;
    }
    w.flush()
}

/// The longest WAV file [`read_wav`] takes (about 70 minutes at 8 kHz).
pub const MAX_WAV_BYTES: usize = 64 << 20;

/// Reads 16-bit PCM mono WAV at [`SAMPLE_RATE`] (what [`write_wav`] writes); any other
/// format is refused with what it is, so the caller can say how to convert it.
pub fn read_wav(bytes: &[u8]) -> Result<Vec<i16>, String> {
    if bytes.len() > MAX_WAV_BYTES {
        return Err(format!(
            "{} bytes: longer than the {MAX_WAV_BYTES} bytes taken",
            bytes.len()
        ));
    }
    if bytes.get(..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut at = 12;
    let mut format = None;
    while let Some(header) = bytes.get(at..at + 8) {
        let id = &header[..4];
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body = bytes
            .get(at + 8..)
            .and_then(|b| b.get(..len))
            .ok_or_else(|| {
                format!(
                    "chunk `{}` runs past the end of the file",
                    String::from_utf8_lossy(id)
                )
            })?;
        match id {
            b"fmt " => {
                let f = |o: usize| body.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
                let rate = body
                    .get(4..8)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                format = Some((f(0), f(2), rate, f(14)));
            }
            b"data" => {
                return match format {
                    Some((Some(1), Some(1), Some(SAMPLE_RATE), Some(16))) => Ok(body
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]))
                        .collect()),
                    Some((codec, channels, rate, bits)) => Err(format!(
                        "format {} with {} channel(s) at {} Hz, {} bits: 16-bit PCM mono at {SAMPLE_RATE} Hz is taken",
                        codec.unwrap_or(0),
                        channels.unwrap_or(0),
                        rate.unwrap_or(0),
                        bits.unwrap_or(0)
                    )),
                    None => Err("`data` before `fmt `".into()),
                };
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at += 8 + len + (len & 1);
    }
    Err("no `data` chunk".into())
}

/// What a receiver saw, per direction: frames received, duplicates, lost (from the extended
/// sequence numbers), RFC 3550 A.8 interarrival jitter (in ms), one-way delays.
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    received: u64,
    duplicates: u64,
    lowest: Option<u64>,
    highest: Option<u64>,
    /// RFC 3550 jitter estimate, in timestamp units (1/8 ms).
    jitter: f64,
    /// Arrival (ns) and RTP timestamp of the previous frame, in arrival order.
    prev: Option<(u64, u32)>,
    /// One-way delays in ns, at most [`MAX_RECORDING_FRAMES`] of them.
    delays_ns: Vec<u64>,
    delays_dropped: u64,
}

/// A [`ReceiverStats`] snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSummary {
    /// Distinct frames received.
    pub received: u64,
    /// Frames received again (replays the SRTP window caught, or the caller saw).
    pub duplicates: u64,
    /// Indexes between the lowest and highest received that never arrived (frames after
    /// the last received one cannot be told from frames not yet sent).
    pub lost: u64,
    /// Lowest extended sequence number received.
    pub first_index: Option<u64>,
    /// Highest extended sequence number received.
    pub highest_index: Option<u64>,
    /// RFC 3550 A.8 interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Median one-way delay, ms (frames with a known send time).
    pub delay_ms_median: Option<f64>,
    /// 99th percentile one-way delay (nearest rank), ms.
    pub delay_ms_p99: Option<f64>,
    /// Delays recorded (capped at [`MAX_RECORDING_FRAMES`]).
    pub delay_samples: u64,
}

const NS_PER_TS_UNIT: f64 = 1e9 / SAMPLE_RATE as f64;

impl ReceiverStats {
    /// Nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new (not duplicate) frame, in arrival order. `send_ns`: when the sender sent it, if
    /// known (same clock as `arrival_ns`: the testbed has one).
    pub fn on_frame(
        &mut self,
        index: u64,
        rtp_timestamp: u32,
        arrival_ns: u64,
        send_ns: Option<u64>,
    ) {
        self.received += 1;
        self.lowest = Some(self.lowest.map_or(index, |l| l.min(index)));
        self.highest = Some(self.highest.map_or(index, |h| h.max(index)));
        if let Some((prev_arrival, prev_ts)) = self.prev {
            // D(i-1, i) = (R_i - R_{i-1}) - (S_i - S_{i-1}), in timestamp units.
            let arrival =
                (i128::from(arrival_ns) - i128::from(prev_arrival)) as f64 / NS_PER_TS_UNIT;
            let sent = f64::from(rtp_timestamp.wrapping_sub(prev_ts) as i32);
            let d = (arrival - sent).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.prev = Some((arrival_ns, rtp_timestamp));
        if let Some(sent) = send_ns {
            if (self.delays_ns.len() as u64) < MAX_RECORDING_FRAMES {
                self.delays_ns.push(arrival_ns.saturating_sub(sent));
            } else {
                self.delays_dropped += 1;
            }
        }
    }

    /// A frame that arrived again.
    pub fn on_duplicate(&mut self) {
        self.duplicates += 1;
    }

    /// Current figures.
    pub fn summary(&self) -> StatsSummary {
        let span = match (self.lowest, self.highest) {
            (Some(l), Some(h)) => h - l + 1,
            _ => 0,
        };
        let mut d = self.delays_ns.clone();
        d.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        let median = match d.len() {
            0 => None,
            n if n % 2 == 1 => d.get(n / 2).map(|&v| ms(v)),
            n => match (d.get(n / 2 - 1), d.get(n / 2)) {
                (Some(&a), Some(&b)) => Some((ms(a) + ms(b)) / 2.0),
                _ => None,
            },
        };
        // Nearest rank: the smallest value with at least 99% of samples at or below it.
        let p99 = (d.len() * 99)
            .div_ceil(100)
            .checked_sub(1)
            .and_then(|i| d.get(i))
            .map(|&v| ms(v));
        StatsSummary {
            received: self.received,
            duplicates: self.duplicates,
            lost: span.saturating_sub(self.received),
            first_index: self.lowest,
            highest_index: self.highest,
            jitter_ms: self.jitter / 8.0,
            delay_ms_median: median,
            delay_ms_p99: p99,
            delay_samples: d.len() as u64,
        }
    }
}

/// Collects decrypted frames by index and renders the call as samples, with silence (zeros)
/// for every frame index that never arrived, so gaps can be heard.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    frames: BTreeMap<u64, Vec<u8>>,
    refused: u64,
    duplicates: u64,
}

impl Recording {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores frame `index` (at most [`FRAME_SAMPLES`] bytes are kept). Refused, and
    /// counted, if it would stretch the recording beyond [`MAX_RECORDING_FRAMES`] (an hour);
    /// a second copy of an index is ignored and counted.
    pub fn push(&mut self, index: u64, payload: &[u8]) {
        if let (Some((&lo, _)), Some((&hi, _))) =
            (self.frames.first_key_value(), self.frames.last_key_value())
            && index.max(hi) - index.min(lo) >= MAX_RECORDING_FRAMES
        {
            self.refused += 1;
            return;
        }
        let kept = payload.get(..FRAME_SAMPLES).unwrap_or(payload);
        match self.frames.entry(index) {
            std::collections::btree_map::Entry::Occupied(_) => self.duplicates += 1,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(kept.to_vec());
            }
        }
    }

    /// The call from the first to the last frame received, [`FRAME_SAMPLES`] samples per
    /// index; missing frames (and the missing end of a short frame) are silence.
    pub fn samples(&self) -> Vec<i16> {
        let (Some((&lo, _)), Some((&hi, _))) =
            (self.frames.first_key_value(), self.frames.last_key_value())
        else {
            return Vec::new();
        };
        let span = (hi - lo + 1) as usize; // <= MAX_RECORDING_FRAMES
        let mut out = vec![0i16; span * FRAME_SAMPLES];
        for (&index, payload) in &self.frames {
            let start = (index - lo) as usize * FRAME_SAMPLES;
            if let Some(dst) = out.get_mut(start..start + payload.len()) {
                for (d, &code) in dst.iter_mut().zip(payload) {
                    *d = ulaw_decode(code);
                }
            }
        }
        out
    }

    /// Distinct frames stored.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Frame indexes between the first and last stored that are missing.
    pub fn missing(&self) -> u64 {
        match (self.frames.first_key_value(), self.frames.last_key_value()) {
            (Some((&lo, _)), Some((&hi, _))) => (hi - lo + 1) - self.frames.len() as u64,
            _ => 0,
        }
    }

    /// Frames refused for stretching the recording beyond an hour.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Frames pushed twice.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_wav_reads_what_write_wav_writes_and_refuses_other_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        write_wav(&path, &samples).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(read_wav(&bytes).unwrap(), samples);
        // Every truncation is an error, never a panic.
        for n in 0..bytes.len() {
            let _ = read_wav(&bytes[..n]);
        }
        assert!(
            read_wav(&bytes[..100])
                .unwrap_err()
                .contains("runs past the end")
        );
        assert_eq!(read_wav(b"RIFX").unwrap_err(), "not a RIFF/WAVE file");
        // 44.1 kHz stereo: named, refused.
        let mut other = bytes.clone();
        other[22] = 2;
        other[24..28].copy_from_slice(&44_100u32.to_le_bytes());
        let e = read_wav(&other).unwrap_err();
        assert!(e.contains("2 channel(s) at 44100 Hz"), "{e}");
    }

    #[test]
    fn a_sample_source_loops_from_its_first_sample() {
        let pcm: Vec<i16> = (0..100).map(|i| i * 100).collect();
        let src = AudioSource::samples(&pcm).unwrap();
        let f0 = src.frame(0);
        assert_eq!(f0[0], ulaw_encode(0));
        assert_eq!(f0[99], ulaw_encode(9900));
        assert_eq!(f0[100], ulaw_encode(0), "wraps around");
        // Frame 1 starts at sample 160 = 60 of the loop.
        assert_eq!(src.frame(1)[0], ulaw_encode(6000));
        assert!(AudioSource::samples(&[]).is_none());
        assert_eq!(AudioSource::from(440.0).frame(7), tone_frame(440.0, 7));
    }

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(-1), 0x7f);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x7f), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        // Smallest step of segment 0, first value of segment 1, and a mid-range sample.
        assert_eq!(ulaw_decode(0xfe), 8);
        assert_eq!(ulaw_decode(0xef), 132);
        assert_eq!(ulaw_encode(1000), 0xce);
        assert_eq!(ulaw_decode(0xce), 988);
    }

    #[test]
    fn ulaw_codes_round_trip_and_are_monotonic() {
        for c in 0..=255u8 {
            let want = if c == 0x7f { 0xff } else { c }; // two zeros; encode picks +0
            assert_eq!(ulaw_encode(ulaw_decode(c)), want, "code {c:#04x}");
        }
        let mut last = ulaw_decode(ulaw_encode(i16::MIN));
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let v = ulaw_decode(ulaw_encode(s));
            assert!(v >= last, "decode(encode) not monotonic at {s}");
            last = v;
            // Quantisation error at most half a step (2^(e+2) in segment e, under |s|/16);
            // clipping above 32124 adds up to 643.
            let err = (i32::from(v) - i32::from(s)).abs();
            let allowed =
                (i32::from(s).abs() / 16).max(8) + if s.unsigned_abs() > 32124 { 650 } else { 0 };
            assert!(err <= allowed, "sample {s}: decoded {v}, error {err}");
        }
    }

    #[test]
    fn tone_is_continuous_and_about_minus_10_dbfs() {
        let a = tone_frame(440.0, 0);
        let b = tone_frame(440.0, 1);
        let samples: Vec<f64> = a
            .iter()
            .chain(&b)
            .map(|&c| f64::from(ulaw_decode(c)))
            .collect();
        let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt();
        let peak = samples.iter().fold(0f64, |m, s| m.max(s.abs()));
        let peak_db = 20.0 * (peak / 32767.0).log10();
        assert!((-10.5..=-9.5).contains(&peak_db), "peak {peak_db} dBFS");
        assert!(
            (rms / peak - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.02,
            "sine rms/peak {}",
            rms / peak
        );
        // Frame 1 starts where frame 0 left off: the step at the boundary is a normal one.
        let step = (samples[160] - samples[159]).abs();
        let max_step = TONE_AMPLITUDE * std::f64::consts::TAU * 440.0 / 8000.0;
        assert!(step <= max_step * 1.1, "jump {step} at the frame boundary");
        // Deterministic, and frame n equals frame n + 8000/440*k only where periods align:
        // 400 Hz repeats every 20 samples, so every frame is the same.
        assert_eq!(tone_frame(400.0, 0), tone_frame(400.0, 12345));
        assert_eq!(tone_frame(440.0, 7), tone_frame(440.0, 7));
    }

    #[test]
    fn wav_header_and_sox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("call.wav");
        let samples: Vec<i16> = (0..8000u64)
            .step_by(FRAME_SAMPLES)
            .flat_map(|i| tone_frame(440.0, i / FRAME_SAMPLES as u64).map(ulaw_decode))
            .collect();
        write_wav(&path, &samples).expect("write");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), 44 + 2 * samples.len());
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(&bytes[22..24], &[1, 0], "mono");
        assert_eq!(&bytes[24..28], &8000u32.to_le_bytes());
        assert_eq!(&bytes[34..36], &[16, 0], "16-bit");
        assert_eq!(&bytes[40..44], &(2 * samples.len() as u32).to_le_bytes());
        // sox reads it, if installed.
        if let Ok(out) = std::process::Command::new("sox")
            .arg("--i")
            .arg(&path)
            .output()
        {
            let info = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "sox --i failed: {info}");
            assert!(info.contains("Sample Rate    : 8000"), "{info}");
            assert!(info.contains("Channels       : 1"), "{info}");
            assert!(info.contains("Duration       : 00:00:01.00"), "{info}");
        }
    }

    #[test]
    fn stats_loss_duplicates_and_delay() {
        let mut s = ReceiverStats::new();
        let ms = 1_000_000u64;
        // Frames 100..110 sent every 20 ms, 50 ms one-way; 103 and 107 lost, 105 twice.
        for i in (100..110u64).filter(|i| *i != 103 && *i != 107) {
            let sent = (i - 100) * 20 * ms;
            s.on_frame(i, (i * 160) as u32, sent + 50 * ms, Some(sent));
        }
        s.on_duplicate();
        let sum = s.summary();
        assert_eq!((sum.received, sum.duplicates, sum.lost), (8, 1, 2));
        assert_eq!((sum.first_index, sum.highest_index), (Some(100), Some(109)));
        assert_eq!(sum.delay_ms_median, Some(50.0));
        assert_eq!(sum.delay_ms_p99, Some(50.0));
        assert_eq!(sum.jitter_ms, 0.0, "constant delay: no jitter");
    }

    #[test]
    fn jitter_follows_rfc3550() {
        // Alternating 0 / 10 ms extra delay: |D| = 10 ms = 80 units each time; J converges
        // to 80 units = 10 ms (J += (|D| - J) / 16).
        let mut s = ReceiverStats::new();
        let mut j = 0.0;
        for i in 0..400u64 {
            let extra = if i % 2 == 0 { 0 } else { 10_000_000 };
            s.on_frame(i, (i * 160) as u32, i * 20_000_000 + extra, None);
            if i > 0 {
                j += (80.0 - j) / 16.0;
            }
        }
        let sum = s.summary();
        assert!(
            (sum.jitter_ms - j / 8.0).abs() < 1e-9,
            "{} vs {}",
            sum.jitter_ms,
            j / 8.0
        );
        assert!((sum.jitter_ms - 10.0).abs() < 0.01);
        assert_eq!(sum.delay_ms_median, None);
        // RTP timestamps wrap: no spike.
        let mut w = ReceiverStats::new();
        w.on_frame(0, u32::MAX - 79, 0, None);
        w.on_frame(1, 80, 20_000_000, None);
        assert!(w.summary().jitter_ms < 1e-9);
    }

    #[test]
    fn percentiles() {
        let mut s = ReceiverStats::new();
        for i in 0..100u64 {
            s.on_frame(i, 0, (i + 1) * 1_000_000, Some(0));
        }
        let sum = s.summary();
        assert_eq!(sum.delay_ms_median, Some(50.5));
        assert_eq!(sum.delay_ms_p99, Some(99.0));
    }

    #[test]
    fn recording_renders_gaps_as_silence() {
        let mut r = Recording::new();
        assert!(r.samples().is_empty());
        r.push(11, &tone_frame(440.0, 11));
        r.push(10, &tone_frame(440.0, 10));
        r.push(13, &[0x80; 4]); // short frame: the rest is silence
        r.push(10, &[0; 160]);
        assert_eq!((r.frames(), r.missing(), r.duplicates()), (3, 1, 1));
        let s = r.samples();
        assert_eq!(s.len(), 4 * FRAME_SAMPLES);
        assert_eq!(s[..160], tone_frame(440.0, 10).map(ulaw_decode)[..]);
        assert!(s[320..480].iter().all(|&v| v == 0), "frame 12 missing");
        assert_eq!(s[480..484], [32124; 4]);
        assert!(s[484..].iter().all(|&v| v == 0));
    }

    #[test]
    fn recording_is_bounded() {
        let mut r = Recording::new();
        r.push(1_000_000, &[0xff; 160]);
        r.push(1_000_000 + MAX_RECORDING_FRAMES, &[0xff; 160]);
        r.push(1_000_000 - MAX_RECORDING_FRAMES, &[0xff; 160]);
        r.push(u64::MAX, &[0xff; 160]);
        r.push(1_000_000 + MAX_RECORDING_FRAMES - 1, &[0xff; 1000]);
        assert_eq!((r.frames(), r.refused()), (2, 3));
        assert_eq!(
            r.samples().len() as u64,
            MAX_RECORDING_FRAMES * FRAME_SAMPLES as u64
        );
    }
}
