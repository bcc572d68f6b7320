//! Abuse limits on Redis: fixed-window budgets that refuse without counting
//! ([`scripts::TAKE`]), refunds, and password guesses counted on a room
//! atomically with its existence ([`scripts::ROOM_GUESS`]). Each script
//! touches one slot: a budget's own key, or one room's keys.

use std::time::Duration;

use super::store::{int, items, millis, text};
use super::{keys, scripts, RedisEngine};
use crate::room::{RoomGuess, StoreError};

fn corrupt(what: &str) -> StoreError {
    StoreError(format!("unexpected reply from redis: {what}"))
}

impl RedisEngine {
    pub(super) async fn take_budget(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let mut take = scripts::TAKE.key(keys::counter(key));
        take.arg(limit).arg(millis(window));
        Ok(int(&self.script(&take).await?) == Some(1))
    }

    pub(super) async fn give_back_budget(&self, key: &str) -> Result<(), StoreError> {
        let give_back = scripts::GIVE_BACK.key(keys::counter(key));
        self.script(&give_back).await.map(drop)
    }

    pub(super) async fn reserve_room_guess(
        &self,
        room_id: &str,
        client: &str,
        client_limit: u64,
        window: Duration,
    ) -> Result<RoomGuess, StoreError> {
        let mut guess = scripts::ROOM_GUESS.key(keys::room(room_id));
        guess
            .key(keys::room_guesses(room_id))
            .key(keys::room_client_guesses(room_id, client))
            .arg(client_limit)
            .arg(millis(window));
        let reply = items(self.script(&guess).await?).ok_or_else(|| corrupt("guess"))?;
        match reply.first().and_then(int) {
            Some(0) => Ok(RoomGuess::NotFound),
            Some(1) => Ok(RoomGuess::Open),
            Some(2) => Ok(RoomGuess::Refused),
            Some(3) => {
                let room_guesses = reply
                    .get(1)
                    .and_then(int)
                    .ok_or_else(|| corrupt("guess count"))?;
                let password_hash = reply
                    .get(2)
                    .and_then(text)
                    .ok_or_else(|| corrupt("guess password"))?
                    .to_owned();
                Ok(RoomGuess::Reserved {
                    room_guesses: room_guesses.max(0) as u64,
                    password_hash,
                })
            }
            _ => Err(corrupt("guess status")),
        }
    }

    pub(super) async fn release_room_guess(
        &self,
        room_id: &str,
        client: &str,
    ) -> Result<(), StoreError> {
        let mut give_back = scripts::GIVE_BACK.key(keys::room_guesses(room_id));
        give_back.key(keys::room_client_guesses(room_id, client));
        self.script(&give_back).await.map(drop)
    }

    pub(super) async fn room_member_count(&self, room_id: &str) -> Result<Option<u32>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS")
            .arg(keys::room(room_id))
            .cmd("HLEN")
            .arg(keys::members(room_id));
        let (exists, members): (i64, i64) = self
            .commands
            .pipeline(self.config.command_timeout, &pipe)
            .await?;
        Ok((exists == 1).then(|| members.clamp(0, u32::MAX as i64) as u32))
    }
}
