//! What GeoIP databases say of a client: its country, its autonomous
//! system, where it is, and whether its address is an anonymiser's. Read
//! from MaxMind databases (GeoIP2 or GeoLite2 City or Country, ASN or ISP,
//! and Anonymous-IP) with the `maxminddb` crate; which is which comes from
//! each file's own metadata. Optional: without databases every answer is
//! "nothing known".
//!
//! The files are reloaded in place ([`GeoIp::reload`], on SIGHUP and on a
//! change of a file): the new set is read and checked whole, then swapped
//! in, so a lookup meets the old set or the new one and never fails; a set
//! with a file that does not read is refused with the file and the reason,
//! and the current one stays.

use crate::policy::bindings::{AnonymousIp, Coordinates, Country, Geo};
use arc_swap::ArcSwap;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many of the nearest regions (with a `location`) a client in no
/// configured subnet gets as tiers, before the default region, by default.
pub const NEAREST_REGIONS: u8 = 3;

/// What a database tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Country and location (City, Country, Enterprise).
    Location,
    /// The autonomous system (ASN, ISP).
    Asn,
    /// Anonymous-IP flags.
    Anonymous,
}

impl Kind {
    fn of(database_type: &str) -> Option<Kind> {
        if database_type.contains("Anonymous") {
            Some(Kind::Anonymous)
        } else if database_type.contains("ASN") || database_type.contains("ISP") {
            Some(Kind::Asn)
        } else if ["City", "Country", "Enterprise"]
            .iter()
            .any(|k| database_type.contains(k))
        {
            Some(Kind::Location)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Location => "location (City or Country)",
            Kind::Asn => "ASN",
            Kind::Anonymous => "Anonymous-IP",
        }
    }
}

struct Database {
    kind: Kind,
    reader: maxminddb::Reader<Vec<u8>>,
}

/// One consistent set of databases.
#[derive(Default)]
pub struct Databases {
    location: Option<Database>,
    asn: Option<Database>,
    anonymous: Option<Database>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnonymousRecord {
    is_anonymous: bool,
    is_anonymous_vpn: bool,
    is_hosting_provider: bool,
    is_public_proxy: bool,
    is_tor_exit_node: bool,
    is_residential_proxy: bool,
}

/// The record of `ip` in `db`, if it has one (a damaged record reads as
/// none: a lookup never fails a request).
fn record<'a, T: Deserialize<'a>>(db: &'a Database, ip: IpAddr) -> Option<T> {
    db.reader.lookup(ip).ok()?.decode::<T>().ok()?
}

impl Databases {
    /// Reads every file; `Err` names the file and what is wrong.
    fn read(files: &[PathBuf]) -> Result<Databases, String> {
        let mut set = Databases::default();
        for path in files {
            let db = read_one(path)?;
            let slot = match db.kind {
                Kind::Location => &mut set.location,
                Kind::Asn => &mut set.asn,
                Kind::Anonymous => &mut set.anonymous,
            };
            if slot.is_some() {
                return Err(format!(
                    "GeoIP database {}: a second {} database (give one of each kind)",
                    path.display(),
                    db.kind.name()
                ));
            }
            *slot = Some(db);
        }
        Ok(set)
    }

    /// Whether any database is loaded.
    pub fn is_empty(&self) -> bool {
        self.location.is_none() && self.asn.is_none() && self.anonymous.is_none()
    }

    /// What the databases say of `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Geo {
        let mut geo = Geo::default();
        if let Some(db) = &self.location
            && let Ok(found) = db.reader.lookup(ip)
            && found.has_data()
        {
            // Only the fields used, by path: a City record is mostly
            // names in eight languages, which a whole decode would walk.
            let text = |path: &[maxminddb::PathElement<'_>]| -> Option<&str> {
                found.decode_path::<&str>(path).ok().flatten()
            };
            geo.country = text(&maxminddb::path!["country", "iso_code"])
                .or_else(|| text(&maxminddb::path!["registered_country", "iso_code"]))
                .and_then(Country::new);
            geo.location = found
                .decode_path::<Location>(&maxminddb::path!["location"])
                .ok()
                .flatten()
                .and_then(|l| {
                    let (latitude, longitude) = (l.latitude?, l.longitude?);
                    ((-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude))
                        .then_some(Coordinates {
                            latitude,
                            longitude,
                        })
                });
        }
        if let Some(db) = &self.asn {
            geo.asn = record::<AsnRecord>(db, ip).and_then(|r| r.autonomous_system_number);
        }
        if let Some(db) = &self.anonymous
            && let Some(r) = record::<AnonymousRecord>(db, ip)
        {
            for (set, flag) in [
                (r.is_anonymous, AnonymousIp::ANONYMOUS),
                (r.is_anonymous_vpn, AnonymousIp::VPN),
                (r.is_hosting_provider, AnonymousIp::HOSTING_PROVIDER),
                (r.is_public_proxy, AnonymousIp::PUBLIC_PROXY),
                (r.is_tor_exit_node, AnonymousIp::TOR_EXIT_NODE),
                (r.is_residential_proxy, AnonymousIp::RESIDENTIAL_PROXY),
            ] {
                geo.anonymous.set(flag, set);
            }
        }
        geo
    }
}

fn read_one(path: &Path) -> Result<Database, String> {
    let what = |e: &dyn std::fmt::Display| format!("GeoIP database {}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| what(&e))?;
    let reader = maxminddb::Reader::from_source(bytes).map_err(|e| what(&e))?;
    let database_type = reader.metadata().database_type.clone();
    let kind = Kind::of(&database_type).ok_or_else(|| {
        what(&format!(
            "a {database_type:?} database; edgeward reads City, Country, Enterprise, ASN, ISP \
             and Anonymous-IP databases"
        ))
    })?;
    // A file that opens may still be cut short: look one address up so a
    // truncated search tree is refused here, not met by a request.
    reader
        .lookup(IpAddr::from([1, 1, 1, 1]))
        .map_err(|e| what(&e))?;
    Ok(Database { kind, reader })
}

/// The loaded databases, swapped whole on reload.
pub struct GeoIp {
    files: Vec<PathBuf>,
    current: ArcSwap<Databases>,
}

impl GeoIp {
    /// Reads `files` (each a City/Country, ASN/ISP or Anonymous-IP
    /// database, at most one of each kind).
    pub fn load(files: Vec<PathBuf>) -> Result<Arc<Self>, String> {
        let set = Databases::read(&files)?;
        for path in &files {
            tracing::info!(file = %path.display(), "GeoIP database loaded");
        }
        Ok(Arc::new(GeoIp {
            files,
            current: ArcSwap::from_pointee(set),
        }))
    }

    /// Reads the files again and swaps the new set in; on any error the
    /// current set stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let set = Databases::read(&self.files)?;
        self.current.store(Arc::new(set));
        Ok(())
    }

    /// What the current set says of `ip` (off the request path: a worker
    /// reads through its [`GeoCache`]).
    pub fn lookup(&self, ip: IpAddr) -> Geo {
        self.current.load().lookup(ip)
    }

    /// The files, for the file watch.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// A worker's handle on the current set (one relaxed atomic load per
    /// request, as for the topology).
    pub fn cache(self: &Arc<Self>) -> GeoCache {
        GeoCache(arc_swap::Cache::new(Handle(self.clone())))
    }
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp").field("files", &self.files).finish()
    }
}

/// What a worker's [`GeoCache`] reads through.
#[derive(Clone)]
pub struct Handle(Arc<GeoIp>);

impl std::ops::Deref for Handle {
    type Target = ArcSwap<Databases>;
    fn deref(&self) -> &ArcSwap<Databases> {
        &self.0.current
    }
}

/// A worker's cached view of the databases.
pub struct GeoCache(arc_swap::Cache<Handle, Arc<Databases>>);

impl GeoCache {
    /// What the current databases say of `ip`.
    pub fn lookup(&mut self, ip: IpAddr) -> Geo {
        self.0.load().lookup(ip)
    }
}
