//! Entity changes: a batch of edits applied to a snapshot, giving the next
//! one, or refused whole.
//!
//! Edits are applied in order to a draft, each checked against the state
//! the ones before it left (so one batch can delete a program's records and
//! then the program). A draft copies only the parts it touches:
//!
//! - the network (regions, groups, servers) and the channels are small:
//!   an edit of one rebuilds both with the loader's own checks;
//! - a subnet is added to or removed from the prefix tables in place;
//! - a program or record replaces that one program.
//!
//! Referential integrity is checked where a document cannot express it:
//! deleting what something still names is refused, naming what names it.

use super::entity::{
    ChannelEntity, Kind, ProgramEntity, RecordEntity, StreamEntity, channel_entity, program_entity,
    records_of, subnet_key,
};
use super::load::{self, Validator};
use super::model::*;
use super::prefix_table::NONE;
use super::{CHUNK, GONE, Group, SubnetChunk, Subnets, Topology};
use super::{Channel, Indexes, NetworkDoc, Program, Programs, Region, Revisions, Server, Subnet};
use foldhash::HashMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

/// What an edit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Add an entity (its key is in its value).
    Create,
    /// Replace an entity's value.
    Replace,
    /// Merge fields into an entity's value (JSON merge patch, RFC 7396).
    Update,
    /// Remove an entity.
    Delete,
}

impl Op {
    /// Its name, as the API writes it.
    pub fn verb(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Replace => "replace",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// One entity change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// What to do.
    pub op: Op,
    /// To which kind of entity.
    pub kind: Kind,
    /// Which one (not for `create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its value (`create`, `replace`) or the fields to change (`update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The revision the change is based on: if the entity is at another,
    /// the change is a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_match: Option<u64>,
}

/// What one edit changed: the entity before and after.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// What was done.
    pub op: Op,
    /// To which kind.
    pub kind: Kind,
    /// The entity's key.
    pub key: String,
    /// Its value before (none when created).
    pub before: Option<Value>,
    /// Its value after (none when deleted).
    pub after: Option<Value>,
}

/// Why a batch was refused (nothing changed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EditError {
    /// Which kind of refusal.
    pub reason: Reason,
    /// What was wrong, naming the edit, the object, the field and the value.
    pub message: String,
    /// The entity's current revision (for conflicts).
    pub current: Option<u64>,
}

/// The kinds of refusal (each its own HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The value is not valid (400).
    Invalid,
    /// No such entity (404).
    NotFound,
    /// It exists already (409).
    Exists,
    /// It was changed since the revision the edit was based on (409).
    Conflict,
    /// Something still refers to it (409).
    InUse,
}

/// The outcome of a batch.
pub struct Edited {
    /// The new snapshot.
    pub topology: Topology,
    /// What each edit changed.
    pub applied: Vec<Applied>,
}

/// Applies `edits` to `base`, giving the snapshot `version` at
/// `revision`; refused whole at the first edit that fails.
pub fn apply(
    base: &Topology,
    edits: &[Edit],
    version: u64,
    revision: u64,
) -> Result<Edited, EditError> {
    let mut draft = Draft::new(base, revision);
    let mut applied = Vec::with_capacity(edits.len());
    for (i, edit) in edits.iter().enumerate() {
        let done = draft.edit(edit).map_err(|mut e| {
            let what = match &edit.key {
                Some(key) => format!("{} {} {key:?}", edit.op.verb(), edit.kind.singular()),
                None => format!("{} {}", edit.op.verb(), edit.kind.singular()),
            };
            e.message = if edits.len() == 1 {
                format!("{what}: {}", e.message)
            } else {
                format!(
                    "change {} of {} ({what}): {}",
                    i + 1,
                    edits.len(),
                    e.message
                )
            };
            e
        })?;
        applied.push(done);
    }
    let hash = {
        let mut chained = base.hash.clone().into_bytes();
        chained.push(b'\n');
        serde_json::to_writer(&mut chained, edits).expect("edits serialise");
        crate::sha256_hex(&chained)
    };
    Ok(Edited {
        topology: draft.finish(version, hash),
        applied,
    })
}

fn refuse(reason: Reason, message: String) -> EditError {
    EditError {
        reason,
        message,
        current: None,
    }
}

fn invalid(message: String) -> EditError {
    refuse(Reason::Invalid, message)
}

/// The derived network and channels of a draft, rebuilt after an edit of
/// either.
struct Built {
    regions: Vec<Region>,
    groups: Vec<Group>,
    servers: Vec<Server>,
    default_region: Option<u32>,
    pathways: Vec<super::Pathway>,
    steering: super::SteeringSettings,
    channels: Vec<Channel>,
    indexes: Indexes,
}

/// A snapshot being edited: the parts touched so far, copied.
struct Draft<'a> {
    base: &'a Topology,
    revision: u64,
    network: Option<NetworkDoc>,
    channel_docs: Option<Vec<ChannelDoc>>,
    built: Option<Built>,
    subnets: Option<Subnets>,
    programs: Option<Programs>,
    changed: Option<HashMap<(Kind, Box<str>), u64>>,
}

impl<'a> Draft<'a> {
    fn new(base: &'a Topology, revision: u64) -> Self {
        Draft {
            base,
            revision,
            network: None,
            channel_docs: None,
            built: None,
            subnets: None,
            programs: None,
            changed: None,
        }
    }

    fn net(&self) -> &NetworkDoc {
        self.network.as_ref().unwrap_or(&self.base.network)
    }

    fn net_mut(&mut self) -> &mut NetworkDoc {
        self.network
            .get_or_insert_with(|| (*self.base.network).clone())
    }

    fn channel_docs(&self) -> &[ChannelDoc] {
        self.channel_docs
            .as_deref()
            .unwrap_or(&self.base.channel_docs)
    }

    fn channel_docs_mut(&mut self) -> &mut Vec<ChannelDoc> {
        self.channel_docs
            .get_or_insert_with(|| self.base.channel_docs.to_vec())
    }

    fn subnets(&self) -> &Subnets {
        self.subnets.as_ref().unwrap_or(&self.base.subnets)
    }

    fn subnets_mut(&mut self) -> &mut Subnets {
        self.subnets
            .get_or_insert_with(|| (*self.base.subnets).clone())
    }

    fn programs(&self) -> &Programs {
        self.programs.as_ref().unwrap_or(&self.base.programs)
    }

    fn programs_mut(&mut self) -> &mut Programs {
        self.programs
            .get_or_insert_with(|| (*self.base.programs).clone())
    }

    fn indexes(&self) -> &Indexes {
        self.built
            .as_ref()
            .map_or(&self.base.indexes, |b| &b.indexes)
    }

    fn servers(&self) -> &[Server] {
        self.built
            .as_ref()
            .map_or(&self.base.servers, |b| &b.servers)
    }

    fn regions(&self) -> &[Region] {
        self.built
            .as_ref()
            .map_or(&self.base.regions, |b| &b.regions)
    }

    fn revision_of(&self, kind: Kind, key: &str) -> u64 {
        let changed = self
            .changed
            .as_ref()
            .unwrap_or(&self.base.revisions.changed);
        changed
            .get(&(kind, key.into()))
            .copied()
            .unwrap_or(self.base.revisions.base)
    }

    fn touched(&mut self, kind: Kind, key: &str, deleted: bool) {
        let changed = self
            .changed
            .get_or_insert_with(|| self.base.revisions.changed.clone());
        if deleted {
            changed.remove(&(kind, key.into()));
        } else {
            changed.insert((kind, key.into()), self.revision);
        }
    }

    /// Rebuilds the network and channels from their documents, with the
    /// loader's checks.
    /// The ids of the pathways cloned from `base`.
    fn clones_of(&self, base: &str) -> Vec<String> {
        self.pathways_naming(|p| p.base.as_deref() == Some(base))
    }

    /// The ids of the pathways for which `names` holds.
    fn pathways_naming(&self, names: impl Fn(&PathwayDoc) -> bool) -> Vec<String> {
        self.net()
            .pathways
            .iter()
            .filter(|p| names(p))
            .map(|p| p.id.clone())
            .collect()
    }

    /// Makes the document at least of `schema`, for an edit that brings
    /// in what it adds: a node too old to read it then refuses it.
    fn require_schema(&mut self, schema: u32) {
        if self.net().schema.unwrap_or(1) < schema {
            self.net_mut().schema = Some(schema);
        }
    }

    fn rebuild(&mut self) -> Result<(), EditError> {
        // An edit that brings in what schema 2 adds (a pathway, a region's
        // location) makes the document schema 2: a node too old to read
        // it then refuses it as newer, as it must.
        let net = self.net();
        let uses_schema_2 = !net.pathways.is_empty()
            || net.steering.is_some()
            || net.regions.iter().any(|r| r.location.is_some());
        if uses_schema_2 && net.schema.unwrap_or(1) < 2 {
            self.net_mut().schema = Some(2);
        }
        // And so does what schema 3 adds (DVR recording).
        if !load::schema_3_uses(&self.net().servers, self.channel_docs(), std::iter::empty())
            .is_empty()
        {
            self.require_schema(3);
        }
        let mut v = Validator::default();
        let (channels, channel_ids) = load::channels(&mut v, self.channel_docs());
        let network = load::network(&mut v, self.net(), &channel_ids);
        load::recording_groups(&mut v, self.channel_docs(), &network.indexes.groups);
        if !v.problems.is_empty() {
            return Err(invalid(v.problems.join("; ")));
        }
        let mut indexes = network.indexes;
        indexes.channels = channel_ids;
        self.built = Some(Built {
            regions: network.regions,
            groups: network.groups,
            servers: network.servers,
            default_region: network.default_region,
            pathways: network.pathways,
            steering: network.steering,
            channels,
            indexes,
        });
        Ok(())
    }

    fn finish(self, version: u64, hash: String) -> Topology {
        let base = self.base;
        let (mut pathways, mut steering) = (base.pathways.clone(), base.steering);
        let (regions, groups, servers, default_region, channels, indexes) = match self.built {
            Some(b) => {
                pathways = b.pathways.into();
                steering = b.steering;
                (
                    b.regions.into(),
                    b.groups.into(),
                    b.servers.into(),
                    b.default_region,
                    b.channels.into(),
                    Arc::new(b.indexes),
                )
            }
            None => (
                base.regions.clone(),
                base.groups.clone(),
                base.servers.clone(),
                base.default_region,
                base.channels.clone(),
                base.indexes.clone(),
            ),
        };
        Topology {
            version,
            hash,
            regions,
            groups,
            servers,
            subnets: self.subnets.map_or_else(|| base.subnets.clone(), Arc::new),
            channels,
            programs: self
                .programs
                .map_or_else(|| base.programs.clone(), Arc::new),
            default_region,
            pathways,
            steering,
            network: self.network.map_or_else(|| base.network.clone(), Arc::new),
            channel_docs: self
                .channel_docs
                .map_or_else(|| base.channel_docs.clone(), Into::into),
            indexes,
            revisions: Arc::new(Revisions {
                base: base.revisions.base,
                last: self.revision,
                changed: self
                    .changed
                    .unwrap_or_else(|| base.revisions.changed.clone()),
            }),
            source: OnceLock::new(),
        }
    }

    /// The current form of `kind`/`key` in the draft.
    fn current(&self, kind: Kind, key: &str) -> Option<Value> {
        self.current_written(kind, key)
            .map(|v| super::entity::complete(kind, v))
    }

    fn current_written(&self, kind: Kind, key: &str) -> Option<Value> {
        Some(match kind {
            Kind::Regions => value(self.net().regions.iter().find(|r| r.id == key)?),
            Kind::ServerGroups => value(self.net().server_groups.iter().find(|g| g.id == key)?),
            Kind::Servers => value(self.net().servers.iter().find(|s| s.id == key)?),
            Kind::Pathways => value(self.net().pathways.iter().find(|p| p.id == key)?),
            Kind::Channels => value(&channel_entity(
                self.channel_docs().iter().find(|c| c.epg_id == key)?,
            )),
            Kind::Streams => {
                let (c, at) = self.find_stream(key)?;
                let doc = &self.channel_docs()[c];
                let s = &doc.streams[at];
                value(&StreamEntity {
                    channel: doc.epg_id.clone(),
                    protocol: s.protocol,
                    encryption: s.encryption,
                    path: s.path.clone(),
                    active: s.active,
                })
            }
            Kind::Programs => {
                let i = self.programs().slot(key)?;
                value(&program_entity(self.programs().get(i)?))
            }
            Kind::Records => {
                let (p, at) = self.find_record(key)?;
                let program = self.programs().get(p)?;
                let (_, r) = records_of(program).swap_remove(at);
                value(&r)
            }
            Kind::Subnets => {
                let i = self.subnets().find(subnet_key(key)?)?;
                let s = &self.subnets()[i as usize];
                value(&super::document::SubnetView {
                    cidr: self.subnets().written(i),
                    region: &self.regions()[s.region as usize].id,
                    name: self.subnets().name(i),
                })
            }
        })
    }

    /// The stream `key` names: its channel's index and its place there.
    fn find_stream(&self, key: &str) -> Option<(usize, usize)> {
        let channel = key.split('/').next()?;
        let c = self
            .channel_docs()
            .iter()
            .position(|d| d.epg_id == channel)?;
        let base = Base::of(Kind::Streams, key)?;
        let at = nth_matching(
            self.channel_docs()[c]
                .streams
                .iter()
                .map(|s| super::entity::stream_key(channel, s.protocol, s.encryption)),
            base,
        )?;
        Some((c, at))
    }

    /// The record `key` names: its program's index and its place there.
    fn find_record(&self, key: &str) -> Option<(u32, usize)> {
        let program = key.split('/').next()?;
        let p = self.programs().slot(program)?;
        let prog = self.programs().get(p)?;
        let base = Base::of(Kind::Records, key)?;
        let at = nth_matching(
            prog.records
                .iter()
                .map(|r| super::entity::record_key(program, &r.server, r.protocol, r.encryption)),
            base,
        )?;
        Some((p, at))
    }

    fn edit(&mut self, edit: &Edit) -> Result<Applied, EditError> {
        let kind = edit.kind;
        // The entity's key, and its value before.
        let (key, before) = match (edit.op, &edit.key) {
            (Op::Create, _) => {
                let value = edit
                    .value
                    .as_ref()
                    .ok_or_else(|| invalid("a create needs a value".into()))?;
                let key = key_of(kind, value)?;
                if self.current(kind, &key).is_some() {
                    return Err(refuse(
                        Reason::Exists,
                        format!("{} {key:?} exists already", kind.singular()),
                    ));
                }
                if edit
                    .key
                    .as_ref()
                    .is_some_and(|k| normal_key(kind, k) != key)
                {
                    return Err(invalid(format!(
                        "the key {:?} is not the value's ({key:?})",
                        edit.key.as_deref().unwrap_or_default()
                    )));
                }
                (key, None)
            }
            (_, None) => return Err(invalid(format!("a {} needs a key", edit.op.verb()))),
            (_, Some(key)) => {
                let key = normal_key(kind, key);
                let Some(before) = self.current(kind, &key) else {
                    return Err(refuse(
                        Reason::NotFound,
                        format!("no {} {key:?}", kind.singular()),
                    ));
                };
                (key, Some(before))
            }
        };
        if let Some(expected) = edit.if_match {
            let current = self.revision_of(kind, &key);
            if before.is_none() || current != expected {
                return Err(EditError {
                    reason: Reason::Conflict,
                    message: format!(
                        "{} {key:?} is at revision {current}, not {expected}: someone changed it since; read it again and retry",
                        kind.singular()
                    ),
                    current: Some(current),
                });
            }
        }
        let after = match edit.op {
            Op::Delete => None,
            Op::Create => edit.value.clone(),
            Op::Replace => {
                let mut value = edit
                    .value
                    .clone()
                    .ok_or_else(|| invalid("a replace needs a value".into()))?;
                fill_key(kind, &key, &mut value)?;
                Some(value)
            }
            Op::Update => {
                let patch = edit
                    .value
                    .as_ref()
                    .ok_or_else(|| invalid("an update needs the fields to change".into()))?;
                if !patch.is_object() {
                    return Err(invalid(
                        "an update's value must be an object of the fields to change".into(),
                    ));
                }
                let mut value = before.clone().expect("found above");
                merge_patch(&mut value, patch);
                Some(value)
            }
        };
        if let Some(after) = &after {
            let after_key = key_of(kind, after)?;
            if after_key != base_key(kind, &key) {
                return Err(invalid(format!(
                    "the {} cannot change ({key:?} to {after_key:?}): create a new {} and delete this one",
                    kind.key_fields().join(", "),
                    kind.singular()
                )));
            }
        }
        if let Some(after) = &after {
            self.name_is_free(kind, &key, before.as_ref(), after)?;
        }
        match (before.is_some(), &after) {
            (false, Some(value)) => self.create(kind, value)?,
            (true, Some(value)) => self.replace(kind, &key, value)?,
            (true, None) => self.delete(kind, &key)?,
            (false, None) => unreachable!("a delete always has a key"),
        }
        self.touched(kind, &key, after.is_none());
        let after = after.and_then(|_| self.current(kind, &key));
        Ok(Applied {
            op: edit.op,
            kind,
            key,
            before,
            after,
        })
    }

    /// Names are unique among regions, among channels and among subnets,
    /// as in the old system's admin: a name an edit gives that another
    /// entity of the kind has is refused. (A whole document that already
    /// holds a duplicate stays valid, and its entities editable.)
    fn name_is_free(
        &self,
        kind: Kind,
        key: &str,
        before: Option<&Value>,
        after: &Value,
    ) -> Result<(), EditError> {
        let name_of = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
        let Some(name) = name_of(after) else {
            return Ok(());
        };
        if before.and_then(name_of).as_deref() == Some(&*name) {
            return Ok(());
        }
        let holder = match kind {
            Kind::Regions => self
                .net()
                .regions
                .iter()
                .find(|r| r.id != key && r.name.as_deref() == Some(&*name))
                .map(|r| r.id.clone()),
            Kind::Channels => self
                .channel_docs()
                .iter()
                .find(|c| c.epg_id != key && c.name.as_deref() == Some(&*name))
                .map(|c| c.epg_id.clone()),
            Kind::Subnets => self.subnets().named(&name).and_then(|i| {
                let net = self.subnets()[i as usize].net.to_string();
                (net != key).then_some(net)
            }),
            _ => None,
        };
        match holder {
            Some(other) => Err(refuse(
                Reason::Exists,
                format!(
                    "field `name`: {name:?} is already the name of {} {other:?}",
                    kind.singular()
                ),
            )),
            None => Ok(()),
        }
    }

    fn create(&mut self, kind: Kind, value: &Value) -> Result<(), EditError> {
        match kind {
            Kind::Regions => {
                let doc: RegionDoc = parse(kind, value)?;
                self.net_mut().regions.push(doc);
                self.rebuild()
            }
            Kind::ServerGroups => {
                let doc: GroupDoc = parse(kind, value)?;
                self.net_mut().server_groups.push(doc);
                self.rebuild()
            }
            Kind::Servers => {
                let doc: ServerDoc = parse(kind, value)?;
                self.net_mut().servers.push(doc);
                self.rebuild()
            }
            Kind::Pathways => {
                let doc: PathwayDoc = parse(kind, value)?;
                self.net_mut().pathways.push(doc);
                self.rebuild()
            }
            Kind::Channels => {
                let e: ChannelEntity = parse(kind, value)?;
                self.channel_docs_mut().push(ChannelDoc {
                    epg_id: e.epg_id,
                    name: e.name,
                    active: e.active,
                    dvr_enabled: e.dvr_enabled,
                    recording_group: e.recording_group,
                    code_name: e.code_name,
                    storage_id: e.storage_id,
                    streams: Vec::new(),
                });
                self.rebuild()
            }
            Kind::Streams => {
                let e: StreamEntity = parse(kind, value)?;
                let Some(c) = self
                    .channel_docs()
                    .iter()
                    .position(|d| d.epg_id == e.channel)
                else {
                    return Err(invalid(format!(
                        "field `channel`: {:?} is not the epg_id of any channel",
                        e.channel
                    )));
                };
                self.channel_docs_mut()[c].streams.push(StreamDoc {
                    protocol: e.protocol,
                    encryption: e.encryption,
                    path: e.path,
                    active: e.active,
                });
                self.rebuild()
            }
            Kind::Programs => {
                let e: ProgramEntity = parse(kind, value)?;
                let program = self.program(ProgramDoc {
                    epg_id: e.epg_id,
                    channel: e.channel,
                    start: e.start,
                    end: e.end,
                    records: Vec::new(),
                })?;
                self.programs_mut()
                    .push(Arc::new(program))
                    .expect("a new key (checked above)");
                Ok(())
            }
            Kind::Records => {
                let e: RecordEntity = parse(kind, value)?;
                let Some(p) = self.programs().slot(&e.program) else {
                    return Err(invalid(format!(
                        "field `program`: {:?} is not the epg_id of any program",
                        e.program
                    )));
                };
                let mut doc = self.programs().get(p).expect("found above").to_doc();
                let record = record_doc(e);
                let schema_3 = load::record_uses_schema_3(&record);
                doc.records.push(record);
                let program = self.program(doc)?;
                if schema_3 {
                    self.require_schema(3);
                }
                self.programs_mut().set(p, Arc::new(program));
                Ok(())
            }
            Kind::Subnets => {
                let doc: SubnetDoc = parse(kind, value)?;
                let (net, written) = self.subnet_fields(&doc)?;
                let region = self.region_of(&doc)?;
                self.subnets_mut().insert(net, written, region, doc.name);
                Ok(())
            }
        }
    }

    fn replace(&mut self, kind: Kind, key: &str, value: &Value) -> Result<(), EditError> {
        match kind {
            Kind::Pathways => {
                let doc: PathwayDoc = parse(kind, value)?;
                let at = position(&self.net().pathways, |p| p.id == key);
                if doc.id != key {
                    let clones = self.clones_of(key);
                    if !clones.is_empty() {
                        return Err(refuse(
                            Reason::InUse,
                            format!(
                                "pathway {key:?} is still the base of clone{} {} (its id cannot change)",
                                plural(clones.len()),
                                quoted(&clones)
                            ),
                        ));
                    }
                }
                self.net_mut().pathways[at] = doc;
                self.rebuild()
            }
            Kind::Regions => {
                let doc: RegionDoc = parse(kind, value)?;
                let at = position(&self.net().regions, |r| r.id == key);
                self.net_mut().regions[at] = doc;
                self.rebuild()
            }
            Kind::ServerGroups => {
                let doc: GroupDoc = parse(kind, value)?;
                let at = position(&self.net().server_groups, |g| g.id == key);
                self.net_mut().server_groups[at] = doc;
                self.rebuild()
            }
            Kind::Servers => {
                let doc: ServerDoc = parse(kind, value)?;
                let at = position(&self.net().servers, |s| s.id == key);
                if self.net().servers[at].kind == ServerKind::Dvr && doc.kind != ServerKind::Dvr {
                    let records = self.records_on(key);
                    if records > 0 {
                        return Err(refuse(
                            Reason::InUse,
                            format!(
                                "field `kind`: server {key:?} holds {records} record{}, so it stays a dvr server",
                                plural(records)
                            ),
                        ));
                    }
                }
                self.net_mut().servers[at] = doc;
                self.rebuild()
            }
            Kind::Channels => {
                let e: ChannelEntity = parse(kind, value)?;
                let at = position(self.channel_docs(), |c| c.epg_id == key);
                let doc = &mut self.channel_docs_mut()[at];
                doc.name = e.name;
                doc.active = e.active;
                doc.dvr_enabled = e.dvr_enabled;
                doc.recording_group = e.recording_group;
                doc.code_name = e.code_name;
                doc.storage_id = e.storage_id;
                self.rebuild()
            }
            Kind::Streams => {
                let e: StreamEntity = parse(kind, value)?;
                let (c, at) = self.find_stream(key).expect("found above");
                self.channel_docs_mut()[c].streams[at] = StreamDoc {
                    protocol: e.protocol,
                    encryption: e.encryption,
                    path: e.path,
                    active: e.active,
                };
                self.rebuild()
            }
            Kind::Programs => {
                let e: ProgramEntity = parse(kind, value)?;
                let p = self.programs().slot(key).expect("found above");
                let mut doc = self.programs().get(p).expect("found above").to_doc();
                doc.channel = e.channel;
                doc.start = e.start;
                doc.end = e.end;
                let program = self.program(doc)?;
                self.programs_mut().set(p, Arc::new(program));
                Ok(())
            }
            Kind::Records => {
                let e: RecordEntity = parse(kind, value)?;
                let (p, at) = self.find_record(key).expect("found above");
                let mut doc = self.programs().get(p).expect("found above").to_doc();
                let record = record_doc(e);
                let schema_3 = load::record_uses_schema_3(&record);
                doc.records[at] = record;
                let program = self.program(doc)?;
                if schema_3 {
                    self.require_schema(3);
                }
                self.programs_mut().set(p, Arc::new(program));
                Ok(())
            }
            Kind::Subnets => {
                let doc: SubnetDoc = parse(kind, value)?;
                let (_, written) = self.subnet_fields(&doc)?;
                let region = self.region_of(&doc)?;
                let i = self
                    .subnets()
                    .find(subnet_key(key).expect("found above"))
                    .expect("found above");
                self.subnets_mut().set(i, written, region, doc.name);
                Ok(())
            }
        }
    }

    fn delete(&mut self, kind: Kind, key: &str) -> Result<(), EditError> {
        let in_use = |what: String| Err(refuse(Reason::InUse, what));
        match kind {
            Kind::Pathways => {
                let at = position(&self.net().pathways, |p| p.id == key);
                let clones = self.clones_of(key);
                if !clones.is_empty() {
                    return in_use(format!(
                        "pathway {key:?} is still the base of clone{} {}",
                        plural(clones.len()),
                        quoted(&clones)
                    ));
                }
                self.net_mut().pathways.remove(at);
                self.rebuild()
            }
            Kind::Regions => {
                let at = position(&self.net().regions, |r| r.id == key);
                if self.net().default_region.as_deref() == Some(key) {
                    return in_use(format!(
                        "region {key:?} is the default region (field `default_region`)"
                    ));
                }
                let index = self.indexes().regions[key];
                let subnets = self
                    .subnets()
                    .iter()
                    .filter(|(_, s)| s.region == index)
                    .count();
                if subnets > 0 {
                    return in_use(format!(
                        "region {key:?} still has {subnets} subnet{} (move or delete them first)",
                        plural(subnets)
                    ));
                }
                let pathways = self.pathways_naming(|p| p.regions.iter().any(|r| r == key));
                if !pathways.is_empty() {
                    return in_use(format!(
                        "region {key:?} is still a region of pathway{} {}",
                        plural(pathways.len()),
                        quoted(&pathways)
                    ));
                }
                self.net_mut().regions.remove(at);
                if self.subnets().iter().any(|(_, s)| s.region > index) {
                    self.subnets_mut().region_removed(index);
                }
                self.rebuild()
            }
            Kind::ServerGroups => {
                let at = position(&self.net().server_groups, |g| g.id == key);
                let regions = naming(&self.net().regions, |r| (&r.id, &r.server_groups), key);
                if !regions.is_empty() {
                    return in_use(format!(
                        "server group {key:?} is still a group of region{} {}",
                        plural(regions.len()),
                        quoted(&regions)
                    ));
                }
                let pathways = self.pathways_naming(|p| p.group.as_deref() == Some(key));
                if !pathways.is_empty() {
                    return in_use(format!(
                        "server group {key:?} is still the group of pathway{} {}",
                        plural(pathways.len()),
                        quoted(&pathways)
                    ));
                }
                self.net_mut().server_groups.remove(at);
                self.rebuild()
            }
            Kind::Servers => {
                let at = position(&self.net().servers, |s| s.id == key);
                let groups = naming(&self.net().server_groups, |g| (&g.id, &g.servers), key);
                if !groups.is_empty() {
                    return in_use(format!(
                        "server {key:?} is still a member of server group{} {}",
                        plural(groups.len()),
                        quoted(&groups)
                    ));
                }
                let records = self.records_on(key);
                if records > 0 {
                    return in_use(format!(
                        "server {key:?} still holds {records} record{}",
                        plural(records)
                    ));
                }
                self.net_mut().servers.remove(at);
                self.rebuild()
            }
            Kind::Channels => {
                let at = position(self.channel_docs(), |c| c.epg_id == key);
                let streams = self.channel_docs()[at].streams.len();
                let programs = self
                    .programs()
                    .iter()
                    .filter(|p| &*p.channel == key)
                    .count();
                let groups = naming(&self.net().server_groups, |g| (&g.id, &g.channels), key);
                let mut uses = Vec::new();
                if streams > 0 {
                    uses.push(format!("{streams} stream{}", plural(streams)));
                }
                if programs > 0 {
                    uses.push(format!("{programs} program{}", plural(programs)));
                }
                if !groups.is_empty() {
                    uses.push(format!(
                        "server group{} {} naming it",
                        plural(groups.len()),
                        quoted(&groups)
                    ));
                }
                if !uses.is_empty() {
                    return in_use(format!("channel {key:?} still has {}", uses.join(" and ")));
                }
                self.channel_docs_mut().remove(at);
                self.rebuild()
            }
            Kind::Streams => {
                let (c, at) = self.find_stream(key).expect("found above");
                self.channel_docs_mut()[c].streams.remove(at);
                self.rebuild()
            }
            Kind::Programs => {
                let p = self.programs().slot(key).expect("found above");
                let records = self.programs().get(p).expect("found above").records.len();
                if records > 0 {
                    return in_use(format!(
                        "program {key:?} still has {records} record{} (delete them first, or in the same batch)",
                        plural(records)
                    ));
                }
                self.programs_mut().remove(p);
                Ok(())
            }
            Kind::Records => {
                let (p, at) = self.find_record(key).expect("found above");
                let mut doc = self.programs().get(p).expect("found above").to_doc();
                doc.records.remove(at);
                let program = self.program(doc)?;
                self.programs_mut().set(p, Arc::new(program));
                Ok(())
            }
            Kind::Subnets => {
                let i = self
                    .subnets()
                    .find(subnet_key(key).expect("found above"))
                    .expect("found above");
                self.subnets_mut().remove(i);
                Ok(())
            }
        }
    }

    /// How many records name server `id`.
    fn records_on(&self, id: &str) -> usize {
        self.programs()
            .iter()
            .flat_map(|p| p.records.iter())
            .filter(|r| &*r.server == id)
            .count()
    }

    /// A program checked against the draft's channels and servers.
    fn program(&self, doc: ProgramDoc) -> Result<Program, EditError> {
        let mut v = Validator::default();
        let indexes = self.indexes();
        let program = load::program(
            &mut v,
            || format!("program {:?}", doc.epg_id),
            &doc,
            &indexes.channels,
            &indexes.servers,
            self.servers(),
        );
        if v.problems.is_empty() {
            Ok(program)
        } else {
            Err(invalid(v.problems.join("; ")))
        }
    }

    /// A subnet's network (normalised) and CIDR as written.
    fn subnet_fields(&self, doc: &SubnetDoc) -> Result<(IpNet, IpNet), EditError> {
        match &doc.cidr {
            Cidr::Net(n) => Ok((n.trunc(), *n)),
            Cidr::Invalid(text) => Err(invalid(format!(
                "field `cidr`: {text:?} is not an IPv4 or IPv6 CIDR (like 10.1.0.0/16 or 2001:db8::/32)"
            ))),
        }
    }

    fn region_of(&self, doc: &SubnetDoc) -> Result<u32, EditError> {
        self.indexes()
            .regions
            .get(&*doc.region)
            .copied()
            .ok_or_else(|| {
                invalid(format!(
                    "field `region`: {:?} is not the id of any region",
                    &*doc.region
                ))
            })
    }
}

/// The key of an entity's value: its key fields, joined by `/`.
fn key_of(kind: Kind, value: &Value) -> Result<String, EditError> {
    let mut parts = Vec::new();
    for field in kind.key_fields() {
        match value.get(field) {
            Some(Value::String(s)) if !s.is_empty() => parts.push(s.clone()),
            Some(other) if !other.is_null() && !other.is_string() => {
                return Err(invalid(format!("field `{field}`: {other} is not a string")));
            }
            _ => return Err(invalid(format!("field `{field}` is required"))),
        }
    }
    let key = parts.join("/");
    Ok(match kind {
        Kind::Subnets => match subnet_key(&key) {
            Some(net) => net.to_string(),
            None => {
                return Err(invalid(format!(
                    "field `cidr`: {key:?} is not an IPv4 or IPv6 CIDR (like 10.1.0.0/16 or 2001:db8::/32)"
                )));
            }
        },
        _ => key,
    })
}

/// A key as given, in its normal form (a subnet's CIDR without host bits).
fn normal_key(kind: Kind, key: &str) -> String {
    match kind {
        Kind::Subnets => subnet_key(key).map_or_else(|| key.to_string(), |n| n.to_string()),
        _ => key.to_string(),
    }
}

/// A stream or record key without its `/n` (the n-th of the same key).
fn base_key(kind: Kind, key: &str) -> &str {
    match (kind, key.rsplit_once('/')) {
        (Kind::Streams | Kind::Records, Some((base, n)))
            if n.parse::<u32>().is_ok_and(|n| n >= 2) =>
        {
            base
        }
        _ => key,
    }
}

/// Where a numbered key points: its base, and which of them.
struct Base<'k> {
    key: &'k str,
    nth: usize,
}

impl<'k> Base<'k> {
    fn of(kind: Kind, key: &'k str) -> Option<Self> {
        let base = base_key(kind, key);
        let nth = if base.len() == key.len() {
            1
        } else {
            key[base.len() + 1..].parse().ok()?
        };
        Some(Base { key: base, nth })
    }
}

fn nth_matching(keys: impl Iterator<Item = String>, base: Base<'_>) -> Option<usize> {
    keys.enumerate()
        .filter(|(_, k)| k == base.key)
        .nth(base.nth - 1)
        .map(|(i, _)| i)
}

/// Puts the key's fields into a replace's value where it leaves them out.
fn fill_key(kind: Kind, key: &str, value: &mut Value) -> Result<(), EditError> {
    let Some(object) = value.as_object_mut() else {
        return Err(invalid(format!(
            "the value of a {} must be an object",
            kind.singular()
        )));
    };
    let base = base_key(kind, key);
    let parts: Vec<&str> = match kind {
        Kind::Records => {
            // program/server…/protocol/encryption: the server id may hold `/`.
            let mut it = base.splitn(2, '/');
            let program = it.next().unwrap_or_default();
            let rest = it.next().unwrap_or_default();
            let mut tail = rest.rsplitn(3, '/');
            let encryption = tail.next().unwrap_or_default();
            let protocol = tail.next().unwrap_or_default();
            let server = tail.next().unwrap_or_default();
            vec![program, server, protocol, encryption]
        }
        Kind::Streams => base.splitn(3, '/').collect(),
        _ => vec![base],
    };
    for (field, part) in kind.key_fields().iter().zip(parts) {
        object
            .entry(field.to_string())
            .or_insert_with(|| Value::String(part.to_string()));
    }
    Ok(())
}

/// RFC 7396: `null` removes a field, objects merge, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Reads an entity's value, naming the field that is wrong.
fn parse<T: serde::de::DeserializeOwned>(kind: Kind, value: &Value) -> Result<T, EditError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        let message = e.into_inner().to_string();
        if at == "." {
            invalid(format!("not a valid {}: {message}", kind.singular()))
        } else {
            invalid(format!("field `{at}`: {message}"))
        }
    })
}

fn record_doc(e: RecordEntity) -> RecordDoc {
    RecordDoc {
        server: e.server,
        protocol: e.protocol,
        encryption: e.encryption,
        path: e.path,
        status: e.status,
        placement: e.placement,
        error: e.error,
    }
}

/// The ids of the entries of `list` whose list of ids (`fields` gives the
/// entry's id and that list) names `key`.
fn naming<'a, T>(
    list: &'a [T],
    fields: impl Fn(&'a T) -> (&'a String, &'a Vec<String>),
    key: &str,
) -> Vec<&'a str> {
    list.iter()
        .map(fields)
        .filter(|(_, named)| named.iter().any(|n| n == key))
        .map(|(id, _)| id.as_str())
        .collect()
}

fn position<T>(list: &[T], f: impl Fn(&T) -> bool) -> usize {
    list.iter().position(f).expect("the entity was found")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn quoted<S: AsRef<str>>(ids: &[S]) -> String {
    ids.iter()
        .map(|id| format!("{:?}", id.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value of the document's types as JSON (for before and after).
fn value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("an entity always serialises")
}

impl Subnets {
    /// The chunk holding slot `i`, to change (copied if shared), and the
    /// slot's offset in it.
    fn chunk_mut(&mut self, i: u32) -> (&mut SubnetChunk, u16) {
        let chunk = Arc::make_mut(&mut self.chunks[i as usize / CHUNK]);
        (chunk, (i as usize % CHUNK) as u16)
    }

    /// The subnets inside `net` whose parent is `outer` (the most specific
    /// subnet enclosing `net`, or none): those a subnet of `net` would be
    /// the parent of. Found from the intervals the tables give `net`'s
    /// addresses, walking up from each label: every subnet inside `net`
    /// labels an interval, or encloses one that does.
    fn children_within(&self, net: IpNet, outer: u32) -> Vec<u32> {
        let labels: Box<dyn Iterator<Item = u32>> = match net {
            IpNet::V4(n) => Box::new(
                self.v4
                    .labels_in(u32::from(n.network()), u32::from(n.broadcast())),
            ),
            IpNet::V6(n) => Box::new(
                self.v6
                    .labels_in(u128::from(n.network()), u128::from(n.broadcast())),
            ),
        };
        let mut seen = std::collections::HashSet::new();
        let mut children = Vec::new();
        for mut at in labels {
            loop {
                let s = &self[at as usize];
                if s.net.prefix_len() <= net.prefix_len() || !net.contains(&s.net) {
                    break; // `net` itself, or a subnet enclosing it
                }
                if !seen.insert(at) {
                    break; // walked from here already
                }
                if s.parent == outer {
                    children.push(at);
                    break;
                }
                at = s.parent;
            }
        }
        children
    }

    /// The slot of a subnet with this name (a scan of the names only).
    fn named(&self, name: &str) -> Option<u32> {
        self.chunks.iter().enumerate().find_map(|(c, chunk)| {
            let (at, _) = chunk.names.iter().find(|(_, n)| &**n == name)?;
            Some((c * CHUNK) as u32 + u32::from(*at))
        })
    }

    /// Adds a subnet in a new slot at the end.
    fn insert(&mut self, net: IpNet, written: IpNet, region: u32, name: Option<Box<str>>) {
        let id = self.slots;
        // Its parent: the most specific subnet holding its first address
        // that is shorter than it.
        let mut parent = match net {
            IpNet::V4(n) => self.v4.longest(u32::from(n.network())),
            IpNet::V6(n) => self.v6.longest(u128::from(n.network())),
        }
        .unwrap_or(NONE);
        while parent != NONE && self[parent as usize].net.prefix_len() >= net.prefix_len() {
            parent = self[parent as usize].parent;
        }
        // The subnets inside it that had its parent now have it.
        for child in self.children_within(net, parent) {
            let (chunk, at) = self.chunk_mut(child);
            chunk.list[at as usize].parent = id;
        }
        let chunks = &self.chunks;
        let len_of = |i: u32| {
            chunks[i as usize / CHUNK].list[i as usize % CHUNK]
                .net
                .prefix_len()
        };
        match net {
            IpNet::V4(n) => Arc::make_mut(&mut self.v4).insert(
                u32::from(n.network()),
                n.prefix_len(),
                id,
                len_of,
            ),
            IpNet::V6(n) => Arc::make_mut(&mut self.v6).insert(
                u128::from(n.network()),
                n.prefix_len(),
                id,
                len_of,
            ),
        }
        if (id as usize).is_multiple_of(CHUNK) {
            self.chunks.push(Arc::default());
        }
        let (chunk, at) = self.chunk_mut(id);
        chunk.list.push(Subnet {
            net,
            region,
            parent,
        });
        if let Some(name) = name {
            chunk.names.push((at, name));
        }
        if written != net {
            chunk.written.push((at, written));
        }
        self.slots += 1;
        self.live += 1;
    }

    /// Changes a subnet's region, name and CIDR as written (same network),
    /// copying only its chunk.
    fn set(&mut self, i: u32, written: IpNet, region: u32, name: Option<Box<str>>) {
        let net = self[i as usize].net;
        let unchanged = self[i as usize].region == region
            && self.name(i) == name.as_deref()
            && self.written(i) == written;
        if unchanged {
            return;
        }
        let (chunk, at) = self.chunk_mut(i);
        chunk.list[at as usize].region = region;
        set_sorted(&mut chunk.names, at, name);
        set_sorted(&mut chunk.written, at, (written != net).then_some(written));
    }

    /// Removes subnet `i`, leaving its slot empty; its children take its
    /// parent.
    fn remove(&mut self, i: u32) {
        let Subnet { net, parent, .. } = self[i as usize];
        for child in self.children_within(net, i) {
            let (chunk, at) = self.chunk_mut(child);
            chunk.list[at as usize].parent = parent;
        }
        match net {
            IpNet::V4(n) => Arc::make_mut(&mut self.v4).remove(
                u32::from(n.network()),
                n.prefix_len(),
                i,
                parent,
            ),
            IpNet::V6(n) => Arc::make_mut(&mut self.v6).remove(
                u128::from(n.network()),
                n.prefix_len(),
                i,
                parent,
            ),
        }
        let (chunk, at) = self.chunk_mut(i);
        let s = &mut chunk.list[at as usize];
        s.region = GONE;
        s.parent = NONE;
        set_sorted(&mut chunk.names, at, None);
        set_sorted(&mut chunk.written, at, None);
        self.live -= 1;
    }

    /// Region `index` was removed (no subnet was in it): the ones after it
    /// move down by one.
    fn region_removed(&mut self, index: u32) {
        for chunk in &mut self.chunks {
            let after = |s: &Subnet| s.region != GONE && s.region > index;
            if chunk.list.iter().any(after) {
                for s in &mut Arc::make_mut(chunk).list {
                    if after(s) {
                        s.region -= 1;
                    }
                }
            }
        }
    }
}

/// Sets or clears entry `i` of a side table sorted by index.
fn set_sorted<T>(table: &mut Vec<(u16, T)>, i: u16, value: Option<T>) {
    match (table.binary_search_by_key(&i, |(j, _)| *j), value) {
        (Ok(at), Some(v)) => table[at].1 = v,
        (Ok(at), None) => {
            table.remove(at);
        }
        (Err(at), Some(v)) => table.insert(at, (i, v)),
        (Err(_), None) => {}
    }
}

/// The stream keys of a topology, for tests.
#[cfg(test)]
fn stream_keys(t: &Topology) -> Vec<String> {
    use super::entity::streams_of;
    (0..t.channel_docs.len())
        .flat_map(|c| streams_of(t, c).into_iter().map(|(k, _)| k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOC: &str = r#"{
        "default_region": "r1",
        "regions": [
            {"id": "r1", "server_groups": ["g1"]},
            {"id": "r2", "server_groups": ["g1"]},
            {"id": "r3", "server_groups": []}
        ],
        "server_groups": [{"id": "g1", "servers": ["e1", "e2"], "channels": ["ch1"]}],
        "servers": [
            {"id": "e1", "kind": "edge", "host": "e1.test", "port": 80},
            {"id": "e2", "kind": "edge", "host": "e2.test", "port": 80},
            {"id": "d1", "kind": "dvr", "host": "d1.test", "port": 80, "prefix": "d1"}
        ],
        "subnets": [
            {"cidr": "10.0.0.0/8", "region": "r1"},
            {"cidr": "10.1.0.0/16", "region": "r2", "name": "ten-one"},
            {"cidr": "2001:db8::/32", "region": "r3"}
        ],
        "channels": [
            {"epg_id": "ch1", "streams": [
                {"protocol": "hls", "encryption": "none", "path": "live/ch1.m3u8"},
                {"protocol": "hls", "encryption": "none", "path": "live/ch1-b.m3u8", "active": false}
            ]},
            {"epg_id": "ch2", "streams": []}
        ],
        "programs": [
            {"epg_id": "p1", "channel": "ch1", "records": [
                {"server": "d1", "protocol": "hls", "encryption": "none", "path": "/p1.m3u8", "status": "completed"}
            ]}
        ]
    }"#;

    fn topology() -> Topology {
        super::super::load(bytes::Bytes::from_static(DOC.as_bytes()), 1)
            .unwrap()
            .at_revision(10)
    }

    fn edit(op: Op, kind: Kind, key: Option<&str>, value: Option<Value>) -> Edit {
        Edit {
            op,
            kind,
            key: key.map(Into::into),
            value,
            if_match: None,
        }
    }

    /// Applies, and checks that the result is what a whole load of its
    /// document builds.
    fn applied(t: &Topology, edits: &[Edit]) -> Result<Topology, EditError> {
        let out = apply(t, edits, t.version + 1, t.revision() + 1)?.topology;
        let doc = out.document();
        let rebuilt = super::super::build(&doc, 0).expect("the edited document is valid");
        assert_eq!(rebuilt.source(), out.source(), "same document");
        for addr in [
            "10.1.2.3",
            "10.9.9.9",
            "10.1.200.1",
            "2001:db8::1",
            "11.0.0.1",
        ] {
            let a = addr.parse().unwrap();
            let got: Vec<_> = out
                .matching_subnets(a)
                .map(|i| out.subnets[i as usize].net)
                .collect();
            let want: Vec<_> = rebuilt
                .matching_subnets(a)
                .map(|i| rebuilt.subnets[i as usize].net)
                .collect();
            assert_eq!(got, want, "{addr}");
        }
        Ok(out)
    }

    #[test]
    fn an_edit_bringing_in_dvr_recording_makes_the_document_schema_3() {
        let t = topology();
        assert_eq!(t.network.schema, None);
        // An intent: a new record with no path yet.
        let intent = json!({"program": "p1", "server": "d1", "protocol": "mpd",
            "encryption": "cenc", "status": "new", "placement": "one/mpd/cenc/p1"});
        let out = applied(&t, &[edit(Op::Create, Kind::Records, None, Some(intent))]).unwrap();
        assert_eq!(out.network.schema, Some(3));
        let p = out.programs.iter().next().unwrap();
        assert_eq!(p.records[1].placement.as_deref(), Some("one/mpd/cenc/p1"));
        // A channel's recording group must be a server group; a good one
        // makes schema 3 too.
        let channel = |group: &str| json!({"epg_id": "ch2", "dvr_enabled": true, "recording_group": group, "code_name": "two"});
        let e = applied(
            &t,
            &[edit(
                Op::Replace,
                Kind::Channels,
                Some("ch2"),
                Some(channel("g9")),
            )],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(r#"field `recording_group`: "g9" is not the id of any server group"#),
            "{e}"
        );
        let out = applied(
            &t,
            &[edit(
                Op::Replace,
                Kind::Channels,
                Some("ch2"),
                Some(channel("g1")),
            )],
        )
        .unwrap();
        assert_eq!(out.network.schema, Some(3));
        assert_eq!(out.channel_docs[1].recording_group.as_deref(), Some("g1"));
    }

    #[test]
    fn subnets_are_added_moved_and_removed_in_place() {
        let t = topology();
        let t = applied(
            &t,
            &[edit(
                Op::Create,
                Kind::Subnets,
                None,
                Some(json!({"cidr": "10.1.128.0/17", "region": "r3", "name": "half"})),
            )],
        )
        .unwrap();
        let addr = "10.1.200.1".parse().unwrap();
        assert_eq!(
            t.regions[t.subnets[t.longest_match(addr).unwrap() as usize].region as usize]
                .id
                .as_ref(),
            "r3"
        );
        assert_eq!(t.revision_of(Kind::Subnets, "10.1.128.0/17"), 11);
        assert_eq!(t.revision_of(Kind::Subnets, "10.0.0.0/8"), 10);
        let t = applied(
            &t,
            &[edit(
                Op::Update,
                Kind::Subnets,
                Some("10.1.0.5/16"),
                Some(json!({"region": "r1", "name": null})),
            )],
        )
        .unwrap();
        assert_eq!(t.subnet_name(1), None);
        let t = applied(
            &t,
            &[edit(Op::Delete, Kind::Subnets, Some("10.0.0.0/8"), None)],
        )
        .unwrap();
        assert_eq!(t.subnets.len(), 3);
        // Its child now has no parent; the /17 is still inside the /16.
        let chain: Vec<String> = t
            .matching_subnets(addr)
            .map(|i| t.subnets[i as usize].net.to_string())
            .collect();
        assert_eq!(chain, ["10.1.128.0/17", "10.1.0.0/16"]);
        let e = applied(
            &t,
            &[edit(
                Op::Create,
                Kind::Subnets,
                None,
                Some(json!({"cidr": "10.1.7.7/16", "region": "r1"})),
            )],
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::Exists);
        assert!(e.message.contains("10.1.0.0/16"), "{}", e.message);
    }

    #[test]
    fn names_are_unique_within_a_kind() {
        let t = topology();
        let t = applied(
            &t,
            &[edit(
                Op::Update,
                Kind::Regions,
                Some("r1"),
                Some(json!({"name": "Moscow"})),
            )],
        )
        .unwrap();
        let taken = [
            edit(
                Op::Update,
                Kind::Regions,
                Some("r2"),
                Some(json!({"name": "Moscow"})),
            ),
            edit(
                Op::Create,
                Kind::Subnets,
                None,
                Some(json!({"cidr": "10.2.0.0/16", "region": "r1", "name": "ten-one"})),
            ),
            edit(
                Op::Update,
                Kind::Channels,
                Some("ch2"),
                Some(json!({"name": "One"})),
            ),
        ];
        let t = applied(
            &t,
            &[edit(
                Op::Update,
                Kind::Channels,
                Some("ch1"),
                Some(json!({"name": "One"})),
            )],
        )
        .unwrap();
        for e in taken {
            let err = applied(&t, &[e]).unwrap_err();
            assert_eq!(err.reason, Reason::Exists, "{}", err.message);
            assert!(err.message.contains(": field `name`: "), "{}", err.message);
        }
        // Keeping its own name is no conflict; another kind's name is free.
        applied(
            &t,
            &[
                edit(
                    Op::Update,
                    Kind::Subnets,
                    Some("10.1.0.0/16"),
                    Some(json!({"region": "r3"})),
                ),
                edit(
                    Op::Update,
                    Kind::Regions,
                    Some("r2"),
                    Some(json!({"name": "One"})),
                ),
            ],
        )
        .unwrap();
    }

    /// A deterministic pseudo-random sequence.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn random_program_changes_match_a_whole_load_of_their_document() {
        let mut next = xorshift(0x51_7cc1);
        let mut t = topology();
        // Enough to fill several chunks of the list.
        let created: Vec<Edit> = (0..2500)
            .map(|i| {
                edit(
                    Op::Create,
                    Kind::Programs,
                    None,
                    Some(json!({"epg_id": format!("g{i}"), "channel": "ch2"})),
                )
            })
            .collect();
        t = apply(&t, &created, t.version + 1, t.revision() + 1)
            .unwrap()
            .topology;
        for round in 0..400 {
            let r = next();
            let key = format!("g{}", (r >> 8) % 3000);
            let exists = t.program(&key).is_some();
            let change = match (r % 3, exists) {
                (0, true) => edit(Op::Delete, Kind::Programs, Some(&key), None),
                (1, true) => edit(
                    Op::Update,
                    Kind::Programs,
                    Some(&key),
                    Some(json!({"channel": if r & 1 << 20 == 0 { "ch1" } else { "ch2" }})),
                ),
                (_, true) => continue,
                (_, false) => edit(
                    Op::Create,
                    Kind::Programs,
                    None,
                    Some(json!({"epg_id": key, "channel": "ch1"})),
                ),
            };
            t = apply(&t, &[change], t.version + 1, t.revision() + 1)
                .unwrap()
                .topology;
            if round % 50 == 49 {
                let rebuilt = super::super::build(&t.document(), 0).unwrap();
                assert_eq!(rebuilt.source(), t.source(), "round {round}");
                assert_eq!(rebuilt.programs.len(), t.programs.len());
                for i in 0..3000 {
                    let key = format!("g{i}");
                    let found = |t: &Topology| t.program(&key).map(|(_, p)| p.channel.clone());
                    assert_eq!(found(&t), found(&rebuilt), "round {round}: {key}");
                }
            }
        }
    }

    #[test]
    fn random_subnet_changes_match_a_whole_load_of_their_document() {
        let mut next = xorshift(0x2545_f491);
        let mut t = topology();
        let regions = ["r1", "r2", "r3"];
        for round in 0..600 {
            let r = next();
            let existing: Vec<String> = t.subnets.iter().map(|(_, s)| s.net.to_string()).collect();
            let change = if r.is_multiple_of(4) && !existing.is_empty() {
                let key = &existing[(r >> 8) as usize % existing.len()];
                edit(Op::Delete, Kind::Subnets, Some(key), None)
            } else if r % 4 == 1 && !existing.is_empty() {
                let key = &existing[(r >> 8) as usize % existing.len()];
                let region = regions[(r >> 40) as usize % 3];
                edit(
                    Op::Update,
                    Kind::Subnets,
                    Some(key),
                    Some(json!({"region": region})),
                )
            } else {
                // Nested in 10.0.0.0/8, many inside one another.
                let len = 8 + (r % 17) as u8;
                let addr = 0x0a00_0000u32 | ((r >> 16) as u32 & 0x000f_ffff) << 4;
                let net = ipnet::Ipv4Net::new(addr.into(), len).unwrap().trunc();
                let region = regions[(r >> 40) as usize % 3];
                edit(
                    Op::Create,
                    Kind::Subnets,
                    None,
                    Some(json!({"cidr": net.to_string(), "region": region})),
                )
            };
            t = match apply(&t, &[change], t.version + 1, t.revision() + 1) {
                Ok(e) => e.topology,
                Err(e) => {
                    assert_eq!(e.reason, Reason::Exists, "{}", e.message);
                    continue;
                }
            };
            if round % 25 == 24 {
                let rebuilt = super::super::build(&t.document(), 0).unwrap();
                assert_eq!(rebuilt.source(), t.source(), "round {round}");
                assert_eq!(rebuilt.subnets.len(), t.subnets.len());
                for _ in 0..300 {
                    let a = std::net::IpAddr::from(std::net::Ipv4Addr::from(
                        0x0a00_0000u32 | (next() as u32 & 0x00ff_ffff),
                    ));
                    let chain = |t: &Topology| -> Vec<(IpNet, u32)> {
                        t.matching_subnets(a)
                            .map(|i| (t.subnets[i as usize].net, t.subnets[i as usize].region))
                            .collect()
                    };
                    assert_eq!(chain(&t), chain(&rebuilt), "round {round}: {a}");
                }
            }
        }
    }

    #[test]
    fn deleting_what_is_still_named_is_refused_naming_what_names_it() {
        let t = topology();
        let cases = [
            (Kind::Regions, "r2", "still has 1 subnet"),
            (Kind::Regions, "r1", "is the default region"),
            (Kind::ServerGroups, "g1", "regions \"r1\", \"r2\""),
            (Kind::Servers, "e1", "member of server group \"g1\""),
            (Kind::Servers, "d1", "still holds 1 record"),
            (
                Kind::Channels,
                "ch1",
                "still has 2 streams and 1 program and server group \"g1\" naming it",
            ),
            (Kind::Programs, "p1", "still has 1 record"),
        ];
        for (kind, key, expected) in cases {
            let e = applied(&t, &[edit(Op::Delete, kind, Some(key), None)]).unwrap_err();
            assert_eq!(e.reason, Reason::InUse, "{kind:?} {key}");
            assert!(e.message.contains(expected), "{}", e.message);
        }
        // A region no subnet is in goes, and the subnets after it follow.
        let t = applied(
            &t,
            &[
                edit(Op::Delete, Kind::Subnets, Some("2001:db8::/32"), None),
                edit(Op::Delete, Kind::Regions, Some("r3"), None),
            ],
        )
        .unwrap();
        assert_eq!(t.regions.len(), 2);
        // In one batch: the records, then the program.
        let t = applied(
            &t,
            &[
                edit(Op::Delete, Kind::Records, Some("p1/d1/hls/none"), None),
                edit(Op::Delete, Kind::Programs, Some("p1"), None),
                edit(Op::Delete, Kind::Servers, Some("d1"), None),
            ],
        )
        .unwrap();
        assert!(t.program("p1").is_none());
        assert!(t.server_index("d1").is_none());
    }

    #[test]
    fn every_kind_is_created_replaced_and_updated() {
        let t = topology();
        let t = applied(
            &t,
            &[
                edit(
                    Op::Create,
                    Kind::Servers,
                    None,
                    Some(json!({"id": "e3", "kind": "edge", "host": "e3.test", "port": 443})),
                ),
                edit(
                    Op::Create,
                    Kind::ServerGroups,
                    None,
                    Some(json!({"id": "g2", "servers": ["e3"]})),
                ),
                edit(
                    Op::Update,
                    Kind::Regions,
                    Some("r3"),
                    Some(json!({"server_groups": ["g2"], "name": "Three"})),
                ),
                edit(
                    Op::Create,
                    Kind::Channels,
                    None,
                    Some(json!({"epg_id": "ch3", "name": "Three"})),
                ),
                edit(
                    Op::Create,
                    Kind::Streams,
                    None,
                    Some(json!({"channel": "ch3", "protocol": "mpd", "encryption": "cenc", "path": "live/ch3.mpd"})),
                ),
                edit(
                    Op::Create,
                    Kind::Programs,
                    None,
                    Some(json!({"epg_id": "p2", "channel": "ch3", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"})),
                ),
                edit(
                    Op::Create,
                    Kind::Records,
                    None,
                    Some(json!({"program": "p2", "server": "d1", "protocol": "mpd", "encryption": "cenc", "path": "p2.mpd", "status": "running"})),
                ),
                edit(
                    Op::Update,
                    Kind::Records,
                    Some("p2/d1/mpd/cenc"),
                    Some(json!({"status": "completed"})),
                ),
                edit(
                    Op::Replace,
                    Kind::Streams,
                    Some("ch1/hls/none/2"),
                    Some(json!({"path": "live/ch1-c.m3u8"})),
                ),
            ],
        )
        .unwrap();
        assert_eq!(t.regions[2].members.len(), 1);
        let (_, p) = t.program("p2").unwrap();
        assert!(p.record(Protocol::Mpd, Encryption::Widevine).is_some());
        assert_eq!(
            stream_keys(&t),
            ["ch1/hls/none", "ch1/hls/none/2", "ch3/mpd/cenc"]
        );
        // The replaced stream lost `active: false` (a replace is whole).
        let shown = t.entity(Kind::Streams, "ch1/hls/none/2").unwrap();
        assert_eq!(shown.value["active"], json!(true));
        assert_eq!(shown.revision, 11);
    }

    #[test]
    fn refusals_name_the_field_and_value_and_change_nothing() {
        let t = topology();
        let cases = [
            (
                edit(
                    Op::Create,
                    Kind::Servers,
                    None,
                    Some(json!({"id": "x", "kind": "edge", "host": "x.test", "port": 70000})),
                ),
                "field `port`: 70000 is out of range",
            ),
            (
                edit(
                    Op::Update,
                    Kind::Servers,
                    Some("d1"),
                    Some(json!({"kind": "edge"})),
                ),
                "holds 1 record",
            ),
            (
                edit(
                    Op::Update,
                    Kind::Servers,
                    Some("e1"),
                    Some(json!({"id": "e9"})),
                ),
                "the id cannot change",
            ),
            (
                edit(
                    Op::Create,
                    Kind::Subnets,
                    None,
                    Some(json!({"cidr": "10.300.0.0/16", "region": "r1"})),
                ),
                "field `cidr`: \"10.300.0.0/16\" is not an IPv4 or IPv6 CIDR",
            ),
            (
                edit(
                    Op::Create,
                    Kind::Subnets,
                    None,
                    Some(json!({"cidr": "10.2.0.0/16", "region": "nowhere"})),
                ),
                "field `region`: \"nowhere\" is not the id of any region",
            ),
            (
                edit(
                    Op::Create,
                    Kind::Records,
                    None,
                    Some(
                        json!({"program": "p1", "server": "e1", "protocol": "mpd", "encryption": "none", "path": "x", "status": "completed"}),
                    ),
                ),
                "field `server`: \"e1\" is an edge server",
            ),
            (
                edit(
                    Op::Update,
                    Kind::Records,
                    Some("p1/d1/hls/none"),
                    Some(json!({"status": "done"})),
                ),
                "field `status`: unknown variant `done`",
            ),
            (
                edit(
                    Op::Create,
                    Kind::Channels,
                    None,
                    Some(json!({"epg_id": "a/b"})),
                ),
                "must be usable as one URL path segment",
            ),
            (
                edit(
                    Op::Update,
                    Kind::Programs,
                    Some("p1"),
                    Some(json!({"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T09:00:00Z"})),
                ),
                "field `end`",
            ),
            (
                edit(Op::Delete, Kind::Regions, Some("nope"), None),
                "no region \"nope\"",
            ),
        ];
        for (e, expected) in cases {
            // A good edit first: the batch is refused whole.
            let batch = [
                edit(
                    Op::Update,
                    Kind::Channels,
                    Some("ch2"),
                    Some(json!({"name": "Two"})),
                ),
                e,
            ];
            let err = match apply(&t, &batch, 2, 11) {
                Ok(_) => panic!("accepted: {:?}", batch[1]),
                Err(err) => err,
            };
            assert!(
                err.message.contains(expected) && err.message.starts_with("change 2 of 2"),
                "{}",
                err.message
            );
        }
        assert_eq!(
            t.entity(Kind::Channels, "ch2").unwrap().value.get("name"),
            None
        );
    }

    #[test]
    fn a_change_based_on_another_revision_is_a_conflict() {
        let t = topology();
        let mut e = edit(
            Op::Update,
            Kind::Servers,
            Some("e1"),
            Some(json!({"weight": 5})),
        );
        e.if_match = Some(10);
        let t = applied(&t, std::slice::from_ref(&e)).unwrap();
        assert_eq!(t.revision_of(Kind::Servers, "e1"), 11);
        let err = applied(&t, &[e]).unwrap_err();
        assert_eq!(err.reason, Reason::Conflict);
        assert_eq!(err.current, Some(11));
    }
}
