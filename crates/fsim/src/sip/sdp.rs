//! SDP offer/answer (RFC 3264) just deep enough for a WebRTC browser: fsim has no media, but
//! Chromium's `setRemoteDescription` must accept the answer or JsSIP fails the call.
//!
//! The answer keeps the offer's m-lines in order (RFC 3264 §6), accepts audio (opus, else
//! PCMU/PCMA) and video (VP8, else H264) with one codec each, rejects everything else with port
//! 0, echoes the mids into the BUNDLE group, and speaks ICE-lite + DTLS (`a=setup:active` to an
//! `actpass` offer) with one host candidate. Nothing ever listens on that candidate.

use std::fmt::Write as _;

/// Why an offer cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("not an SDP offer (no v= line)")]
    NotSdp,
    #[error("the offer has no m= line")]
    NoMedia,
    #[error("bad m= line {0:?}")]
    BadMedia(String),
    #[error("no acceptable audio or video codec in the offer")]
    NoCodec,
}

/// One `m=` section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    /// `a=` lines as (name, value).
    pub attrs: Vec<(String, Option<String>)>,
}

impl MediaSection {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    fn attrs_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attrs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// `(payload type, encoding/rate[/channels])` of every rtpmap.
    fn rtpmaps(&self) -> Vec<(&str, &str)> {
        self.attrs_named("rtpmap")
            .filter_map(|v| v.split_once(' '))
            .map(|(pt, enc)| (pt.trim(), enc.trim()))
            .collect()
    }

    /// The payload type of the first offered format whose encoding is `codec`.
    fn payload_type(&self, codec: &str) -> Option<(String, String)> {
        let maps = self.rtpmaps();
        self.formats.iter().find_map(|pt| {
            let enc = maps.iter().find(|(p, _)| p == pt).map(|(_, e)| *e);
            let static_enc = match (pt.as_str(), codec) {
                ("0", "PCMU") => Some("PCMU/8000"),
                ("8", "PCMA") => Some("PCMA/8000"),
                _ => None,
            };
            let enc = enc.or(static_enc)?;
            let name = enc.split('/').next().unwrap_or_default();
            name.eq_ignore_ascii_case(codec)
                .then(|| (pt.clone(), enc.to_owned()))
        })
    }
}

/// A parsed offer: session-level attributes and the media sections in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub session_attrs: Vec<(String, Option<String>)>,
    pub media: Vec<MediaSection>,
}

impl Offer {
    pub fn parse(text: &str) -> Result<Offer, SdpError> {
        let mut lines = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .peekable();
        if !lines.peek().is_some_and(|l| l.starts_with("v=")) {
            return Err(SdpError::NotSdp);
        }
        let mut session_attrs = Vec::new();
        let mut media: Vec<MediaSection> = Vec::new();
        for line in lines {
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "m" => {
                    let mut parts = value.split_whitespace();
                    let (Some(kind), Some(port), Some(proto)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(SdpError::BadMedia(value.chars().take(80).collect()));
                    };
                    // `port/count` is allowed; only the port matters.
                    let port = port
                        .split('/')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| SdpError::BadMedia(value.chars().take(80).collect()))?;
                    media.push(MediaSection {
                        kind: kind.to_owned(),
                        port,
                        proto: proto.to_owned(),
                        formats: parts.map(str::to_owned).collect(),
                        attrs: Vec::new(),
                    });
                }
                "a" => {
                    let attr = match value.split_once(':') {
                        Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                        None => (value.to_owned(), None),
                    };
                    match media.last_mut() {
                        Some(m) => m.attrs.push(attr),
                        None => session_attrs.push(attr),
                    }
                }
                _ => {}
            }
        }
        if media.is_empty() {
            return Err(SdpError::NoMedia);
        }
        Ok(Offer {
            session_attrs,
            media,
        })
    }

    fn session_attr(&self, name: &str) -> Option<&str> {
        self.session_attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

/// The node's side of the answer.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    pub ip: String,
    pub port: u16,
    pub session_id: u64,
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// `AA:BB:...` (32 byte pairs).
    pub fingerprint: String,
}

impl LocalMedia {
    /// Random ICE credentials and a random fingerprint (no DTLS ever happens).
    pub fn random(ip: &str, port: u16, session_id: u64) -> LocalMedia {
        use rand::Rng;
        let mut rng = rand::rng();
        let token = |rng: &mut rand::rngs::ThreadRng, n: usize| -> String {
            (0..n)
                .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
                .collect()
        };
        let fingerprint = (0..32)
            .map(|_| format!("{:02X}", rng.random::<u8>()))
            .collect::<Vec<_>>()
            .join(":");
        LocalMedia {
            ip: ip.to_owned(),
            port,
            session_id,
            ice_ufrag: token(&mut rng, 16),
            ice_pwd: token(&mut rng, 24),
            fingerprint,
        }
    }
}

/// What the answer accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub sdp: String,
    /// `(kind, codec name)` of each accepted m-line.
    pub codecs: Vec<(String, String)>,
    /// The first accepted audio m-line's codec: what the channel reads and writes.
    pub audio: Option<AudioChoice>,
}

/// The audio codec an answer chose, as the offer described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioChoice {
    /// Payload type (`111`).
    pub pt: String,
    /// The rtpmap encoding (`opus/48000/2`, `PCMU/8000`).
    pub encoding: String,
    /// The offer's fmtp for that payload type (`minptime=10;useinbandfec=1`).
    pub fmtp: Option<String>,
    /// The m-line's `a=ptime`.
    pub ptime: Option<u32>,
}

fn ip_kind(ip: &str) -> &'static str {
    if ip.contains(':') { "IP6" } else { "IP4" }
}

/// Answers `offer` (see the module docs).
pub fn answer(offer: &Offer, local: &LocalMedia) -> Result<Answer, SdpError> {
    let ipk = ip_kind(&local.ip);
    let webrtc = offer.session_attr("fingerprint").is_some()
        || offer.media.iter().any(|m| m.attr("fingerprint").is_some());
    let mut body = String::new();
    let mut codecs = Vec::new();
    let mut accepted_mids = Vec::new();
    let mut audio = None;
    for m in &offer.media {
        let choice = if m.port == 0 {
            None
        } else {
            match m.kind.as_str() {
                "audio" => ["opus", "PCMU", "PCMA"]
                    .iter()
                    .find_map(|c| m.payload_type(c)),
                "video" => ["VP8", "H264"].iter().find_map(|c| m.payload_type(c)),
                _ => None,
            }
        };
        let Some((pt, encoding)) = choice else {
            // Rejected: port 0, formats as offered, mid kept so BUNDLE still lines up.
            let _ = write!(
                body,
                "m={} 0 {} {}\r\nc=IN {ipk} {}\r\n",
                m.kind,
                m.proto,
                m.formats.join(" "),
                local.ip
            );
            if let Some(mid) = m.attr("mid") {
                let _ = write!(body, "a=mid:{mid}\r\n");
            }
            continue;
        };
        let _ = write!(
            body,
            "m={} {} {} {pt}\r\nc=IN {ipk} {}\r\n",
            m.kind, local.port, m.proto, local.ip
        );
        if let Some(mid) = m.attr("mid") {
            let _ = write!(body, "a=mid:{mid}\r\n");
            accepted_mids.push(mid.to_owned());
        }
        let direction = match () {
            _ if m.attr("sendonly").is_some() => "recvonly",
            _ if m.attr("recvonly").is_some() => "sendonly",
            _ if m.attr("inactive").is_some() => "inactive",
            _ => "sendrecv",
        };
        let _ = write!(body, "a={direction}\r\n");
        let _ = write!(body, "a=rtpmap:{pt} {encoding}\r\n");
        let fmtp_prefix = format!("{pt} ");
        for fmtp in m
            .attrs_named("fmtp")
            .filter(|f| f.starts_with(&fmtp_prefix))
        {
            let _ = write!(body, "a=fmtp:{fmtp}\r\n");
        }
        for fb in m
            .attrs_named("rtcp-fb")
            .filter(|f| f.starts_with(&fmtp_prefix))
        {
            let _ = write!(body, "a=rtcp-fb:{fb}\r\n");
        }
        if m.attr("rtcp-mux").is_some() {
            body.push_str("a=rtcp-mux\r\n");
        }
        if webrtc {
            let offered_setup = m
                .attr("setup")
                .or_else(|| offer.session_attr("setup"))
                .unwrap_or("actpass");
            let setup = if offered_setup.eq_ignore_ascii_case("active") {
                "passive"
            } else {
                "active"
            };
            let _ = write!(
                body,
                "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n\
                 a=candidate:1 1 udp 2130706431 {} {} typ host\r\na=end-of-candidates\r\n",
                local.ice_ufrag, local.ice_pwd, local.fingerprint, local.ip, local.port
            );
        }
        if m.kind == "audio" && audio.is_none() {
            audio = Some(AudioChoice {
                pt: pt.clone(),
                encoding: encoding.clone(),
                fmtp: m
                    .attrs_named("fmtp")
                    .find_map(|f| f.strip_prefix(&fmtp_prefix))
                    .map(|f| f.trim().to_owned()),
                ptime: m.attr("ptime").and_then(|p| p.trim().parse().ok()),
            });
        }
        codecs.push((
            m.kind.clone(),
            encoding.split('/').next().unwrap_or_default().to_owned(),
        ));
    }
    if codecs.is_empty() {
        return Err(SdpError::NoCodec);
    }
    let mut sdp = format!(
        "v=0\r\no=FreeSWITCH {} {} IN {ipk} {ip}\r\ns=FreeSWITCH\r\nt=0 0\r\n",
        local.session_id,
        local.session_id + 1,
        ip = local.ip
    );
    if webrtc {
        sdp.push_str("a=ice-lite\r\n");
    }
    let bundled = offer
        .session_attr("group")
        .is_some_and(|g| g.starts_with("BUNDLE"));
    if bundled && !accepted_mids.is_empty() {
        let _ = write!(sdp, "a=group:BUNDLE {}\r\n", accepted_mids.join(" "));
    }
    if webrtc {
        sdp.push_str("a=msid-semantic: WMS\r\n");
    }
    sdp.push_str(&body);
    Ok(Answer { sdp, codecs, audio })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// The shape of Chromium's offer through JsSIP 3.x (audio + video + data channel).
    pub(crate) const CHROME_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS 5d3c\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:3 1 udp 2122260223 192.168.1.20 51500 typ host generation 0\r\n\
a=ice-ufrag:Xz3b\r\n\
a=ice-pwd:Fqq2rXy5hJ6nD0cQ3fW7b9aL\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 3B:7A:15:0C:6D:2E:61:88:A6:A1:9B:4C:33:21:F0:7E:DA:90:43:0E:B8:7C:11:5D:20:39:67:45:CE:93:16:AF\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:5d3c 8a1f\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:1001 cname:abc\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Xz3b\r\n\
a=ice-pwd:Fqq2rXy5hJ6nD0cQ3fW7b9aL\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 3B:7A:15:0C:6D:2E:61:88:A6:A1:9B:4C:33:21:F0:7E:DA:90:43:0E:B8:7C:11:5D:20:39:67:45:CE:93:16:AF\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n\
a=rtpmap:45 AV1/90000\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:2\r\n\
a=sctp-port:5000\r\n";

    fn local() -> LocalMedia {
        LocalMedia::random("127.0.0.1", 23456, 1000)
    }

    #[test]
    fn answers_chrome_offer() {
        let offer = Offer::parse(CHROME_OFFER).unwrap();
        let a = answer(&offer, &local()).unwrap();
        assert_eq!(
            a.codecs,
            [
                ("audio".to_owned(), "opus".to_owned()),
                ("video".to_owned(), "VP8".to_owned())
            ]
        );
        let sdp = &a.sdp;
        let m_lines: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            [
                "m=audio 23456 UDP/TLS/RTP/SAVPF 111",
                "m=video 23456 UDP/TLS/RTP/SAVPF 96",
                "m=application 0 UDP/DTLS/SCTP webrtc-datachannel"
            ]
        );
        assert!(sdp.contains("a=group:BUNDLE 0 1\r\n"));
        assert!(
            sdp.contains("\r\nc=IN IP4 "),
            "connection lines name the network type"
        );
        assert!(sdp.contains("a=ice-lite\r\n"));
        assert!(sdp.contains("a=setup:active\r\n"));
        assert!(sdp.contains("a=fmtp:111 minptime=10;useinbandfec=1\r\n"));
        assert!(sdp.contains("a=mid:2\r\n"));
        assert!(sdp.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 23456 typ host\r\n"));
        let ufrag = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .unwrap();
        let pwd = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-pwd:"))
            .unwrap();
        assert!(ufrag.len() >= 4 && pwd.len() >= 22);
        let fp = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=fingerprint:sha-256 "))
            .unwrap();
        assert_eq!(fp.split(':').count(), 32);
        assert!(
            fp.split(':')
                .all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok())
        );
        assert!(sdp.ends_with("\r\n"));
    }

    #[test]
    fn reports_the_audio_choice_with_the_offers_fmtp() {
        let offer = Offer::parse(CHROME_OFFER).unwrap();
        let a = answer(&offer, &local()).unwrap();
        assert_eq!(
            a.audio,
            Some(AudioChoice {
                pt: "111".into(),
                encoding: "opus/48000/2".into(),
                fmtp: Some("minptime=10;useinbandfec=1".into()),
                ptime: None,
            })
        );
        // Without opus: PCMU (static payload type, no rtpmap needed) and the m-line's ptime.
        let pcmu =
            "v=0\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=ptime:30\r\n";
        let a = answer(&Offer::parse(pcmu).unwrap(), &local()).unwrap();
        assert_eq!(
            a.audio,
            Some(AudioChoice {
                pt: "0".into(),
                encoding: "PCMU/8000".into(),
                fmtp: None,
                ptime: Some(30),
            })
        );
    }

    #[test]
    fn prefers_h264_when_no_vp8_and_rejects_unknown_media() {
        let offer = CHROME_OFFER
            .replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP9/90000")
            .replace("m=audio 9", "m=audio 0");
        let a = answer(&Offer::parse(&offer).unwrap(), &local()).unwrap();
        assert_eq!(a.codecs, [("video".to_owned(), "H264".to_owned())]);
        assert!(a.sdp.contains("a=fmtp:102 level-asymmetry-allowed=1"));
        assert!(a.sdp.contains("a=group:BUNDLE 1\r\n"));
    }

    #[test]
    fn plain_rtp_offer_gets_plain_answer() {
        let sipp = "v=0\r\no=user1 1 2 IN IP4 127.0.0.1\r\ns=sipp\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                    m=audio 16000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n";
        let a = answer(&Offer::parse(sipp).unwrap(), &local()).unwrap();
        assert!(a.sdp.contains("m=audio 23456 RTP/AVP 8\r\n"));
        assert!(!a.sdp.contains("fingerprint"));
    }

    #[test]
    fn bad_offers() {
        assert_eq!(Offer::parse("hello"), Err(SdpError::NotSdp));
        assert_eq!(Offer::parse("v=0\r\ns=x\r\n"), Err(SdpError::NoMedia));
        assert!(Offer::parse("v=0\r\nm=audio x RTP/AVP 0\r\n").is_err());
        let only_data = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert_eq!(
            answer(&Offer::parse(only_data).unwrap(), &local()),
            Err(SdpError::NoCodec)
        );
    }
}
