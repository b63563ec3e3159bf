//! The benchmark corpus: a recorded-style `event plain ALL` stream, FreeSWITCH-exact.
//!
//! Every frame is written by [`esl::serialize::event_frame`] (byte-exact with FreeSWITCH, checked
//! against the captures in `tests/fixtures/freeswitch`). The events are instances of events
//! captured from a real FreeSWITCH (the conference::maintenance frames, CHANNEL_* events,
//! HEARTBEAT, BACKGROUND_JOB), with ids, uuids, names, times and counters varied by a simulated
//! set of conferences whose members join, talk, take the floor and leave. Generation is
//! deterministic (`StdRng` seeded with [`SEED`]) and cached in `target/bench-data/esl-corpus.bin`
//! keyed by [`CORPUS_VERSION`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use esl::{Event, EventFormat, Headers};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Bump whenever the generator changes: the cache is rebuilt when it differs.
pub const CORPUS_VERSION: u32 = 1;
/// The generator's seed.
pub const SEED: u64 = 0x5717_c4a1_2026_0001;
/// Size of the corpus (the stream stops at the first event past it).
pub const TARGET_BYTES: usize = 256 * 1024 * 1024;

const CONFERENCE_CAPTURE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/freeswitch/esl-events-plain-conference-maintenance-only.txt"
));
const SESSION_CAPTURE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/freeswitch/esl-events-plain-all-conference-session.txt"
));

/// What a frame of the corpus is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// conference::maintenance start-talking / stop-talking.
    Talking = 0,
    /// conference::maintenance add-member / del-member.
    Membership = 1,
    /// conference::maintenance floor-change (with or without a new holder).
    Floor = 2,
    /// conference::maintenance conference-create.
    ConferenceOther = 3,
    /// CHANNEL_* with 100–300 `variable_*` headers.
    Channel = 4,
    /// HEARTBEAT.
    Heartbeat = 5,
    /// BACKGROUND_JOB with a 100 KB–4 MB body.
    BackgroundJob = 6,
}

impl Kind {
    /// All kinds, in display order.
    pub const ALL: [Kind; 7] = [
        Kind::Talking,
        Kind::Membership,
        Kind::Floor,
        Kind::ConferenceOther,
        Kind::Channel,
        Kind::Heartbeat,
        Kind::BackgroundJob,
    ];

    fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(v)).copied()
    }

    /// A label for the composition table.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Talking => "conference start/stop-talking",
            Kind::Membership => "conference add/del-member",
            Kind::Floor => "conference floor-change",
            Kind::ConferenceOther => "conference-create",
            Kind::Channel => "CHANNEL_* (100-300 variable_*)",
            Kind::Heartbeat => "HEARTBEAT",
            Kind::BackgroundJob => "BACKGROUND_JOB (100 KB-4 MB body)",
        }
    }

    /// True for conference::maintenance events.
    pub fn is_conference(self) -> bool {
        matches!(
            self,
            Kind::Talking | Kind::Membership | Kind::Floor | Kind::ConferenceOther
        )
    }
}

/// One frame of the corpus.
#[derive(Clone, Copy, Debug)]
pub struct FrameRec {
    /// Offset of the frame in [`Corpus::data`].
    pub offset: u64,
    /// Length of the whole frame (outer headers + body).
    pub len: u32,
    /// What the frame is.
    pub kind: Kind,
    /// Header values of the event that are not valid UTF-8 once decoded.
    pub non_utf8_values: u8,
}

/// The corpus: the bytes and an index of its frames.
#[derive(Debug)]
pub struct Corpus {
    /// The `text/event-plain` frames, back to back (no auth/request, no replies).
    pub data: Bytes,
    /// One entry per frame, in stream order.
    pub frames: Vec<FrameRec>,
}

/// Per-kind totals.
#[derive(Clone, Copy, Debug, Default)]
pub struct KindStats {
    /// Frames.
    pub count: u64,
    /// Bytes (whole frames).
    pub bytes: u64,
}

impl Corpus {
    /// Number of conference::maintenance events.
    pub fn conference_events(&self) -> u64 {
        self.frames
            .iter()
            .filter(|f| f.kind.is_conference())
            .count() as u64
    }

    /// Totals per kind.
    pub fn composition(&self) -> Vec<(Kind, KindStats)> {
        let mut map: HashMap<Kind, KindStats> = HashMap::new();
        for f in &self.frames {
            let s = map.entry(f.kind).or_default();
            s.count += 1;
            s.bytes += u64::from(f.len);
        }
        Kind::ALL
            .iter()
            .filter_map(|k| map.get(k).map(|s| (*k, *s)))
            .collect()
    }

    /// Frames carrying at least one non-UTF-8 header value, and the number of such values.
    pub fn non_utf8(&self) -> (u64, u64) {
        let frames = self.frames.iter().filter(|f| f.non_utf8_values > 0).count() as u64;
        let values = self
            .frames
            .iter()
            .map(|f| u64::from(f.non_utf8_values))
            .sum();
        (frames, values)
    }

    /// The bytes of one frame.
    pub fn frame_bytes(&self, rec: &FrameRec) -> &[u8] {
        let start = rec.offset as usize;
        &self.data[start..start + rec.len as usize]
    }

    /// A stream made of the frames `keep` accepts, in order.
    pub fn filtered(&self, keep: impl Fn(&FrameRec) -> bool) -> (Vec<u8>, u64, u64) {
        let mut out = Vec::new();
        let (mut events, mut conference) = (0u64, 0u64);
        for rec in self.frames.iter().filter(|r| keep(r)) {
            out.extend_from_slice(self.frame_bytes(rec));
            events += 1;
            conference += u64::from(rec.kind.is_conference());
        }
        (out, events, conference)
    }

    /// The first `count` frames that `keep` accepts, cycling over the corpus if needed.
    pub fn first_n(&self, count: u64, keep: impl Fn(&FrameRec) -> bool) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut conference = 0;
        let mut taken = 0u64;
        if !self.frames.iter().any(&keep) {
            return (out, 0);
        }
        'outer: loop {
            for rec in self.frames.iter().filter(|r| keep(r)) {
                if taken == count {
                    break 'outer;
                }
                out.extend_from_slice(self.frame_bytes(rec));
                taken += 1;
                conference += u64::from(rec.kind.is_conference());
            }
        }
        (out, conference)
    }

    /// Loads the cached corpus from `path`, or generates it and writes the cache.
    /// Returns the corpus and whether it was generated.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<(Corpus, bool)> {
        if let Ok(bytes) = std::fs::read(path) {
            match decode_cache(bytes) {
                Ok(corpus) => return Ok((corpus, false)),
                Err(e) => eprintln!(
                    "corpus cache {} unusable ({e}), regenerating",
                    path.display()
                ),
            }
        }
        let corpus = generate()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("bin.tmp");
        {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?,
            );
            encode_cache(&corpus, &mut file)?;
            file.flush()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok((corpus, true))
    }
}

const MAGIC: &[u8; 8] = b"ESLCORP\0";

fn encode_cache(corpus: &Corpus, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&CORPUS_VERSION.to_le_bytes())?;
    out.write_all(&SEED.to_le_bytes())?;
    out.write_all(&(TARGET_BYTES as u64).to_le_bytes())?;
    out.write_all(&(corpus.frames.len() as u64).to_le_bytes())?;
    for f in &corpus.frames {
        out.write_all(&f.offset.to_le_bytes())?;
        out.write_all(&f.len.to_le_bytes())?;
        out.write_all(&[f.kind as u8, f.non_utf8_values])?;
    }
    out.write_all(&(corpus.data.len() as u64).to_le_bytes())?;
    out.write_all(&corpus.data)?;
    Ok(())
}

struct Reader {
    bytes: Bytes,
    pos: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        let end = self.pos.checked_add(n).context("overflow")?;
        let Some(s) = self.bytes.get(self.pos..end) else {
            bail!("truncated cache");
        };
        self.pos = end;
        Ok(s)
    }
    fn u64(&mut self) -> anyhow::Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn u32(&mut self) -> anyhow::Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
}

fn decode_cache(bytes: Vec<u8>) -> anyhow::Result<Corpus> {
    let mut r = Reader {
        bytes: Bytes::from(bytes),
        pos: 0,
    };
    if r.take(8)? != MAGIC {
        bail!("bad magic");
    }
    let version = r.u32()?;
    let seed = r.u64()?;
    let target = r.u64()?;
    if version != CORPUS_VERSION || seed != SEED || target != TARGET_BYTES as u64 {
        bail!("cache is version {version}, want {CORPUS_VERSION}");
    }
    let n = r.u64()? as usize;
    let mut frames = Vec::with_capacity(n.min(10_000_000));
    for _ in 0..n {
        let offset = r.u64()?;
        let len = r.u32()?;
        let tail = r.take(2)?;
        let (kind, non_utf8_values) = (tail[0], tail[1]);
        let kind = Kind::from_u8(kind).context("bad kind")?;
        frames.push(FrameRec {
            offset,
            len,
            kind,
            non_utf8_values,
        });
    }
    let data_len = r.u64()? as usize;
    let start = r.pos;
    r.take(data_len)?;
    let data = r.bytes.slice(start..start + data_len);
    if let Some(last) = frames.last()
        && last.offset + u64::from(last.len) != data_len as u64
    {
        bail!("index does not cover the data");
    }
    Ok(Corpus { data, frames })
}

// ---------------------------------------------------------------------------------------------
// Generation

/// Values of the captured member that the templates carry and instances replace.
const TPL_MEMBER_UUID: &str = "f49d2f32-daf3-4732-8c9a-e719f25b05a4";
const TPL_START_US: u64 = 1_795_315_530_796_763;

struct Templates {
    talking_start: Event,
    talking_stop: Event,
    add_member: Event,
    del_member: Event,
    floor_member: Event,
    floor_none: Event,
    create: Event,
    channel: Vec<Event>,
    heartbeat: Event,
    background_job: Event,
}

fn parse_events(capture: &[u8]) -> anyhow::Result<Vec<Event>> {
    let (frames, rest) = esl::frame::decode_all(capture, esl::Limits::default())?;
    if rest != 0 {
        bail!("capture ends in a partial frame");
    }
    let mut out = Vec::new();
    for frame in frames {
        if let esl::Message::Event(e) = esl::Message::try_from(frame)? {
            out.push(e);
        }
    }
    Ok(out)
}

fn variable_count(e: &Event) -> usize {
    e.headers()
        .iter()
        .filter(|(n, _)| n.starts_with("variable_"))
        .count()
}

impl Templates {
    fn load() -> anyhow::Result<Templates> {
        let conf = parse_events(CONFERENCE_CAPTURE)?;
        let find = |action: &str, member: bool| -> anyhow::Result<Event> {
            conf.iter()
                .find(|e| e.get("Action") == Some(action) && e.get("Member-ID").is_some() == member)
                .cloned()
                .with_context(|| format!("no captured {action} (member: {member})"))
        };
        let session = parse_events(SESSION_CAPTURE)?;
        // The captured channel events with the most variables (one per name).
        let mut channel: Vec<Event> = Vec::new();
        for name in [
            "CHANNEL_ANSWER",
            "CHANNEL_EXECUTE",
            "CHANNEL_EXECUTE_COMPLETE",
            "CHANNEL_HANGUP",
            "CHANNEL_HANGUP_COMPLETE",
        ] {
            let best = session
                .iter()
                .filter(|e| e.event_name() == Some(name))
                .max_by_key(|e| variable_count(e))
                .cloned()
                .with_context(|| format!("no captured {name}"))?;
            channel.push(best);
        }
        let by_name = |name: &str| -> anyhow::Result<Event> {
            session
                .iter()
                .find(|e| e.event_name() == Some(name))
                .cloned()
                .with_context(|| format!("no captured {name}"))
        };
        Ok(Templates {
            talking_start: find("start-talking", true)?,
            talking_stop: find("stop-talking", true)?,
            add_member: find("add-member", true)?,
            del_member: find("del-member", true)?,
            floor_member: find("floor-change", true)?,
            floor_none: find("floor-change", false)?,
            create: find("conference-create", false)?,
            channel,
            heartbeat: by_name("HEARTBEAT")?,
            background_job: by_name("BACKGROUND_JOB")?,
        })
    }
}

#[derive(Clone, Debug)]
struct Member {
    id: u64,
    uuid: String,
    number: String,
    display: Vec<u8>,
    created_us: u64,
    talking: bool,
    energy_level: u32,
    net_addr: String,
}

#[derive(Debug)]
struct Conf {
    name: String,
    uuid: String,
    members: Vec<Member>,
    floor: Option<u64>,
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

struct Clock {
    us: u64,
    cached_sec: u64,
    local: String,
    gmt: String,
}

impl Clock {
    fn new(us: u64) -> Clock {
        let mut c = Clock {
            us,
            cached_sec: u64::MAX,
            local: String::new(),
            gmt: String::new(),
        };
        c.refresh();
        c
    }

    fn refresh(&mut self) {
        let sec = self.us / 1_000_000;
        if sec == self.cached_sec {
            return;
        }
        self.cached_sec = sec;
        let days = (sec / 86_400) as i64;
        let rem = sec % 86_400;
        let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let (y, m, d) = civil(days);
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let wd = DAYS[(days.rem_euclid(7)) as usize];
        let mon = MONTHS[(m as usize).saturating_sub(1) % 12];
        self.local = format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}");
        self.gmt = format!("{wd}, {d:02} {mon} {y:04} {h:02}:{mi:02}:{s:02} GMT");
    }

    fn advance(&mut self, us: u64) {
        self.us += us;
        self.refresh();
    }
}

const FIRST_NAMES: &[&str] = &[
    "Ann", "Bob", "Chen", "Dara", "Eve", "Femi", "Gita", "Hugo", "Ines", "Jon", "Kai", "Lena",
];
const LATIN1_NAMES: &[&[u8]] = &[
    b"Jos\xe9 Mart\xednez",
    b"Fran\xe7ois",
    b"J\xfcrgen M\xfcller",
    b"S\xf8ren",
    b"In\xeas \xc1lvares",
];

struct Gen {
    rng: StdRng,
    t: Templates,
    clock: Clock,
    seq: u64,
    next_member_id: u64,
    confs: Vec<Conf>,
    out: BytesMut,
    frames: Vec<FrameRec>,
    body: Vec<u8>,
    target: usize,
}

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Replaces every occurrence of each `from` with its `to` in `value`; `None` when nothing matched.
fn substitute(value: &[u8], pairs: &[(&[u8], &[u8])]) -> Option<Vec<u8>> {
    let mut current: Option<Vec<u8>> = None;
    for (from, to) in pairs {
        let src = current.as_deref().unwrap_or(value);
        if memchr::memmem::find(src, from).is_none() {
            continue;
        }
        let mut out = Vec::with_capacity(src.len() + 16);
        let mut rest = src;
        while let Some(pos) = memchr::memmem::find(rest, from) {
            out.extend_from_slice(&rest[..pos]);
            out.extend_from_slice(to);
            rest = &rest[pos + from.len()..];
        }
        out.extend_from_slice(rest);
        current = Some(out);
    }
    current
}

impl Gen {
    fn new(t: Templates, target: usize) -> Gen {
        Gen {
            target,
            rng: StdRng::seed_from_u64(SEED),
            t,
            clock: Clock::new(TPL_START_US + 3_600_000_000),
            seq: 10_000,
            next_member_id: 1,
            confs: Vec::new(),
            out: BytesMut::with_capacity(target + 8 * 1024 * 1024),
            frames: Vec::new(),
            body: Vec::new(),
        }
    }

    fn new_member(&mut self, conf_name: &str) -> Member {
        let id = self.next_member_id;
        self.next_member_id += 1;
        let number = format!("{}", 1000 + self.rng.random_range(0..9000u32));
        let display = if self.rng.random_bool(0.06) {
            LATIN1_NAMES[self.rng.random_range(0..LATIN1_NAMES.len())].to_vec()
        } else {
            let first = FIRST_NAMES[self.rng.random_range(0..FIRST_NAMES.len())];
            format!("{first} ({conf_name}/{number})").into_bytes()
        };
        Member {
            id,
            uuid: uuid(&mut self.rng),
            number,
            display,
            created_us: self.clock.us,
            talking: false,
            energy_level: 100 + 50 * self.rng.random_range(0..5u32),
            net_addr: format!(
                "10.{}.{}.{}",
                self.rng.random_range(0..255u8),
                self.rng.random_range(0..255u8),
                self.rng.random_range(1..255u8)
            ),
        }
    }

    /// Emits `tpl` with its values replaced by `value_for` (name, captured value) → new value.
    fn emit(
        &mut self,
        kind: Kind,
        tpl_idx: TplRef,
        body: Option<Bytes>,
        value_for: &mut ValueFor<'_>,
        extra_vars: Option<usize>,
    ) {
        let tpl = self.template(tpl_idx);
        let mut headers = Headers::new();
        let mut non_utf8 = 0u32;
        let last_var_index = tpl
            .headers()
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| n.starts_with("variable_"))
            .map(|(i, _)| i)
            .last();
        let mut vars_written = 0usize;
        let pairs: Vec<(String, Vec<u8>)> = tpl
            .headers()
            .iter_bytes()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect();
        let (seq, ts) = (self.seq, self.clock.us);
        let (local, gmt) = (self.clock.local.clone(), self.clock.gmt.clone());
        for (i, (name, value)) in pairs.iter().enumerate() {
            let is_var = name.starts_with("variable_");
            if is_var && extra_vars.is_some_and(|want| vars_written >= want) {
                continue;
            }
            let new = match name.as_str() {
                "Core-UUID" | "variable_Core-UUID" => None,
                "Event-Date-Local" => Some(local.clone().into_bytes()),
                "Event-Date-GMT" => Some(gmt.clone().into_bytes()),
                "Event-Date-Timestamp" => Some(ts.to_string().into_bytes()),
                "Event-Sequence" => Some(seq.to_string().into_bytes()),
                _ => value_for(&mut self.rng, name, value),
            };
            let value = new.as_deref().unwrap_or(value);
            if std::str::from_utf8(value).is_err() {
                non_utf8 += 1;
            }
            headers.push_bytes(name, value);
            vars_written += usize::from(is_var);
            if Some(i) == last_var_index
                && let Some(want) = extra_vars
            {
                while vars_written < want {
                    let (n, v) = self.synthetic_variable(vars_written);
                    if std::str::from_utf8(&v).is_err() {
                        non_utf8 += 1;
                    }
                    headers.push_bytes(&n, &v);
                    vars_written += 1;
                }
            }
        }
        let event = Event::new(headers, body);
        let offset = self.out.len() as u64;
        esl::serialize::event_frame(&mut self.out, EventFormat::Plain, &event);
        self.frames.push(FrameRec {
            offset,
            len: (self.out.len() as u64 - offset) as u32,
            kind,
            non_utf8_values: non_utf8.min(255) as u8,
        });
        self.seq += 1;
        let step = self.rng.random_range(20..1500u64);
        self.clock.advance(step);
    }

    fn synthetic_variable(&mut self, i: usize) -> (String, Vec<u8>) {
        const PREFIXES: &[&str] = &[
            "sip_h_X-Tenant-",
            "sip_rh_X-Trace-",
            "rtp_audio_in_",
            "rtp_audio_out_",
            "switchyard_meta_",
            "sip_i_",
            "conference_param_",
        ];
        let prefix = PREFIXES[self.rng.random_range(0..PREFIXES.len())];
        let name = format!("variable_{prefix}{i}");
        let value = match self.rng.random_range(0..100u32) {
            0..=39 => self
                .rng
                .random_range(0..10_000_000u64)
                .to_string()
                .into_bytes(),
            40..=69 => {
                let mut s = String::new();
                for _ in 0..self.rng.random_range(8..40) {
                    s.push(char::from(self.rng.random_range(b'a'..=b'z')));
                }
                s.into_bytes()
            }
            70..=94 => format!(
                "sip:{}@10.0.{}.{}:5060;transport=tcp user=\"x y\" q=0.{}",
                self.rng.random_range(1000..9999u32),
                self.rng.random_range(0..255u8),
                self.rng.random_range(1..255u8),
                self.rng.random_range(1..9u8)
            )
            .into_bytes(),
            _ => {
                // Raw bytes from a SIP header in a legacy encoding: %XX of non-UTF-8 on the wire.
                let mut v = b"legacy ".to_vec();
                for _ in 0..self.rng.random_range(3..12) {
                    v.push(self.rng.random_range(0x80..=0xffu8));
                }
                v
            }
        };
        (name, value)
    }

    fn template(&self, r: TplRef) -> &Event {
        match r {
            TplRef::TalkStart => &self.t.talking_start,
            TplRef::TalkStop => &self.t.talking_stop,
            TplRef::Add => &self.t.add_member,
            TplRef::Del => &self.t.del_member,
            TplRef::FloorMember => &self.t.floor_member,
            TplRef::FloorNone => &self.t.floor_none,
            TplRef::Create => &self.t.create,
            TplRef::Channel(i) => &self.t.channel[i % self.t.channel.len()],
            TplRef::Heartbeat => &self.t.heartbeat,
            TplRef::BackgroundJob => &self.t.background_job,
        }
    }

    fn conference_event(
        &mut self,
        kind: Kind,
        tpl: TplRef,
        ci: usize,
        member: Option<&Member>,
        ids: Option<(String, String)>,
    ) {
        let conf = &self.confs[ci];
        let (name, cuuid, size, floor) = (
            conf.name.clone(),
            conf.uuid.clone(),
            conf.members.len(),
            conf.floor,
        );
        let member = member.cloned();
        let mut f = |rng: &mut StdRng, h: &str, v: &[u8]| -> Option<Vec<u8>> {
            let s = |x: &str| Some(x.as_bytes().to_vec());
            match h {
                "Conference-Name" | "Caller-Destination-Number" => return s(&name),
                "Conference-Unique-ID" => return s(&cuuid),
                "Conference-Size" => return s(&size.to_string()),
                "Old-ID" => return ids.as_ref().map(|i| i.0.clone().into_bytes()),
                "New-ID" => return ids.as_ref().map(|i| i.1.clone().into_bytes()),
                _ => {}
            }
            let m = member.as_ref()?;
            match h {
                "Floor" => s(if floor == Some(m.id) { "true" } else { "false" }),
                "Channel-Name" | "Caller-Channel-Name" => {
                    s(&format!("sofia/internal/{}@127.0.0.1", m.number))
                }
                "Unique-ID" | "Channel-Call-UUID" | "Caller-Unique-ID" => s(&m.uuid),
                "Channel-Presence-ID" => s(&format!("{}@127.0.0.1", m.number)),
                "Caller-Username"
                | "Caller-Caller-ID-Number"
                | "Caller-Orig-Caller-ID-Number"
                | "Caller-ANI" => s(&m.number),
                "Caller-Caller-ID-Name" | "Caller-Orig-Caller-ID-Name" => Some(m.display.clone()),
                "Caller-Network-Addr" => s(&m.net_addr),
                "Caller-Profile-Created-Time"
                | "Caller-Channel-Created-Time"
                | "Caller-Channel-Answered-Time"
                | "Caller-Channel-Progress-Media-Time" => s(&m.created_us.to_string()),
                "Talking" => s(if m.talking { "true" } else { "false" }),
                "Member-ID" => s(&m.id.to_string()),
                "Energy-Level" => s(&m.energy_level.to_string()),
                "Current-Energy" => s(&rng.random_range(0..1800u32).to_string()),
                _ => {
                    let _ = v;
                    None
                }
            }
        };
        self.emit(kind, tpl, None, &mut f, None);
    }

    fn channel_event(&mut self, tpl: usize, member: &Member) {
        let want = self.rng.random_range(100..=300usize);
        let m = member.clone();
        let presence = format!("{}@127.0.0.1", m.number);
        let channel = format!("sofia/internal/{}@127.0.0.1", m.number);
        let at = format!("{}@", m.number);
        let mut f = move |_: &mut StdRng, h: &str, v: &[u8]| -> Option<Vec<u8>> {
            let s = |x: &str| Some(x.as_bytes().to_vec());
            match h {
                "Channel-Name" | "Caller-Channel-Name" | "variable_channel_name" => s(&channel),
                "Unique-ID" | "Channel-Call-UUID" | "Caller-Unique-ID" | "variable_uuid"
                | "variable_call_uuid" => s(&m.uuid),
                "Channel-Presence-ID" | "variable_presence_id" => s(&presence),
                "Caller-Username"
                | "Caller-Caller-ID-Number"
                | "Caller-Orig-Caller-ID-Number"
                | "Caller-ANI"
                | "variable_sip_from_user"
                | "variable_user_name" => s(&m.number),
                "Caller-Caller-ID-Name"
                | "Caller-Orig-Caller-ID-Name"
                | "variable_sip_from_display"
                | "variable_effective_caller_id_name" => Some(m.display.clone()),
                "Caller-Network-Addr" | "variable_sip_network_ip" | "variable_sip_received_ip" => {
                    s(&m.net_addr)
                }
                _ => substitute(
                    v,
                    &[
                        (TPL_MEMBER_UUID.as_bytes(), m.uuid.as_bytes()),
                        (b"1001@", at.as_bytes()),
                    ],
                ),
            }
        };
        self.emit(
            Kind::Channel,
            TplRef::Channel(tpl),
            None,
            &mut f,
            Some(want),
        );
    }

    fn heartbeat(&mut self, n: u64) {
        let sessions = self.confs.iter().map(|c| c.members.len()).sum::<usize>();
        let uptime_ms = (self.clock.us - TPL_START_US) / 1000;
        let mut f = move |rng: &mut StdRng, h: &str, _: &[u8]| -> Option<Vec<u8>> {
            let s = |x: String| Some(x.into_bytes());
            match h {
                "Uptime-msec" => s(uptime_ms.to_string()),
                "Up-Time" => s(format!(
                    "0 years, 0 days, {} hours, {} minutes, {} seconds, {} milliseconds, {} microseconds",
                    uptime_ms / 3_600_000,
                    uptime_ms / 60_000 % 60,
                    uptime_ms / 1000 % 60,
                    uptime_ms % 1000,
                    rng.random_range(0..1000u32)
                )),
                "Session-Count" => s(sessions.to_string()),
                "Session-Since-Startup" => s((sessions as u64 + n * 7).to_string()),
                "Idle-CPU" => s(format!("{:.6}", rng.random_range(40.0..99.0f64))),
                _ => None,
            }
        };
        self.emit(Kind::Heartbeat, TplRef::Heartbeat, None, &mut f, None);
    }

    fn background_job(&mut self) {
        // 100 KB..4 MB (capped for the small corpora of the tests).
        let max = (4 * 1024 * 1024usize)
            .min(self.target / 16)
            .max(100 * 1024 + 1);
        let size = self.rng.random_range(100 * 1024..=max);
        self.body.clear();
        let conf = &self.confs[self.rng.random_range(0..self.confs.len())];
        let _ = writeln!(
            Utf8Sink(&mut self.body),
            "+OK Conference {} ({} members rate: 8000 flags: running|answered|enforce_min|dynamic|exit_sound|enter_sound|json_status)",
            conf.name,
            conf.members.len()
        );
        let mut i = 0u64;
        while self.body.len() < size {
            i += 1;
            let _ = writeln!(
                Utf8Sink(&mut self.body),
                "{};sofia/internal/{}@127.0.0.1;{:08x}-0ac5-4ebe-b690-7b3fa1c0ee0c;Ext {};{};hear|speak;0;0;100",
                i,
                1000 + i % 9000,
                i,
                1000 + i % 9000,
                1000 + i % 9000
            );
        }
        self.body.truncate(size);
        let body = Bytes::from(self.body.clone());
        let job = uuid(&mut self.rng);
        let mut f = move |_: &mut StdRng, h: &str, _: &[u8]| -> Option<Vec<u8>> {
            match h {
                "Job-UUID" => Some(job.clone().into_bytes()),
                _ => None,
            }
        };
        self.emit(
            Kind::BackgroundJob,
            TplRef::BackgroundJob,
            Some(body),
            &mut f,
            None,
        );
    }

    fn run(mut self) -> Corpus {
        const CONFERENCES: usize = 24;
        // Background jobs at fixed byte positions, so there are a handful whatever the mix.
        let bg_every = self.target / 11;
        let mut next_bg = bg_every / 2;
        for c in 0..CONFERENCES {
            let name = format!("{}", 3000 + c);
            let conf = Conf {
                uuid: uuid(&mut self.rng),
                name,
                members: Vec::new(),
                floor: None,
            };
            self.confs.push(conf);
            self.conference_event(Kind::ConferenceOther, TplRef::Create, c, None, None);
            for _ in 0..self.rng.random_range(3..8) {
                self.add_member(c);
            }
        }
        let mut events = 0u64;
        let mut heartbeats = 0u64;
        while self.out.len() < self.target {
            events += 1;
            if events.is_multiple_of(2000) {
                heartbeats += 1;
                self.heartbeat(heartbeats);
                continue;
            }
            if self.out.len() >= next_bg {
                next_bg += bg_every;
                self.background_job();
                continue;
            }
            let ci = self.rng.random_range(0..self.confs.len());
            let roll = self.rng.random_range(0..1000u32);
            let size = self.confs[ci].members.len();
            match roll {
                0..=24 if size < 40 => self.add_member(ci),
                25..=49 if size > 2 => self.del_member(ci),
                50..=149 => self.floor_change(ci),
                150..=179 => {
                    let m = self.confs[ci].members[self.rng.random_range(0..size)].clone();
                    let tpl = self.rng.random_range(0..self.t.channel.len());
                    self.channel_event(tpl, &m);
                }
                _ => self.talk(ci),
            }
        }
        Corpus {
            data: self.out.freeze(),
            frames: self.frames,
        }
    }

    fn add_member(&mut self, ci: usize) {
        let name = self.confs[ci].name.clone();
        let m = self.new_member(&name);
        self.channel_event(0, &m); // CHANNEL_ANSWER
        self.confs[ci].members.push(m.clone());
        self.conference_event(Kind::Membership, TplRef::Add, ci, Some(&m), None);
    }

    fn del_member(&mut self, ci: usize) {
        let idx = self.rng.random_range(0..self.confs[ci].members.len());
        let m = self.confs[ci].members.remove(idx);
        if self.confs[ci].floor == Some(m.id) {
            self.confs[ci].floor = None;
        }
        self.conference_event(Kind::Membership, TplRef::Del, ci, Some(&m), None);
        self.channel_event(4, &m); // CHANNEL_HANGUP_COMPLETE
    }

    fn floor_change(&mut self, ci: usize) {
        let conf = &self.confs[ci];
        let old = conf
            .floor
            .map_or_else(|| "none".to_owned(), |id| id.to_string());
        if conf.members.is_empty() || self.rng.random_bool(0.15) {
            self.confs[ci].floor = None;
            self.conference_event(
                Kind::Floor,
                TplRef::FloorNone,
                ci,
                None,
                Some((old, "none".to_owned())),
            );
            return;
        }
        let idx = self.rng.random_range(0..conf.members.len());
        let m = conf.members[idx].clone();
        self.confs[ci].floor = Some(m.id);
        self.conference_event(
            Kind::Floor,
            TplRef::FloorMember,
            ci,
            Some(&m),
            Some((old, m.id.to_string())),
        );
    }

    fn talk(&mut self, ci: usize) {
        let n = self.confs[ci].members.len();
        if n == 0 {
            return;
        }
        let idx = self.rng.random_range(0..n);
        let talking = !self.confs[ci].members[idx].talking;
        self.confs[ci].members[idx].talking = talking;
        let m = self.confs[ci].members[idx].clone();
        let tpl = if talking {
            TplRef::TalkStart
        } else {
            TplRef::TalkStop
        };
        self.conference_event(Kind::Talking, tpl, ci, Some(&m), None);
    }
}

/// Given (rng, header name, captured value), the new value or `None` to keep the captured one.
type ValueFor<'a> = dyn FnMut(&mut StdRng, &str, &[u8]) -> Option<Vec<u8>> + 'a;

#[derive(Clone, Copy, Debug)]
enum TplRef {
    TalkStart,
    TalkStop,
    Add,
    Del,
    FloorMember,
    FloorNone,
    Create,
    Channel(usize),
    Heartbeat,
    BackgroundJob,
}

/// `fmt::Write` into a byte vector.
struct Utf8Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Generates the corpus (deterministic).
pub fn generate() -> anyhow::Result<Corpus> {
    generate_sized(TARGET_BYTES)
}

/// Generates a corpus of about `target` bytes (the same generator; tests use small ones).
pub fn generate_sized(target: usize) -> anyhow::Result<Corpus> {
    let t = Templates::load()?;
    Ok(Gen::new(t, target).run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        // 2026-11-22 (the capture's date).
        assert_eq!(civil(1_795_315_530 / 86_400), (2026, 11, 22));
        let c = Clock::new(TPL_START_US);
        assert_eq!(c.gmt, "Sun, 22 Nov 2026 02:45:30 GMT");
        assert_eq!(c.local, "2026-11-22 02:45:30");
    }

    #[test]
    fn templates_load() {
        let t = Templates::load().expect("templates");
        assert!(t.channel.iter().all(|e| variable_count(e) >= 100));
        assert_eq!(t.floor_none.get("New-ID"), Some("none"));
    }

    /// Every generated frame decodes, is classified as generated, and re-serializes to the same
    /// bytes (so the corpus is exactly what `esl::serialize` writes, i.e. FreeSWITCH's format).
    #[test]
    fn small_corpus_round_trips() {
        let corpus = generate_sized(12 * 1024 * 1024).expect("generate");
        assert!(corpus.frames.len() > 1000, "{} frames", corpus.frames.len());
        let kinds: std::collections::HashSet<Kind> = corpus.frames.iter().map(|f| f.kind).collect();
        assert!(kinds.len() >= 6, "{kinds:?}");
        let mut non_utf8 = 0;
        for rec in &corpus.frames {
            let bytes = corpus.frame_bytes(rec);
            let (frames, rest) =
                esl::frame::decode_all(bytes, esl::Limits::default()).expect("frame");
            assert_eq!((frames.len(), rest), (1, 0));
            let frame = frames.into_iter().next().expect("one frame");
            let esl::Message::Event(event) = esl::Message::try_from(frame).expect("event") else {
                panic!("not an event");
            };
            assert_eq!(event.conference().is_some(), rec.kind.is_conference());
            let mut again = BytesMut::new();
            esl::serialize::event_frame(&mut again, EventFormat::Plain, &event);
            assert_eq!(&again[..], bytes);
            let bad = event
                .headers()
                .iter_bytes()
                .filter(|(_, v)| std::str::from_utf8(v).is_err())
                .count();
            assert_eq!(bad, usize::from(rec.non_utf8_values));
            non_utf8 += bad;
            if rec.kind == Kind::Channel {
                let vars = variable_count(&event);
                assert!((100..=300).contains(&vars), "{vars} variables");
            }
        }
        assert!(non_utf8 > 0);
    }

    #[test]
    fn cache_round_trips() {
        let corpus = generate_sized(1024 * 1024).expect("generate");
        let mut bytes = Vec::new();
        encode_cache(&corpus, &mut bytes).expect("encode");
        let back = decode_cache(bytes.clone()).expect("decode");
        assert_eq!(back.data, corpus.data);
        assert_eq!(back.frames.len(), corpus.frames.len());
        bytes.truncate(bytes.len() - 1);
        assert!(decode_cache(bytes).is_err());
    }

    #[test]
    fn substitute_replaces_all() {
        assert_eq!(
            substitute(b"a-x-b-x", &[(b"x", b"yy")]).as_deref(),
            Some(&b"a-yy-b-yy"[..])
        );
        assert_eq!(substitute(b"abc", &[(b"x", b"y")]), None);
    }
}
