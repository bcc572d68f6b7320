//! The gateway: everything about rooms that is not moving messages.
//!
//! - [`rooms`]: creating rooms (NanoID ids, argon2id of the client's
//!   password hash) and checking passwords, with wrong-guess limits held in
//!   the store so they hold across replicas;
//! - [`password`]: argon2id on a bounded blocking pool, so a burst of
//!   guesses queues (or is refused) instead of stalling anything else, with
//!   creations in a line of their own;
//! - `refund`: giving back a counted unit whose work did not happen;
//! - [`listing`]: the public directory's validation rules (PROTOCOL.md §9);
//! - [`ticket`]: short-lived signed single-use join tickets;
//! - [`daily`]: the daily topic, one public room per UTC day, made once
//!   across all replicas;
//! - [`hub`]: the public directory's query, filter, sort and paging;
//! - [`problem`]: refusals as RFC 9457 problem JSON, the error shape of
//!   every HTTP API;
//!
//! Over these, the HTTP layers: [`server`] is the transport (on the shared
//! [`edge::http`]: JSON bodies, client address, request spans); the APIs
//! each live in a module of their own and use it, never one another's:
//!
//! - [`http`]: the public listener's router (one route parse for dispatch
//!   and metric labels) over [`v1`] (the public room API), [`directory`]
//!   (`/api/hub`) and [`web`] (the web client);
//! - [`internal`]: the authenticated HTTP API relays call;
//! - [`admin`]: health, readiness and metrics on the admin port;
//! - [`remote`]: [`remote::RemoteGateway`], the relays' client of the
//!   internal API;
//! - [`trace_context`]: W3C trace context from relays into the internal API.
//!
//! Relays never run argon2: they call [`Gateway`] in process (the all-in-one
//! binary) or over HTTP (the cluster).

pub mod admin;
pub mod daily;
pub mod directory;
pub mod http;
pub mod hub;
pub mod internal;
pub mod listing;
pub mod metrics;
pub mod password;
pub mod problem;
mod refund;
pub mod remote;
pub mod rooms;
pub mod server;
pub mod ticket;
pub mod trace_context;
pub mod v1;
pub mod web;

pub use rooms::{
    CreateRoomRequest, CreatedRoom, Gateway, GatewayConfig, ListingRequest, NewRoomSummary,
    RoomInfo, RoomSecretRequest,
};

use std::net::IpAddr;

use async_trait::async_trait;
use protocol::Reject;

/// What a relay needs from the gateway. The all-in-one binary uses
/// [`Gateway`] in process; cluster relays use the gateway's internal HTTP API
/// through a client implementing the same trait.
#[async_trait]
pub trait Authority: Send + Sync + 'static {
    /// Creates an empty room (the relay joins the creator afterwards).
    async fn create_room(&self, request: CreateRoomRequest) -> Result<CreatedRoom, Reject>;
    /// Checks a join password (SHA-256 hex from the client) for `room_id`;
    /// refusals are E001, E004 (guess limit) or E006.
    async fn check_password(
        &self,
        room_id: &str,
        password: &str,
        client_ip: IpAddr,
    ) -> Result<(), Reject>;
    /// Redeems a single-use join ticket for `room_id` (extension); a bad,
    /// used or expired ticket is E006 "invalid ticket".
    async fn redeem_ticket(&self, room_id: &str, ticket: &str) -> Result<(), Reject>;
    /// Extension: the owner sets a new join password and/or hands the owner
    /// capability over; E008 without the owner secret.
    async fn set_room_secret(
        &self,
        room_id: &str,
        request: RoomSecretRequest,
    ) -> Result<(), Reject>;
}

#[async_trait]
impl Authority for Gateway {
    async fn create_room(&self, request: CreateRoomRequest) -> Result<CreatedRoom, Reject> {
        Gateway::create_room(self, request).await
    }

    async fn check_password(
        &self,
        room_id: &str,
        password: &str,
        client_ip: IpAddr,
    ) -> Result<(), Reject> {
        Gateway::check_password(self, room_id, password, client_ip).await
    }

    async fn redeem_ticket(&self, room_id: &str, ticket: &str) -> Result<(), Reject> {
        Gateway::redeem_ticket(self, room_id, ticket).await
    }

    async fn set_room_secret(
        &self,
        room_id: &str,
        request: RoomSecretRequest,
    ) -> Result<(), Reject> {
        Gateway::set_room_secret(self, room_id, request).await
    }
}
