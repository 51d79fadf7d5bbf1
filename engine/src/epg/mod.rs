//! Programme guides (EPG): files parsed ([`parse`]) and turned, by the old
//! system's rules ([`rules`]), into one batch of entity changes that goes
//! through the one door like any other (validated, applied to every node,
//! audited), or is refused whole.
//!
//! Sources so far: `POST /epg` on the admin API and `edgeward ctl epg
//! import FILE`. Still to come (issue 19): a watched folder, periodic
//! fetches over HTTP(S) and FTP, the 48-hour retention, and DVR
//! recording scheduling.

pub mod parse;
pub mod rules;
