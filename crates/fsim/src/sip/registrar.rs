//! sofia's registrar for REGISTERs that arrive over the SIP WebSocket: the contact and status
//! it stores, the granted expiry, and the events of an unregister, an expiry and a closed
//! WebSocket.
//!
//! # Why
//!
//! A real node treats a WebSocket registration differently from a UDP one, and Switchyard
//! sees the difference in `sofia::register` & co. and in `show registrations` /
//! `sofia status profile <p> reg` (capture README: `sip-ws-register-1002.txt` "shows as
//! `Registered(WS-NAT)` with an `fs_path` contact"). Every fact below is from FreeSWITCH's
//! source at the captured commit (cc93a683), cited per function; UDP registrations made with
//! `SimNode::register` do not come here and stay exactly as captured.
//!
//! - `sofia_reg_handle_register_token` (sofia_reg.c): a top Via of `SIP/2.0/WS` (`WSS`) sets
//!   `is_ws` (`is_wss`) and `is_nat = "ws"` unconditionally, so the status is
//!   `Registered(WS-NAT)` (`Registered(WSS-NAT)`). With no `Path` header and `is_nat`, sofia
//!   appends `;fs_nat=yes;fs_path=<switch_url_encode("sip:<contact user>@<network ip>:<network
//!   port>;<contact uri params>")>` inside the `<>` of the contact it stores, after the
//!   client's own host (JsSIP's `*.invalid`) and uri params. The display is the Contact's,
//!   else the To's, else `""`, always double-quoted.
//! - Same function: `exptime` is the `Expires` header if present, else the Contact's
//!   `expires` parameter, else 30 for a NAT registration (300 otherwise).
//! - Same function, `exptime == 0`: `sofia_reg_check_socket` drops the socket binding, a
//!   PRESENCE_IN `Unregistered` fires, the user's rows are deleted, and after the 200 OK a
//!   `sofia::unregister` with the directory variables merged in.
//! - Same function: `switch_core_add_registration(..., is_tls ? "tls" : is_tcp ? "tcp" :
//!   "udp")` so `show registrations` says `udp` for WS; its url is `sofia/<profile>/sip:` +
//!   the stored contact's uri without its scheme (`sofia_glue_get_url_from_contact`,
//!   `sofia_glue_strip_proto`).
//! - Same function: for `is_ws || is_wss` the REGISTER's nua handle is kept in
//!   `reg_nh_hash` under `call_id + network_ip + network_port` (first REGISTER of that key
//!   only). sofia-sip's `nua_registrar_server_preprocess` (nua_registrar.c) arms
//!   `registrar_tport_error` on stream transports (WS is TCP for tport) with
//!   `TPTAG_SDWN_ERROR(1)`, so a closed WebSocket raises `nua_i_media_error`, which
//!   `our_sofia_event_callback` (sofia.c) answers by deleting the rows of that key and firing
//!   PRESENCE_IN `Unregistered` and `sofia::unregister` with `reason: socket-disconnection`.
//! - `sofia_reg_check_expire` / `sofia_reg_del_callback` (sofia_reg.c): every `ireg-seconds`
//!   (30 s) the rows whose `expires` (= REGISTER time + exptime + `sip-expires-late-margin`
//!   60 s) has passed are deleted, each with `sofia::expire` and PRESENCE_IN (`rpid: away`).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esl::Event;

use super::message::NameAddr;
use crate::NodeConfig;
use crate::directory::AuthorizedUser;
use crate::events::{EventBuilder, EventCtx, at};
use crate::ops::Registration;

/// sofia's `IREG_SECONDS`: how often the profile worker runs `sofia_reg_check_expire`.
pub(crate) const IREG_SECONDS: Duration = Duration::from_secs(30);

/// sofia's default `sip-expires-late-margin` (added to `exptime` in the stored `expires`).
pub(crate) const LATE_MARGIN_SECS: u64 = 60;

/// `reg_desc` for a registration over WS (`wss` = the Via said `WSS`).
pub(crate) fn status(wss: bool) -> &'static str {
    if wss {
        "Registered(WSS-NAT)"
    } else {
        "Registered(WS-NAT)"
    }
}

/// The `exptime` sofia grants: `Expires` header, else the Contact's `expires`, else 30 (NAT).
pub(crate) fn exptime(expires_header: Option<&str>, contact: Option<&NameAddr>) -> u64 {
    if let Some(h) = expires_header {
        // sofia-sip parses the delta as an unsigned number; garbage counts as 0.
        return h.trim().parse().unwrap_or(0);
    }
    contact
        .and_then(|c| super::message::param(&c.params, "expires"))
        .map_or(30, |e| e.trim().parse().unwrap_or(0))
}

/// The contact string sofia stores for a REGISTER that came over WS: the client's Contact
/// (display, `sip:user@host[:port];uparams`) plus `;fs_nat=yes;fs_path=<encoded real address>`.
pub(crate) fn contact_str(
    contact: &NameAddr,
    to_display: Option<&str>,
    network: SocketAddr,
    wss: bool,
) -> String {
    let display = contact
        .display
        .as_deref()
        .or(to_display)
        .filter(|d| !d.is_empty())
        .unwrap_or("");
    let uri = contact.uri.trim();
    let (scheme, rest) = uri.split_once(':').unwrap_or(("sip", uri));
    let proto = if scheme.eq_ignore_ascii_case("sips") {
        "sips"
    } else {
        "sip"
    };
    // url headers (`?...`) are not part of sofia-sip's url_params.
    let rest = rest.split('?').next().unwrap_or(rest);
    let (hostpart, uparams) = match rest.split_once(';') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let (user, hostport) = match hostpart.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", hostpart),
    };
    // For wss sofia rewrites `transport=ws` to `transport=wss` in the fs_path copy only.
    let path_params = uparams.map(|p| {
        if wss && !p.to_ascii_lowercase().contains("transport=wss") {
            replace_ci(p, "transport=ws", "transport=wss")
        } else {
            p.to_owned()
        }
    });
    let url_ip = match network {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let real = match &path_params {
        Some(p) => format!("{proto}:{user}@{url_ip}:{};{p}", network.port()),
        None => format!("{proto}:{user}@{url_ip}:{}", network.port()),
    };
    let fs_path = esl::urlencode::encode(&real);
    let uparams = uparams.map(|p| format!(";{p}")).unwrap_or_default();
    format!("\"{display}\" <{proto}:{user}@{hostport}{uparams};fs_nat=yes;fs_path={fs_path}>")
}

fn replace_ci(haystack: &str, needle: &str, with: &str) -> String {
    match haystack.to_ascii_lowercase().find(needle) {
        Some(i) => format!("{}{with}{}", &haystack[..i], &haystack[i + needle.len()..]),
        None => haystack.to_owned(),
    }
}

/// The `url` column of `show registrations` for a stored contact:
/// `sofia/<profile>/sip:` + the uri inside `<>` without its scheme.
pub(crate) fn registration_url(profile: &str, contact: &str) -> String {
    let inner = contact
        .split_once('<')
        .map_or(contact, |(_, r)| r.split('>').next().unwrap_or(r));
    let stripped = inner.split_once(':').map_or(inner, |(_, r)| r);
    format!("sofia/{profile}/sip:{stripped}")
}

/// `profile->url` as `sofia status` shows it.
fn profile_url(cfg: &NodeConfig) -> String {
    format!("sip:mod_sofia@{}:{}", cfg.sip_ip, cfg.sip_port)
}

/// The stored `expires` column: REGISTER time + exptime + late margin, in epoch seconds.
pub(crate) fn expires_column(reg: &Registration) -> u64 {
    reg.expires_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + LATE_MARGIN_SECS
}

/// The directory user's variables that sofia merges into `sofia::register` /
/// `sofia::unregister` (`switch_event_merge(s_event, *v_event)`), as fsim builds them.
pub(crate) fn add_user_vars(b: &mut EventBuilder, reg: &Registration, auth: &AuthorizedUser) {
    b.add("sip_number_alias", &reg.user);
    b.add("sip_auth_username", &reg.user);
    b.add("sip_auth_realm", &reg.realm);
    b.add("number_alias", &reg.user);
    b.add("user_name", &reg.user);
    b.add("domain_name", &reg.realm);
    for (name, value) in &auth.variables {
        b.add(name, value);
    }
}

/// PRESENCE_IN `Unregistered` of `sofia_reg_handle_register_token` (`exptime == 0`).
pub(crate) fn unregister_presence(ctx: &EventCtx, cfg: &NodeConfig, reg: &Registration) -> Event {
    let mut b = ctx.event(
        "PRESENCE_IN",
        at("sofia_reg.c", "sofia_reg_handle_register_token", 2103),
    );
    b.add("proto", "sip");
    b.add("rpid", "unknown");
    b.add("login", &profile_url(cfg));
    b.add("user-agent", &reg.user_agent);
    b.add("from", &format!("{}@{}", reg.user, reg.realm));
    b.add("status", "Unregistered");
    b.add("presence-source", "register");
    b.add("event_type", "presence");
    b.build()
}

/// `sofia::unregister` of `sofia_reg_handle_register_token` (`exptime == 0`), fired after
/// the 200 OK. `reg` describes the REGISTER (contact, exptime 0).
pub(crate) fn unregister_event(
    ctx: &EventCtx,
    cfg: &NodeConfig,
    reg: &Registration,
    auth: &AuthorizedUser,
) -> Event {
    let mut b = ctx.custom(
        "sofia::unregister",
        at("sofia_reg.c", "sofia_reg_handle_register_token", 2213),
    );
    b.add("profile-name", &cfg.sip_profile);
    b.add("username", &reg.user);
    b.add("from-user", &reg.user);
    b.add("from-host", &reg.realm);
    if let Some(ws) = &reg.ws {
        b.add("contact", &ws.contact);
    }
    b.add("call-id", &reg.call_id);
    b.add("rpid", "unknown");
    b.add("realm", &reg.realm);
    b.add("network-ip", &reg.contact_ip);
    b.add_display("network-port", reg.contact_port);
    b.add("user-agent", &reg.user_agent);
    b.add_display("expires", reg.ws.as_ref().map_or(0, |w| w.exptime));
    add_user_vars(&mut b, reg, auth);
    b.build()
}

/// `sofia::expire` and PRESENCE_IN of `sofia_reg_del_callback` for one expired row.
pub(crate) fn expire_events(ctx: &EventCtx, cfg: &NodeConfig, reg: &Registration) -> Vec<Event> {
    let origin = |line| at("sofia_reg.c", "sofia_reg_del_callback", line);
    let (contact, status) = match &reg.ws {
        Some(ws) => (ws.contact.clone(), ws.status.clone()),
        None => (String::new(), String::new()),
    };
    let mut b = ctx.custom("sofia::expire", origin(726));
    b.add("profile-name", &cfg.sip_profile);
    b.add("call-id", &reg.call_id);
    b.add("user", &reg.user);
    b.add("username", &reg.user);
    b.add("host", &reg.realm);
    b.add("contact", &contact);
    b.add_display("expires", expires_column(reg));
    b.add("user-agent", &reg.user_agent);
    b.add("realm", &reg.realm);
    b.add("network-ip", &reg.contact_ip);
    b.add_display("network-port", reg.contact_port);
    let expire = b.build();
    let mut p = ctx.event("PRESENCE_IN", origin(741));
    p.add("proto", "sip");
    p.add("rpid", "away");
    p.add("login", &profile_url(cfg));
    // sofia passes argv[4] here, which is the `status` column of its select, not the agent.
    p.add("user-agent", &status);
    p.add("from", &format!("{}@{}", reg.user, reg.realm));
    p.add("status", "Unregistered");
    p.add("event_type", "presence");
    vec![expire, p.build()]
}

/// A REGISTER's socket binding (sofia's `reg_nh_hash` entry): what the `nua_i_media_error`
/// handler knows when the WebSocket closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SocketBinding {
    pub call_id: String,
    pub user: String,
    pub realm: String,
    pub network: SocketAddr,
}

/// PRESENCE_IN and `sofia::unregister` (`reason: socket-disconnection`) of
/// `our_sofia_event_callback`'s `nua_i_media_error` case.
pub(crate) fn socket_close_events(
    ctx: &EventCtx,
    cfg: &NodeConfig,
    binding: &SocketBinding,
) -> Vec<Event> {
    let origin = |line| at("sofia.c", "our_sofia_event_callback", line);
    let mut p = ctx.event("PRESENCE_IN", origin(2066));
    p.add("proto", "sip");
    p.add("rpid", "unknown");
    p.add("login", &profile_url(cfg));
    // The transport error carries no SIP message, so no User-Agent.
    p.add("user-agent", "unknown");
    p.add("from", &format!("{}@{}", binding.user, binding.realm));
    p.add("status", "Unregistered");
    p.add("presence-source", "register");
    p.add("event_type", "presence");
    let mut u = ctx.custom("sofia::unregister", origin(2080));
    u.add("profile-name", &cfg.sip_profile);
    u.add("from-user", &binding.user);
    u.add("from-host", &binding.realm);
    u.add("call-id", &binding.call_id);
    u.add("rpid", "unknown");
    u.add("reason", "socket-disconnection");
    vec![p.build(), u.build()]
}

/// Whether `reg` belongs to `binding` (sofia deletes `where call_id and network_ip and
/// network_port`).
pub(crate) fn bound_to(reg: &Registration, binding: &SocketBinding) -> bool {
    reg.call_id == binding.call_id
        && reg.contact_ip == binding.network.ip().to_string()
        && reg.contact_port == binding.network.port()
}

/// Whether a WS registration's row is past its stored `expires` at `now`.
pub(crate) fn is_expired(reg: &Registration, now: SystemTime) -> bool {
    reg.ws.is_some() && reg.expires_at + Duration::from_secs(LATE_MARGIN_SECS) <= now
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ops::WsBinding;

    fn ws_reg() -> Registration {
        Registration {
            user: "1002".into(),
            realm: "127.0.0.1".into(),
            call_id: "ws-reg-call-1".into(),
            contact_ip: "127.0.0.1".into(),
            contact_port: 52824,
            transport: "ws".into(),
            user_agent: "python-ws-fixture".into(),
            expires_at: UNIX_EPOCH + Duration::from_secs(1_000),
            ws: Some(WsBinding {
                contact: "\"\" <sip:ws1002@df7jal23ls0d.invalid;transport=ws;fs_nat=yes;fs_path=sip%3Aws1002%40127.0.0.1%3A52824%3Btransport%3Dws>".into(),
                status: "Registered(WS-NAT)".into(),
                exptime: 300,
            }),
        }
    }

    #[test]
    fn contact_of_the_captured_ws_register() {
        // sip-ws-register-1002.txt: Contact and the peer port from the Via's rport.
        let c =
            NameAddr::parse("<sip:ws1002@df7jal23ls0d.invalid;transport=ws>;expires=300").unwrap();
        let peer: SocketAddr = "127.0.0.1:52824".parse().unwrap();
        assert_eq!(
            contact_str(&c, None, peer, false),
            "\"\" <sip:ws1002@df7jal23ls0d.invalid;transport=ws;fs_nat=yes;\
             fs_path=sip%3Aws1002%40127.0.0.1%3A52824%3Btransport%3Dws>"
        );
        assert_eq!(status(false), "Registered(WS-NAT)");
    }

    #[test]
    fn contact_display_port_ipv6_and_wss() {
        let c = NameAddr::parse("\"Alice\" <sip:a@h.invalid:5070;transport=ws>").unwrap();
        let peer: SocketAddr = "[::1]:4000".parse().unwrap();
        assert_eq!(
            contact_str(&c, None, peer, true),
            "\"Alice\" <sip:a@h.invalid:5070;transport=ws;fs_nat=yes;\
             fs_path=sip%3Aa%40%5B%3A%3A1%5D%3A4000%3Btransport%3Dwss>"
        );
        // No display on the Contact: the To's; no uri params: none copied.
        let c = NameAddr::parse("<sip:b@h.invalid>").unwrap();
        let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(
            contact_str(&c, Some("Bob"), peer, false),
            "\"Bob\" <sip:b@h.invalid;fs_nat=yes;fs_path=sip%3Ab%4010.0.0.1%3A1>"
        );
        assert_eq!(status(true), "Registered(WSS-NAT)");
    }

    #[test]
    fn exptime_prefers_the_expires_header_then_the_contact_then_30() {
        let c = NameAddr::parse("<sip:a@h.invalid;transport=ws>;expires=600").unwrap();
        assert_eq!(exptime(Some("120"), Some(&c)), 120);
        assert_eq!(exptime(None, Some(&c)), 600);
        let bare = NameAddr::parse("<sip:a@h.invalid;transport=ws>").unwrap();
        assert_eq!(exptime(None, Some(&bare)), 30);
        assert_eq!(exptime(Some("0"), Some(&c)), 0);
    }

    #[test]
    fn url_of_show_registrations() {
        assert_eq!(
            registration_url("internal", &ws_reg().ws.unwrap().contact),
            "sofia/internal/sip:ws1002@df7jal23ls0d.invalid;transport=ws;fs_nat=yes;\
             fs_path=sip%3Aws1002%40127.0.0.1%3A52824%3Btransport%3Dws"
        );
    }

    fn ctx() -> EventCtx {
        EventCtx {
            core_uuid: "cu".into(),
            hostname: "fs1".into(),
            ipv4: "192.0.2.2".into(),
            ipv6: "::1".into(),
            seq: std::sync::Arc::default(),
        }
    }

    fn names(e: &Event) -> Vec<String> {
        e.headers()
            .iter()
            .map(|(n, _)| n.to_string())
            .skip_while(|n| n != "Event-Sequence")
            .skip(1)
            .collect()
    }

    #[test]
    fn expire_events_follow_sofia_reg_del_callback() {
        let reg = ws_reg();
        let ev = expire_events(&ctx(), &NodeConfig::new("fs1"), &reg);
        assert_eq!(ev[0].get("Event-Subclass"), Some("sofia::expire"));
        assert_eq!(
            names(&ev[0]),
            [
                "profile-name",
                "call-id",
                "user",
                "username",
                "host",
                "contact",
                "expires",
                "user-agent",
                "realm",
                "network-ip",
                "network-port"
            ]
        );
        assert_eq!(ev[0].get("expires"), Some("1060"));
        assert_eq!(
            ev[0].get("Event-Calling-Function"),
            Some("sofia_reg_del_callback")
        );
        assert_eq!(ev[1].get("Event-Name"), Some("PRESENCE_IN"));
        assert_eq!(ev[1].get("rpid"), Some("away"));
        assert_eq!(ev[1].get("user-agent"), Some("Registered(WS-NAT)"));
        assert_eq!(ev[1].get("login"), Some("sip:mod_sofia@127.0.0.1:5060"));
        assert!(is_expired(&reg, UNIX_EPOCH + Duration::from_secs(1_060)));
        assert!(!is_expired(&reg, UNIX_EPOCH + Duration::from_secs(1_059)));
    }

    #[test]
    fn unregister_event_header_set() {
        let mut reg = ws_reg();
        if let Some(ws) = &mut reg.ws {
            ws.exptime = 0;
        }
        let auth = AuthorizedUser {
            user_id: "1002".into(),
            domain: "127.0.0.1".into(),
            variables: vec![("user_context".into(), "default".into())],
        };
        let ev = unregister_event(&ctx(), &NodeConfig::new("fs1"), &reg, &auth);
        assert_eq!(
            names(&ev),
            [
                "profile-name",
                "username",
                "from-user",
                "from-host",
                "contact",
                "call-id",
                "rpid",
                "realm",
                "network-ip",
                "network-port",
                "user-agent",
                "expires",
                "sip_number_alias",
                "sip_auth_username",
                "sip_auth_realm",
                "number_alias",
                "user_name",
                "domain_name",
                "user_context"
            ]
        );
        assert_eq!(ev.get("expires"), Some("0"));
        let p = unregister_presence(&ctx(), &NodeConfig::new("fs1"), &reg);
        assert_eq!(p.get("status"), Some("Unregistered"));
        assert_eq!(p.get("from"), Some("1002@127.0.0.1"));
        assert_eq!(p.get("user-agent"), Some("python-ws-fixture"));
    }

    #[test]
    fn socket_close_events_follow_nua_i_media_error() {
        let b = SocketBinding {
            call_id: "c1".into(),
            user: "1002".into(),
            realm: "127.0.0.1".into(),
            network: "127.0.0.1:52824".parse().unwrap(),
        };
        let ev = socket_close_events(&ctx(), &NodeConfig::new("fs1"), &b);
        assert_eq!(ev[0].get("Event-Name"), Some("PRESENCE_IN"));
        assert_eq!(ev[0].get("user-agent"), Some("unknown"));
        assert_eq!(ev[1].get("Event-Subclass"), Some("sofia::unregister"));
        assert_eq!(
            names(&ev[1]),
            [
                "profile-name",
                "from-user",
                "from-host",
                "call-id",
                "rpid",
                "reason"
            ]
        );
        assert_eq!(ev[1].get("reason"), Some("socket-disconnection"));
        assert!(bound_to(
            &ws_reg(),
            &SocketBinding {
                call_id: "ws-reg-call-1".into(),
                ..b.clone()
            }
        ));
        assert!(!bound_to(&ws_reg(), &b));
    }
}
