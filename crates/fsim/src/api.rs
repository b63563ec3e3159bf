//! The api commands (`api <cmd>` / `bgapi <cmd>`), with FreeSWITCH's exact output texts.
//!
//! # Why
//!
//! Switchyard reads these outputs (`conference <name> list|json_list`, `show channels as json`,
//! `status`) and matches on their error texts (`-ERR Conference 9999 not found`,
//! `-ERR Non-Existant ID 999`, `-ERR no reply`). The texts below are copied from the captures
//! (esl-api-*.txt); where no capture exists the text follows the protocol notes (§2.4), and the
//! function says so.
//!
//! Every api run fires an `API` event (`API-Command`, `API-Command-Argument`), created before
//! the command runs and fired after it, as `switch_api_execute` does: events the command itself
//! fires therefore come first on the wire, with later `Event-Sequence` numbers.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::channel::{Channel, Kind, l16};
use crate::conference::{Conference, Json, Recording};
use crate::events::{at, local_stamp, micros};
use crate::node::{FREESWITCH_VERSION, Shared, uptime_words};
use crate::ops::{Deferred, MemberOp, NodeState, Tx};

/// The output of `api conference` without arguments (the captured usage text, verbatim).
pub const CONFERENCE_USAGE: &str = include_str!("../tests/fixtures/conference-usage.txt");

/// Runs `cmd args` and returns the `api/response` body: the command's output, or
/// `-ERR <cmd> Command not found!\n`, or `-ERR no reply\n` for an empty output.
pub(crate) fn execute(shared: &Shared, cmd: &str, args: &str) -> Vec<u8> {
    shared.transact(|tx| {
        let mut event = tx.ctx.event(
            "API",
            at("switch_loadable_module.c", "switch_api_execute", 3140),
        );
        event.add("API-Command", cmd);
        event.add("API-Command-Argument", args);
        let output = dispatch(tx, cmd, args);
        tx.out.push(event.build());
        match output {
            Some(out) if out.is_empty() => b"-ERR no reply\n".to_vec(),
            Some(out) => out.into_bytes(),
            None => format!("-ERR {cmd} Command not found!\n").into_bytes(),
        }
    })
}

/// `None` for an unknown command.
fn dispatch(tx: &mut Tx<'_>, cmd: &str, args: &str) -> Option<String> {
    Some(match cmd {
        "version" => format!("FreeSWITCH Version {FREESWITCH_VERSION} ( 64bit)\n"),
        "status" => status(tx),
        "hostname" | "switchname" => tx.cfg.name.clone(),
        "show" => show(tx, args),
        "conference" => conference(tx, args),
        "sofia" => sofia(tx, args),
        "uuid_kill" => uuid_kill(tx, args),
        "uuid_exists" => {
            let uuid = args.split_whitespace().next().unwrap_or("");
            tx.st.channels.contains_key(uuid).to_string()
        }
        "hupall" => hupall(tx, args),
        "originate" => originate(tx, args),
        "eval" => args.to_owned(),
        // mod_commands writes the value with no newline ("" when unset, which the ESL layer
        // turns into `-ERR no reply`). Not captured: read from FreeSWITCH's source
        // (switch_core.c sets `core_uuid` at start). fsim knows the variables Switchyard reads.
        "global_getvar" => match args.trim() {
            "core_uuid" => tx.st.core_uuid.clone(),
            "hostname" | "switchname" => tx.cfg.name.clone(),
            _ => String::new(),
        },
        _ => return None,
    })
}

/// `status` (layout of esl-api-status.txt).
fn status(tx: &Tx<'_>) -> String {
    let st = &tx.st;
    let live = st.channels.len();
    let mut out = String::new();
    let _ = writeln!(out, "UP {}", uptime_words(st.started.elapsed()));
    let _ = writeln!(
        out,
        "FreeSWITCH (Version {}  64bit) is ready",
        FREESWITCH_VERSION.trim_end_matches("~64bit")
    );
    let _ = writeln!(out, "{} session(s) since startup", st.session_seq);
    let _ = writeln!(
        out,
        "{} session(s) - peak {}, last 5min {} ",
        live,
        st.stats.peak,
        st.stats.peak_fivemin(live)
    );
    let _ = writeln!(
        out,
        "{} session(s) per Sec out of max {}, peak {}, last 5min {} ",
        st.stats.sps_last(),
        tx.cfg.max_sps,
        st.stats.sps_peak(),
        st.stats.sps_peak_fivemin()
    );
    let _ = writeln!(out, "{} session(s) max", tx.cfg.max_sessions);
    let _ = writeln!(out, "min idle cpu 0.00/{:.2}", st.idle_cpu());
    out.push_str("Current Stack Size/Max 240K/8192K\n");
    out
}

// -------------------------------------------------------------------------------------------
// show
// -------------------------------------------------------------------------------------------

const CHANNEL_COLUMNS: &[&str] = &[
    "uuid",
    "direction",
    "created",
    "created_epoch",
    "name",
    "state",
    "cid_name",
    "cid_num",
    "ip_addr",
    "dest",
    "application",
    "application_data",
    "dialplan",
    "context",
    "read_codec",
    "read_rate",
    "read_bit_rate",
    "write_codec",
    "write_rate",
    "write_bit_rate",
    "secure",
    "hostname",
    "presence_id",
    "presence_data",
    "accountcode",
    "callstate",
    "callee_name",
    "callee_num",
    "callee_direction",
    "call_uuid",
    "sent_callee_name",
    "sent_callee_num",
    "initial_cid_name",
    "initial_cid_num",
    "initial_ip_addr",
    "initial_dest",
    "initial_dialplan",
    "initial_context",
];

const CALL_COLUMNS: &[&str] = &[
    "uuid",
    "direction",
    "created",
    "created_epoch",
    "name",
    "state",
    "cid_name",
    "cid_num",
    "ip_addr",
    "dest",
    "presence_id",
    "presence_data",
    "accountcode",
    "callstate",
    "callee_name",
    "callee_num",
    "callee_direction",
    "call_uuid",
    "hostname",
    "sent_callee_name",
    "sent_callee_num",
    "b_uuid",
    "b_direction",
    "b_created",
    "b_created_epoch",
    "b_name",
    "b_state",
    "b_cid_name",
    "b_cid_num",
    "b_ip_addr",
    "b_dest",
    "b_presence_id",
    "b_presence_data",
    "b_accountcode",
    "b_callstate",
    "b_callee_name",
    "b_callee_num",
    "b_callee_direction",
    "b_sent_callee_name",
    "b_sent_callee_num",
    "call_created_epoch",
];

/// The value of a `channels` table column for `ch`.
fn channel_column(ch: &Channel, hostname: &str, column: &str) -> String {
    let profile = ch.profile.as_ref();
    let (cid_name, cid_num) = ch.caller_id();
    let app = ch.vars.get("current_application").unwrap_or("");
    let app_data = ch.vars.get("current_application_data").unwrap_or("");
    let codec = |read: bool| if read { ch.read_codec } else { ch.write_codec };
    match column {
        "uuid" => ch.uuid.clone(),
        "direction" => ch.direction.to_owned(),
        "created" => local_stamp(ch.created),
        "created_epoch" => (micros(ch.created) / 1_000_000).to_string(),
        "name" => ch.name.clone(),
        "state" => ch.running.name().to_owned(),
        "cid_name" | "initial_cid_name" => cid_name.to_owned(),
        "cid_num" | "initial_cid_num" => cid_num.to_owned(),
        "ip_addr" | "initial_ip_addr" => {
            profile.map(|p| p.network_addr.clone()).unwrap_or_default()
        }
        "dest" | "initial_dest" => profile
            .map(|p| p.destination_number.clone())
            .unwrap_or_default(),
        "application" => app.to_owned(),
        "application_data" => app_data.to_owned(),
        "dialplan" | "initial_dialplan" => profile.map(|p| p.dialplan.clone()).unwrap_or_default(),
        "context" | "initial_context" => profile.map(|p| p.context.clone()).unwrap_or_default(),
        "read_codec" => codec(true).map(|c| c.name.to_owned()).unwrap_or_default(),
        "read_rate" => codec(true).map(|c| c.rate.to_string()).unwrap_or_default(),
        "read_bit_rate" => codec(true)
            .map(|c| c.bit_rate.to_string())
            .unwrap_or_default(),
        "write_codec" => codec(false).map(|c| c.name.to_owned()).unwrap_or_default(),
        "write_rate" => codec(false).map(|c| c.rate.to_string()).unwrap_or_default(),
        "write_bit_rate" => codec(false)
            .map(|c| c.bit_rate.to_string())
            .unwrap_or_default(),
        "hostname" => hostname.to_owned(),
        "presence_id" => ch.presence_id().unwrap_or("").to_owned(),
        "callstate" => ch.callstate.name().to_owned(),
        "call_created_epoch" => String::new(),
        _ => String::new(),
    }
}

fn rows_json(columns: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "{\"row_count\": 0}\n".to_owned();
    }
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let rows = rows
        .iter()
        .map(|row| {
            Json::Object(
                columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| ((*c).to_owned(), Json::str(v)))
                    .collect(),
            )
        })
        .collect();
    Json::Object(vec![
        ("row_count".into(), Json::Int(n)),
        ("rows".into(), Json::Array(rows)),
    ])
    .compact()
}

fn rows_csv(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str(&columns.join(","));
        out.push('\n');
        for row in rows {
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    let _ = write!(out, "\n{} total.\n", rows.len());
    out
}

fn show(tx: &Tx<'_>, args: &str) -> String {
    let words: Vec<&str> = args.split_whitespace().collect();
    let hostname = tx.cfg.name.as_str();
    let (columns, rows): (&[&str], Vec<Vec<String>>) = match words.first().copied() {
        Some("channels") | Some("calls") => {
            let columns = if words[0] == "channels" {
                CHANNEL_COLUMNS
            } else {
                CALL_COLUMNS
            };
            let rows = tx
                .st
                .channels_in_order()
                .map(|ch| {
                    columns
                        .iter()
                        .map(|c| channel_column(ch, hostname, c))
                        .collect()
                })
                .collect();
            (columns, rows)
        }
        Some("registrations") => {
            let columns: &[&str] = &[
                "reg_user",
                "realm",
                "token",
                "url",
                "expires",
                "network_ip",
                "network_port",
                "network_proto",
                "hostname",
                "metadata",
            ];
            let rows = tx
                .st
                .registrations
                .iter()
                .map(|r| {
                    // WS: the url of sofia's stored contact; network_proto `udp`
                    // (`switch_core_add_registration` only knows tls/tcp/udp), see
                    // `crate::sip::registrar`.
                    let (url, proto) = match &r.ws {
                        Some(ws) => (
                            crate::sip::registrar::registration_url(
                                &tx.cfg.sip_profile,
                                &ws.contact,
                            ),
                            "udp".to_owned(),
                        ),
                        None => (
                            format!(
                                "sofia/{}/sip:{}@{}:{};transport={}",
                                tx.cfg.sip_profile,
                                r.user,
                                r.contact_ip,
                                r.contact_port,
                                r.transport.to_ascii_uppercase()
                            ),
                            r.transport.to_ascii_lowercase(),
                        ),
                    };
                    vec![
                        r.user.clone(),
                        r.realm.clone(),
                        r.call_id.clone(),
                        url,
                        (micros(r.expires_at) / 1_000_000 + 60).to_string(),
                        r.contact_ip.clone(),
                        r.contact_port.to_string(),
                        proto,
                        hostname.to_owned(),
                        String::new(),
                    ]
                })
                .collect();
            (columns, rows)
        }
        _ => {
            return "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|\
                    channels [count|like <match string>]|calls|detailed_calls|bridged_calls|\
                    detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|\
                    say|interfaces|interface_types|tasks|limits|status\n"
                .to_owned();
        }
    };
    match words.get(1..).unwrap_or_default() {
        ["count"] => format!("\n{} total.\n", rows.len()),
        ["as", "json"] => rows_json(columns, &rows),
        _ => rows_csv(columns, &rows),
    }
}

// -------------------------------------------------------------------------------------------
// sofia
// -------------------------------------------------------------------------------------------

const RULE: &str = "=================================================================================================\n";

fn sofia(tx: &Tx<'_>, args: &str) -> String {
    let words: Vec<&str> = args.split_whitespace().collect();
    let profile = tx.cfg.sip_profile.as_str();
    match words.as_slice() {
        ["status"] => {
            let calls = tx
                .st
                .channels
                .values()
                .filter(|c| matches!(c.kind, Kind::Sofia(_)))
                .count();
            let mut out = String::new();
            let _ = writeln!(out, "{:>25}\t{:>7}\t{:>42}\tState", "Name", "Type", "Data");
            out.push_str(RULE);
            let _ = writeln!(
                out,
                "{:>25}\t{:>7}\t{:>42}\tALIASED",
                tx.cfg.domain, "alias", profile
            );
            let _ = writeln!(
                out,
                "{:>25}\t{:>7}\t{:>42}\tRUNNING ({calls})",
                profile,
                "profile",
                format!("sip:mod_sofia@{}:{}", tx.cfg.sip_ip, tx.cfg.sip_port)
            );
            out.push_str(RULE);
            out.push_str("1 profile 1 alias\n");
            out
        }
        ["status", "profile", name, "reg"] if *name == profile => {
            let mut out = String::from("\nRegistrations:\n");
            out.push_str(RULE);
            let now = SystemTime::now();
            for r in &tx.st.registrations {
                let expires = r.expires_at + Duration::from_secs(60);
                let left = expires.duration_since(now).map_or(0, |d| d.as_secs());
                // show_reg_callback (mod_sofia.c): the stored contact and `status(rpid)`.
                let (contact, status) = match &r.ws {
                    Some(ws) => (ws.contact.clone(), ws.status.clone()),
                    None => (
                        format!(
                            "\"\" <sip:{}@{}:{};transport={}>",
                            r.user,
                            r.contact_ip,
                            r.contact_port,
                            r.transport.to_ascii_uppercase()
                        ),
                        format!("Registered({})", r.transport.to_ascii_uppercase()),
                    ),
                };
                let _ = write!(
                    out,
                    "Call-ID:    \t{}\nUser:       \t{}@{}\nContact:    \t{}\n\
                     Agent:      \t{}\nStatus:     \t{}(unknown) EXP({}) EXPSECS({})\n\
                     Ping-Status:\tReachable\nPing-Time:\t0.00\nHost:       \t{}\nIP:         \t{}\n\
                     Port:       \t{}\nAuth-User:  \t{}\nAuth-Realm: \t{}\nMWI-Account:\t{}@{}\n\n",
                    r.call_id,
                    r.user,
                    r.realm,
                    contact,
                    r.user_agent,
                    status,
                    local_stamp(expires),
                    left,
                    tx.cfg.name,
                    r.contact_ip,
                    r.contact_port,
                    r.user,
                    r.realm,
                    r.user,
                    r.realm,
                );
            }
            let _ = writeln!(out, "Total items returned: {}", tx.st.registrations.len());
            out.push_str(RULE);
            out
        }
        _ => "Invalid Profile!\n".to_owned(),
    }
}

// -------------------------------------------------------------------------------------------
// channels
// -------------------------------------------------------------------------------------------

/// A hangup cause name as FreeSWITCH spells it (`switch_channel_str2cause`).
fn cause(word: Option<&str>) -> &'static str {
    match word.map(str::to_ascii_uppercase).as_deref() {
        Some("USER_BUSY") => "USER_BUSY",
        Some("CALL_REJECTED") => "CALL_REJECTED",
        Some("MANAGER_REQUEST") => "MANAGER_REQUEST",
        Some("SYSTEM_SHUTDOWN") => "SYSTEM_SHUTDOWN",
        Some("NORMAL_CLEARING") => "NORMAL_CLEARING",
        None => "MANAGER_REQUEST",
        Some(_) => "NORMAL_CLEARING",
    }
}

fn uuid_kill(tx: &mut Tx<'_>, args: &str) -> String {
    let mut words = args.split_whitespace();
    let Some(uuid) = words.next() else {
        return "-USAGE: <uuid> [cause]\n".to_owned();
    };
    let cause = match words.next() {
        Some(w) => cause(Some(w)),
        None => "NORMAL_CLEARING",
    };
    if tx.local_hangup(uuid, cause) {
        "+OK\n".to_owned()
    } else {
        "-ERR No such channel!\n".to_owned()
    }
}

fn hupall(tx: &mut Tx<'_>, args: &str) -> String {
    let cause = cause(args.split_whitespace().next());
    let uuids: Vec<String> = tx.st.channel_order.clone();
    for uuid in uuids {
        tx.local_hangup(&uuid, cause);
    }
    format!("+OK hangup all channels with cause {cause}\n")
}

/// `originate loopback/<dest>[/<context>] &conference(<name>[@<profile>])`: the only originate
/// fsim simulates. The B leg runs the captured dialplan (`^(\d+)$` → `conference $1@default`),
/// the A leg the `&conference` application.
fn originate(tx: &mut Tx<'_>, args: &str) -> String {
    let mut words = args.split_whitespace();
    let (Some(url), Some(app)) = (words.next(), words.next()) else {
        return "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] \
                [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n"
            .to_owned();
    };
    let Some(rest) = url.strip_prefix("loopback/") else {
        return "-ERR CHAN_NOT_IMPLEMENTED\n".to_owned();
    };
    let (dest, context) = rest.split_once('/').unwrap_or((rest, "default"));
    let Some(data) = app
        .strip_prefix("&conference(")
        .and_then(|a| a.strip_suffix(')'))
    else {
        return "-ERR CHAN_NOT_IMPLEMENTED\n".to_owned();
    };
    if dest.is_empty() || !dest.bytes().all(|b| b.is_ascii_digit()) {
        return "-ERR NO_ROUTE_DESTINATION\n".to_owned();
    }
    let (a_name, a_profile) = data.split_once('@').unwrap_or((data, "default"));
    let b_rate = rate_of(tx, "default");
    let ids = (tx.new_session(), tx.new_session());
    let (mut a, mut b) =
        Channel::loopback_pair(&tx.ctx, &mut tx.out, dest, context, ids, l16(b_rate));
    let b_data = format!("{dest}@default");
    b.start_conference_app(&tx.ctx, &mut tx.out, &b_data);
    a.start_conference_app(&tx.ctx, &mut tx.out, data);
    let (a_uuid, b_uuid) = (a.uuid.clone(), b.uuid.clone());
    tx.add_channel(a);
    tx.add_channel(b);
    // The legs join after originate has returned (mod_conference runs in their own threads):
    // the capture shows the API event first, then both add-member events.
    tx.st.deferred.push_back(Deferred::Join(
        b_uuid,
        dest.to_owned(),
        "default".to_owned(),
        "0000000000".to_owned(),
    ));
    tx.st.deferred.push_back(Deferred::Join(
        a_uuid.clone(),
        a_name.to_owned(),
        a_profile.to_owned(),
        context.to_owned(),
    ));
    format!("+OK {a_uuid}\n")
}

fn rate_of(tx: &Tx<'_>, profile: &str) -> u32 {
    tx.cfg
        .conference_profiles
        .iter()
        .find(|p| p.name == profile)
        .map_or(8000, |p| p.rate)
}

// -------------------------------------------------------------------------------------------
// conference
// -------------------------------------------------------------------------------------------

/// `conference <name> play <file> [async]` (conference-wide only). fsim has no sound files:
/// `tone_stream://` and `silence_stream://` play, as does any file that exists on this host;
/// anything else is FreeSWITCH's "not found" (conference_api.c, not captured).
fn play(tx: &mut Tx<'_>, name: &str, rest: &[&str]) -> String {
    let (file, is_async) = match rest {
        [file] => (*file, false),
        [file, flag] if flag.eq_ignore_ascii_case("async") => (*file, true),
        _ => return usage("play"),
    };
    let playable = file.starts_with("tone_stream://")
        || file.starts_with("silence_stream://")
        || std::path::Path::new(file).is_file();
    if !playable {
        return format!("-ERR (play) File: {file} not found.\n");
    }
    let ctx = tx.ctx.clone();
    if let Some(conf) = tx.st.conferences.get(name) {
        let event = conf.play_event(&ctx, file, is_async);
        tx.out.push(event);
    }
    format!("+OK (play) Playing file {file}\n")
}

/// The usage line of a conference sub-command, from the captured usage text.
fn usage(sub: &str) -> String {
    let prefix = format!("<conf name> {sub} ");
    CONFERENCE_USAGE
        .lines()
        .find(|l| l.starts_with(&prefix))
        .map_or_else(
            || format!("-ERR Usage: <conf name> {sub}\n"),
            |l| format!("-ERR Usage: {l}\n"),
        )
}

fn conference(tx: &mut Tx<'_>, args: &str) -> String {
    let argv: Vec<&str> = args.split_whitespace().collect();
    let Some(&first) = argv.first() else {
        return CONFERENCE_USAGE.to_owned();
    };
    match first {
        "list" => return list_all(tx.st, &argv[1..]),
        "count" => return tx.st.conferences.len().to_string(),
        "json_list" => {
            let all = tx
                .st
                .conferences
                .values()
                .map(|c| c.json(&tx.st.channels))
                .collect();
            return json_out(Json::Array(all), argv.get(1) == Some(&"compact"));
        }
        "xml_list" => {
            let mut out = String::from("<?xml version=\"1.0\"?>\n<conferences>\n");
            for c in tx.st.conferences.values() {
                c.xml(&mut out, &tx.st.channels);
            }
            out.push_str("</conferences>\n");
            return out;
        }
        "help" | "commands" => return CONFERENCE_USAGE.to_owned(),
        _ => {}
    }
    let name = first;
    let Some(conf) = tx.st.conferences.get(name) else {
        return format!("-ERR Conference {name} not found\n");
    };
    let Some(&sub) = argv.get(1) else {
        return "Conference command, not specified.\nTry 'help'\n".to_owned();
    };
    let rest = &argv[2..];
    match sub {
        "list" => {
            if rest.first() == Some(&"count") {
                return conf.size().to_string();
            }
            let delim = match rest {
                ["delim", d, ..] => *d,
                _ => ";",
            };
            let mut out = String::new();
            conf.list_members(&mut out, delim, &tx.st.channels);
            out
        }
        "count" => conf.size().to_string(),
        "json_list" => json_out(
            Json::Array(vec![conf.json(&tx.st.channels)]),
            rest.first() == Some(&"compact"),
        ),
        "xml_list" => {
            let mut out = String::from("<?xml version=\"1.0\"?>\n<conferences>\n");
            conf.xml(&mut out, &tx.st.channels);
            out.push_str("</conferences>\n");
            out
        }
        "mute" => member_cmd(tx, name, sub, rest, MemberOp::Mute),
        "unmute" => member_cmd(tx, name, sub, rest, MemberOp::Unmute),
        "deaf" => member_cmd(tx, name, sub, rest, MemberOp::Deaf),
        "undeaf" => member_cmd(tx, name, sub, rest, MemberOp::Undeaf),
        "vmute" => member_cmd(tx, name, sub, rest, MemberOp::Vmute),
        "unvmute" => member_cmd(tx, name, sub, rest, MemberOp::Unvmute),
        "kick" => member_cmd(tx, name, sub, rest, MemberOp::Kick),
        "hup" => member_cmd(tx, name, sub, rest, MemberOp::Hup),
        "lock" | "unlock" => {
            let lock = sub == "lock";
            let ctx = tx.ctx.clone();
            if let Some(conf) = tx.st.conferences.get_mut(name) {
                conf.locked = lock;
                tx.out.push(conf.lock_event(&ctx, lock));
            }
            format!("+OK {name} {sub}ed\n")
        }
        "play" => play(tx, name, rest),
        "record" => record(tx, name, rest),
        "norecord" => norecord(tx, name, rest),
        "vid-floor" => vid_floor(tx, name, rest),
        "vid-layout" => {
            if rest.is_empty() {
                usage(sub)
            } else if !conf.video_mux {
                "-ERR Conference is not in mixing mode\n".to_owned()
            } else if rest[0] == "group" {
                match rest.get(1) {
                    Some(group) => format!("+OK Change to layout group [{group}]\n"),
                    None => "-ERR Group name not specified.\n".to_owned(),
                }
            } else {
                let canvas = rest.get(1).copied().unwrap_or("1");
                format!("+OK Change canvas {canvas} to layout [{}]\n", rest[0])
            }
        }
        _ => format!("-ERR Conference command '{sub}' not found.\n"),
    }
}

fn json_out(v: Json, compact: bool) -> String {
    if compact { v.compact() } else { v.pretty() }
}

/// Global `conference list [count|summary|delim <d>]`.
fn list_all(st: &NodeState, args: &[&str]) -> String {
    if st.conferences.is_empty() {
        return "+OK No active conferences.\n".to_owned();
    }
    if args.first() == Some(&"count") {
        return st.conferences.len().to_string();
    }
    let summary = args.first() == Some(&"summary");
    let delim = match args {
        ["delim", d, ..] => *d,
        _ => ";",
    };
    let mut out = String::new();
    for conf in st.conferences.values() {
        conf.list_header(&mut out);
        if !summary {
            conf.list_members(&mut out, delim, &st.channels);
        }
    }
    out
}

/// Member ids a target (`<id>|all|last`) names, newest first for `all`; `Err` is the output.
fn targets(conf: &Conference, target: &str) -> Result<Vec<u32>, String> {
    match target {
        "all" => Ok(conf.members.iter().rev().map(|m| m.id).collect()),
        "last" => Ok(conf
            .members
            .iter()
            .map(|m| m.id)
            .max()
            .into_iter()
            .collect()),
        _ => {
            let id: u32 = target
                .bytes()
                .take_while(u8::is_ascii_digit)
                .fold(0u32, |n, d| {
                    n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
                });
            if conf.member(id).is_some() {
                Ok(vec![id])
            } else {
                Err(format!("-ERR Non-Existant ID {id}\n"))
            }
        }
    }
}

fn member_cmd(tx: &mut Tx<'_>, name: &str, sub: &str, rest: &[&str], op: MemberOp) -> String {
    let Some(&target) = rest.first() else {
        return usage(sub);
    };
    let ids = match tx.st.conferences.get(name).map(|c| targets(c, target)) {
        Some(Ok(ids)) => ids,
        Some(Err(e)) => return e,
        None => return format!("-ERR Conference {name} not found\n"),
    };
    let mut out = String::new();
    for id in ids {
        if tx.member_op(name, id, op) {
            let _ = writeln!(out, "+OK {} {id}", op.reply_word());
        }
    }
    out
}

fn record(tx: &mut Tx<'_>, name: &str, rest: &[&str]) -> String {
    let Some(&path) = rest.first() else {
        return usage("record");
    };
    let ctx = tx.ctx.clone();
    let NodeState {
        conferences,
        member_seq,
        ..
    } = &mut *tx.st;
    let Some(conf) = conferences.get_mut(name) else {
        return format!("-ERR Conference {name} not found\n");
    };
    if conf.recordings.iter().any(|r| r.path == path) {
        return format!("-ERR file [{path}] is already being used for recording.\n");
    }
    // A recording node takes a member id, like any member.
    *member_seq += 1;
    conf.recordings.push(Recording {
        path: path.to_owned(),
        started: std::time::Instant::now(),
        started_at: SystemTime::now(),
    });
    tx.out.push(conf.start_recording_event(&ctx, path));
    format!("+OK Record file {path}\n")
}

fn norecord(tx: &mut Tx<'_>, name: &str, rest: &[&str]) -> String {
    let Some(&path) = rest.first() else {
        return usage("norecord");
    };
    let ctx = tx.ctx.clone();
    let Some(conf) = tx.st.conferences.get_mut(name) else {
        return format!("-ERR Conference {name} not found\n");
    };
    let all = path.eq_ignore_ascii_case("all");
    let (stopped, kept): (Vec<Recording>, Vec<Recording>) = std::mem::take(&mut conf.recordings)
        .into_iter()
        .partition(|r| all || r.path == path);
    conf.recordings = kept;
    if stopped.is_empty() && !all {
        return format!("-ERR non-existant recording '{path}'\n");
    }
    for (i, rec) in stopped.iter().enumerate() {
        let others = conf.recordings.len() + stopped.len() - i - 1;
        tx.out.push(conf.stop_recording_event(&ctx, rec, others));
    }
    let n = stopped.len();
    format!(
        "+OK Stopped recording {n} file{}\n",
        if n == 1 { "" } else { "s" }
    )
}

fn vid_floor(tx: &mut Tx<'_>, name: &str, rest: &[&str]) -> String {
    let Some(&target) = rest.first() else {
        return usage("vid-floor");
    };
    let force = rest.get(1) == Some(&"force");
    let ctx = tx.ctx.clone();
    let Some(conf) = tx.st.conferences.get_mut(name) else {
        return format!("-ERR Conference {name} not found\n");
    };
    let id = match targets(conf, target) {
        Ok(ids) => match ids.as_slice() {
            [id] => *id,
            _ => return usage("vid-floor"),
        },
        Err(e) => return e,
    };
    match conf.video_floor {
        Some(holder) if holder == id => format!("+OK floor {id}\n"),
        Some(holder) if !force => format!("-ERR floor is held by {holder}\n"),
        _ => {
            tx.out.push(conf.set_video_floor(&ctx, Some(id)));
            format!("+OK floor {id}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_fixture_is_the_capture_body() {
        assert_eq!(CONFERENCE_USAGE.len(), 4295);
        assert!(CONFERENCE_USAGE.starts_with("<conf name> canvas-auto-clear"));
        assert_eq!(
            usage("mute"),
            "-ERR Usage: <conf name> mute <[member_id|all]|last|non_moderator> [<quiet>]\n"
        );
    }

    #[test]
    fn empty_rows() {
        assert_eq!(rows_json(CHANNEL_COLUMNS, &[]), "{\"row_count\": 0}\n");
        assert_eq!(rows_csv(CHANNEL_COLUMNS, &[]), "\n0 total.\n");
    }
}
