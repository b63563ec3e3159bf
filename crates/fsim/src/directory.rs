//! The mod_xml_curl side of a simulated FreeSWITCH: directory lookups and SIP digest checks.
//!
//! OWNER: the directory helper. Interface agreed with the node/ESL helper (do not change the
//! signatures without telling the lead):
//!
//! ```ignore
//! pub struct DirectoryConfig {
//!     pub url: Option<String>,                      // None: no xml_curl binding (every auth fails: NotFound)
//!     pub credentials: Option<(String, String)>,   // HTTP basic (gateway-credentials)
//!     pub timeout: std::time::Duration,
//! }
//! pub struct DirectoryClient;                       // Clone
//! impl DirectoryClient {
//!     pub fn new(config: DirectoryConfig, identity: NodeIdentity) -> Self;
//!     pub fn set_delay(&self, delay: std::time::Duration);   // fault: answer slowly
//!     pub async fn sip_auth(&self, req: &SipAuthRequest) -> Result<AuthorizedUser, AuthFailure>;
//! }
//! ```
