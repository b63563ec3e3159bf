//! The mod_xml_curl `dialplan` section: what a node asks when an authenticated call is routed,
//! and what it makes of the answer.
//!
//! # The request (mod_dialplan_xml `dialplan_xml_locate`)
//!
//! `switch_xml_locate("dialplan", NULL, NULL, NULL, ...)`: the five raw fields are
//! `hostname=<switchname>&section=dialplan&tag_name=&key_name=&key_value=`, then the
//! REQUEST_PARAMS event: the standard prelude, the channel data of
//! `switch_channel_event_set_data` (Channel-State ... `Caller-*` caller profile, then every
//! channel variable as `variable_<name>`, which REQUEST_PARAMS events always carry), then the
//! caller profile again with the prefix `Hunt-` (`switch_caller_profile_event_set_data(...,
//! "Hunt", ...)`). Switchyard reads `Hunt-Destination-Number` / `Hunt-Context`
//! (falling back to `Caller-*`) and `variable_switchyard_user_id`.
//!
//! # The answer
//!
//! Processed like the directory's (HTTP 200 only, pre-processor line dropping,
//! `result status="not found"` = next binding), then `section name="dialplan"` → `context
//! name=<the call's context>` → the first `extension` whose conditions match. fsim evaluates
//! `destination_number` conditions (regex) and ignores others; it knows the two extensions
//! Switchyard answers: `answer` + `conference <name>@<profile>` and `respond <code> <reason>`.
//! `$1`-style substitutions and inline actions are not simulated. No binding or no match:
//! FreeSWITCH would try its static dialplan; fsim has none, so the call gets 404
//! (`NO_ROUTE_DESTINATION`).

use crate::directory::{AuthFailure, DirectoryClient, Element, Form, parse_xml, preprocess};

/// Where a dialplan lookup sent the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `conference <name>@<profile>` (after `answer`).
    Conference { name: String, profile: String },
    /// `respond <code> [reason]`.
    Respond { code: u16, reason: String },
    /// No binding, no document, no context or no matching extension.
    NotFound,
}

/// Builds the `section=dialplan` form from the REQUEST_PARAMS event headers.
pub(crate) fn dialplan_form(switchname: &str, headers: &[(String, String)]) -> String {
    let mut form = Form::new(switchname, "dialplan", "", "", "");
    for (name, value) in headers {
        form.field(name, value);
    }
    form.finish()
}

/// Asks the bindings in order (FreeSWITCH tries every binding of the section until one gives
/// a usable document).
pub(crate) async fn lookup(
    bindings: &[&DirectoryClient],
    form: &str,
    context: &str,
    destination: &str,
) -> Route {
    for binding in bindings {
        match binding.post_form(form.as_bytes()).await {
            Ok(body) => match route_from_document(&body, context, destination) {
                Some(route) => return route,
                None => continue,
            },
            Err(AuthFailure::NoDirectory) => continue,
            Err(e) => {
                tracing::error!(error = %e, "xml_curl dialplan lookup failed; trying the next binding");
            }
        }
    }
    Route::NotFound
}

/// The route a dialplan document gives the call; `None` when the document is unusable or "not
/// found" (the next binding is asked).
pub fn route_from_document(body: &[u8], context: &str, destination: &str) -> Option<Route> {
    let text = String::from_utf8_lossy(body);
    let root = match parse_xml(&preprocess(&text)) {
        Ok(root) => root,
        Err(e) => {
            tracing::error!(error = %e, "xml_curl: error parsing the dialplan answer");
            return None;
        }
    };
    let sections = || root.children_named("section");
    let not_found = sections()
        .filter(|s| s.attr("name") == Some("result"))
        .flat_map(|s| s.children_named("result"))
        .any(|r| r.attr("status") == Some("not found"));
    if not_found {
        return None;
    }
    let section = sections().find(|s| {
        s.attr("name")
            .is_some_and(|n| n.eq_ignore_ascii_case("dialplan"))
    })?;
    let Some(ctx) = section
        .children_named("context")
        .find(|c| c.attr("name") == Some(context))
    else {
        tracing::warn!(%context, "dialplan answer lacks the call's context");
        return Some(Route::NotFound);
    };
    for extension in ctx.children_named("extension") {
        if let Some(route) = run_extension(extension, destination) {
            return Some(route);
        }
    }
    Some(Route::NotFound)
}

/// The route of `extension` if its conditions match.
fn run_extension(extension: &Element, destination: &str) -> Option<Route> {
    let mut actions = Vec::new();
    for condition in extension.children_named("condition") {
        if !condition_matches(condition, destination) {
            return None;
        }
        for action in condition.children_named("action") {
            actions.push((
                action.attr("application").unwrap_or_default().to_owned(),
                action.attr("data").unwrap_or_default().to_owned(),
            ));
        }
    }
    for (app, data) in &actions {
        match app.as_str() {
            "respond" => {
                let (code, reason) = data.trim().split_once(' ').unwrap_or((data.trim(), ""));
                let code = code.parse().ok().filter(|c| (300..700).contains(c))?;
                return Some(Route::Respond {
                    code,
                    reason: reason.trim().to_owned(),
                });
            }
            "conference" => {
                // mod_conference: the profile is the text after the last `@` (default `default`).
                let (name, profile) = match data.rsplit_once('@') {
                    Some((n, p)) => (n, p),
                    None => (data.as_str(), "default"),
                };
                return Some(Route::Conference {
                    name: name.to_owned(),
                    profile: profile.to_owned(),
                });
            }
            _ => {}
        }
    }
    None
}

fn condition_matches(condition: &Element, destination: &str) -> bool {
    let (Some(field), Some(expression)) = (condition.attr("field"), condition.attr("expression"))
    else {
        // A condition without field/expression always matches.
        return true;
    };
    if field != "destination_number" && field != "${destination_number}" {
        tracing::debug!(%field, "dialplan condition on a field fsim does not evaluate: assumed true");
        return true;
    }
    match regex::Regex::new(expression) {
        Ok(re) => re.is_match(destination),
        Err(e) => {
            tracing::warn!(%expression, error = %e, "bad dialplan regex");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOIN: &str = r#"<document type="freeswitch/xml">
  <section name="dialplan" description="switchyard">
    <context name="default">
      <extension name="switchyard_conference">
        <condition field="destination_number" expression="^conf\*room\-1\.a&#36;">
          <action application="answer"/>
          <action application="conference" data="room-1.a@video"/>
        </condition>
      </extension>
    </context>
  </section>
</document>"#;

    #[test]
    fn switchyard_join_document() {
        assert_eq!(
            route_from_document(JOIN.as_bytes(), "default", "conf*room-1.a"),
            Some(Route::Conference {
                name: "room-1.a".into(),
                profile: "video".into()
            })
        );
        assert_eq!(
            route_from_document(JOIN.as_bytes(), "default", "conf*room-1.b"),
            Some(Route::NotFound)
        );
        assert_eq!(
            route_from_document(JOIN.as_bytes(), "public", "conf*room-1.a"),
            Some(Route::NotFound)
        );
    }

    #[test]
    fn switchyard_reject_document_and_not_found() {
        let doc = JOIN
            .replace(
                r#"<action application="answer"/>"#,
                r#"<action application="respond" data="486 Busy Here"/>"#,
            )
            .replace(
                r#"<action application="conference" data="room-1.a@video"/>"#,
                "",
            );
        assert_eq!(
            route_from_document(doc.as_bytes(), "default", "conf*room-1.a"),
            Some(Route::Respond {
                code: 486,
                reason: "Busy Here".into()
            })
        );
        let nf = "<document type=\"freeswitch/xml\">\n<section name=\"result\">\n<result status=\"not found\"/>\n</section>\n</document>";
        assert_eq!(route_from_document(nf.as_bytes(), "default", "x"), None);
        assert_eq!(route_from_document(b"<garbage", "default", "x"), None);
        // The pre-processor drops the line holding an XML declaration, content and all.
        let one_line = format!("<?xml version=\"1.0\"?>{}", JOIN.replace('\n', ""));
        assert_eq!(
            route_from_document(one_line.as_bytes(), "default", "conf*room-1.a"),
            None
        );
    }

    #[test]
    fn form_prelude() {
        let form = dialplan_form(
            "fs1",
            &[
                ("Event-Name".into(), "REQUEST_PARAMS".into()),
                ("Hunt-Destination-Number".into(), "conf*a b".into()),
            ],
        );
        assert_eq!(
            form,
            "hostname=fs1&section=dialplan&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS&Hunt-Destination-Number=conf*a%20b"
        );
    }
}
