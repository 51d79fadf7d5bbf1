//! A snapshot's document: what `GET /topology` serves, a restart reloads
//! and another node builds the same snapshot from.
//!
//! A snapshot keeps its small collections as written and rebuilds the
//! subnets' part of the document from its own tables, so no second copy
//! of a million subnets is kept. The document is written straight from
//! the parts ([`DocumentView`]), in the same canonical MessagePack as
//! [`super::load::to_msgpack`] makes of the parsed document: a document
//! loaded whole and given back is byte for byte what it was.

use super::model::{ProgramDoc, RecordDoc, TopologyDoc};
use super::{Program, Topology};
use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};

impl Topology {
    /// The document as canonical MessagePack, encoded when first asked
    /// for (kept for the snapshot's life).
    pub fn source(&self) -> &Bytes {
        self.source.get_or_init(|| {
            Bytes::from(
                rmp_serde::to_vec_named(&self.view()).expect("a topology always serialises"),
            )
        })
    }

    /// Whether the MessagePack document is already at hand (no encoding).
    pub fn has_source(&self) -> bool {
        self.source.get().is_some()
    }

    /// The document, serialisable as [`TopologyDoc`] is.
    pub fn view(&self) -> DocumentView<'_> {
        DocumentView(self)
    }

    /// The document as a [`TopologyDoc`] (a copy of everything).
    pub fn document(&self) -> TopologyDoc {
        let bytes = rmp_serde::to_vec_named(&self.view()).expect("a topology always serialises");
        super::parse(&bytes).expect("a snapshot's document parses")
    }
}

/// A snapshot's document, serialised field for field as [`TopologyDoc`].
pub struct DocumentView<'a>(&'a Topology);

impl Serialize for DocumentView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let n = &t.network;
        let fields = 5
            + usize::from(n.schema.is_some())
            + usize::from(n.default_region.is_some())
            + usize::from(!t.programs.is_empty())
            + usize::from(!n.pathways.is_empty())
            + usize::from(n.steering.is_some());
        let mut doc = s.serialize_struct("TopologyDoc", fields)?;
        match &n.schema {
            Some(schema) => doc.serialize_field("schema", schema)?,
            None => doc.skip_field("schema")?,
        }
        match &n.default_region {
            Some(region) => doc.serialize_field("default_region", region)?,
            None => doc.skip_field("default_region")?,
        }
        doc.serialize_field("regions", &n.regions)?;
        doc.serialize_field("subnets", &SubnetsView(t))?;
        doc.serialize_field("server_groups", &n.server_groups)?;
        doc.serialize_field("servers", &n.servers)?;
        doc.serialize_field("channels", &*t.channel_docs)?;
        if t.programs.is_empty() {
            doc.skip_field("programs")?;
        } else {
            doc.serialize_field("programs", &ProgramsView(t))?;
        }
        if n.pathways.is_empty() {
            doc.skip_field("pathways")?;
        } else {
            doc.serialize_field("pathways", &n.pathways)?;
        }
        match &n.steering {
            Some(steering) => doc.serialize_field("steering", steering)?,
            None => doc.skip_field("steering")?,
        }
        doc.end()
    }
}

struct SubnetsView<'a>(&'a Topology);

impl Serialize for SubnetsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut seq = s.serialize_seq(Some(t.subnets.len()))?;
        for (i, subnet) in t.subnets.iter() {
            seq.serialize_element(&SubnetView {
                cidr: t.subnets.written(i),
                region: &t.regions[subnet.region as usize].id,
                name: t.subnets.name(i),
            })?;
        }
        seq.end()
    }
}

/// One subnet, as [`super::model::SubnetDoc`] serialises.
pub(super) struct SubnetView<'a> {
    pub cidr: ipnet::IpNet,
    pub region: &'a str,
    pub name: Option<&'a str>,
}

impl Serialize for SubnetView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut doc = s.serialize_struct("SubnetDoc", 2 + usize::from(self.name.is_some()))?;
        doc.serialize_field("cidr", &Display(&self.cidr))?;
        doc.serialize_field("region", self.region)?;
        match self.name {
            Some(name) => doc.serialize_field("name", name)?,
            None => doc.skip_field("name")?,
        }
        doc.end()
    }
}

/// A value serialised as its `Display` text.
struct Display<'a, T>(&'a T);

impl<T: std::fmt::Display> Serialize for Display<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

struct ProgramsView<'a>(&'a Topology);

impl Serialize for ProgramsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.programs.len()))?;
        for p in self.0.programs.iter() {
            seq.serialize_element(&p.to_doc())?;
        }
        seq.end()
    }
}

impl Program {
    /// The program as written.
    pub fn to_doc(&self) -> ProgramDoc {
        ProgramDoc {
            epg_id: self.epg_id.to_string(),
            channel: self.channel.to_string(),
            start: self.start,
            end: self.end,
            records: self
                .records
                .iter()
                .map(|r| RecordDoc {
                    server: r.server.to_string(),
                    protocol: r.protocol,
                    encryption: r.encryption,
                    path: r.written_path.to_string(),
                    status: r.status,
                    placement: r.placement.as_deref().map(Into::into),
                    error: r.error.as_deref().map(Into::into),
                })
                .collect(),
        }
    }
}

/// Writes a snapshot's document as pretty JSON, followed by a newline.
pub fn to_json(topology: &Topology) -> Vec<u8> {
    let mut out = Vec::with_capacity(topology.subnets.len() * 80 + 4096);
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"  "),
    );
    topology
        .view()
        .serialize(&mut ser)
        .expect("a topology always serialises");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_written_from_the_parts_is_the_document_loaded() {
        let mut doc = super::super::synthetic::generate(super::super::synthetic::Spec {
            v4_subnets: 300,
            v6_subnets: 40,
            regions: 7,
            seed: 3,
        });
        // A name, a CIDR with host bits, a schema: each given back as is.
        doc.schema = Some(1);
        doc.subnets[3].name = Some("three".into());
        doc.subnets[5].cidr = "192.0.2.77/24".into();
        let canonical = super::super::load::to_msgpack(&doc);
        let t = super::super::build(&doc, 1).unwrap();
        let fresh = rmp_serde::to_vec_named(&t.view()).unwrap();
        assert_eq!(fresh, canonical);
        assert_eq!(t.document(), doc);
        let json: serde_json::Value = serde_json::from_slice(&to_json(&t)).unwrap();
        assert_eq!(json, serde_json::to_value(&doc).unwrap());
    }
}
