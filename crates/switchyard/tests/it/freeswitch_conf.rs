//! `freeswitch-conf/` against Switchyard's own defaults: every file is well-formed XML, and the
//! values both sides must share (domain, context, xml_curl URLs and user, profile names, node
//! identity) agree. `freeswitch-conf/check.sh` adds a pre-processor emulation (Python).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::Event;
use switchyard::Config;

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../freeswitch-conf")
}

fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read freeswitch-conf") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            xml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
}

/// Every element of a file: (name, attributes).
fn elements(path: &Path) -> Vec<(String, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(path).expect("read");
    let mut reader = Reader::from_str(&text);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                        (
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            a.unescape_value()
                                .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
                                .into_owned(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{} is not well-formed XML: {e}", path.display()),
        }
    }
    out
}

#[test]
fn every_file_is_well_formed() {
    let mut files = Vec::new();
    xml_files(&conf_dir(), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let mut reader = Reader::from_str(&text);
        reader.config_mut().check_end_names = true;
        let mut depth = 0usize;
        loop {
            match reader.read_event() {
                Ok(Event::Start(_)) => depth += 1,
                Ok(Event::End(_)) => depth -= 1,
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{} is not well-formed XML: {e}", file.display()),
            }
        }
        assert_eq!(depth, 0, "{}: unclosed elements", file.display());
    }
}

/// `<X-PRE-PROCESS cmd="set" data="name=value"/>` of vars.xml.
fn vars() -> BTreeMap<String, String> {
    elements(&conf_dir().join("vars.xml"))
        .into_iter()
        .filter(|(name, attrs)| {
            name == "X-PRE-PROCESS" && attrs.get("cmd").is_some_and(|c| c == "set")
        })
        .filter_map(|(_, attrs)| {
            let (k, v) = attrs.get("data")?.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// `<param name=… value=…>` of a file, by name.
fn params(file: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    elements(&conf_dir().join(file))
        .into_iter()
        .filter(|(name, _)| name == "param")
        .filter_map(|(_, attrs)| {
            Some((
                attrs.get("name")?.clone(),
                attrs.get("value")?.clone(),
                attrs.clone(),
            ))
        })
        .collect()
}

#[test]
fn values_agree_with_switchyard_defaults() {
    let config = Config::default();
    let vars = vars();
    let var = |k: &str| {
        vars.get(k)
            .unwrap_or_else(|| panic!("vars.xml sets {k}"))
            .as_str()
    };
    assert_eq!(var("domain"), config.sip.domain, "[sip] domain");
    assert_eq!(
        var("switchyard_user_context"),
        config.sip.user_context,
        "[sip] user_context"
    );
    assert_eq!(
        var("switchyard_xml_curl_user"),
        config.freeswitch.username,
        "[freeswitch] username"
    );
    assert_eq!(
        var("switchyard_url"),
        format!("http://{}", config.http.listen),
        "[http] listen"
    );
    assert!(
        config.nodes.is_empty()
            || config
                .nodes
                .iter()
                .any(|n| n.id == var("switchyard_node_id"))
    );

    // xml_curl: one binding per section, to Switchyard's endpoints, with its credentials.
    let curl = params("autoload_configs/xml_curl.conf.xml");
    let url_of = |section: &str| {
        curl.iter()
            .find(|(name, _, attrs)| {
                name == "gateway-url" && attrs.get("bindings").is_some_and(|b| b == section)
            })
            .map(|(_, value, _)| value.clone())
            .unwrap_or_else(|| panic!("xml_curl binds {section}"))
    };
    assert_eq!(
        url_of("directory"),
        "$${switchyard_url}/freeswitch/directory"
    );
    assert_eq!(url_of("dialplan"), "$${switchyard_url}/freeswitch/dialplan");
    assert!(
        curl.iter().all(|(name, _, _)| name != "enable-post-var"),
        "Switchyard needs every field"
    );
    assert!(
        curl.iter()
            .any(|(name, value, _)| name == "gateway-credentials"
                && value == "$${switchyard_xml_curl_user}:$${switchyard_xml_curl_password}")
    );
    assert!(
        curl.iter().all(|(name, value, _)| name != "timeout"
            || value.parse::<u32>().is_ok_and(|t| t > 0 && t <= 5))
    );

    // The node identifies itself (the xml_curl `hostname`) by its Switchyard node id.
    let switch = params("autoload_configs/switch.conf.xml");
    assert!(
        switch
            .iter()
            .any(|(n, v, _)| n == "switchname" && v == "$${switchyard_node_id}")
    );

    // ESL: password from vars, inbound ACL applied.
    let esl = params("autoload_configs/event_socket.conf.xml");
    assert!(
        esl.iter()
            .any(|(n, v, _)| n == "password" && v == "$${switchyard_esl_password}")
    );
    assert!(esl.iter().any(|(n, _, _)| n == "apply-inbound-acl"));

    // The conference profiles Switchyard names in its dialplan answers.
    let profiles: Vec<String> = elements(&conf_dir().join("autoload_configs/conference.conf.xml"))
        .into_iter()
        .filter(|(name, _)| name == "profile")
        .filter_map(|(_, attrs)| attrs.get("name").cloned())
        .collect();
    for profile in [
        &config.conferences.audio_profile,
        &config.conferences.video_profile,
    ] {
        assert!(
            profiles.contains(profile),
            "conference.conf.xml lacks profile {profile}: {profiles:?}"
        );
    }

    // The static dialplan never joins a conference: joins come from Switchyard only.
    let dialplan = elements(&conf_dir().join("dialplan/switchyard.xml"));
    assert!(dialplan.iter().any(|(name, attrs)| {
        name == "context"
            && attrs
                .get("name")
                .is_some_and(|n| n == "$${switchyard_user_context}")
    }));
    assert!(
        dialplan.iter().all(|(name, attrs)| name != "action"
            || attrs.get("application").is_none_or(|a| a != "conference")),
        "the static dialplan must not join conferences"
    );
}
