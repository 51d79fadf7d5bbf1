//! End-to-end tests: the real `edgeward` binary, real `.wasm` policies built
//! from `policies/` and `tests/policies/`, real HTTP over loopback.

mod admin;
mod authoring;
mod browser;
mod connections;
mod console;
mod contract;
mod crash;
mod ctl;
mod dvr;
mod entities;
mod epg;
mod epg_fetch;
mod etcd;
mod explain;
mod fake_dvr;
mod geo;
mod harness;
mod health;
mod hlsjs;
mod http1;
mod javascript;
mod k6;
mod ops;
mod policies;
mod routing;
mod sandbox;
mod shared_health;
mod signing;
mod steering;
mod swap;
mod tls;
mod topology;
mod users;
