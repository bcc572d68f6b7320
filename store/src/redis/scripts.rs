//! The Lua scripts that make room operations atomic. Each touches the keys
//! of one room (one hash tag, so one cluster slot) or one global structure,
//! never both: what spans slots is done by separate commands in Rust.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("scripts/", $file))));
    };
}

script!(CREATE, "create.lua");
script!(JOIN, "join.lua");
script!(LEAVE, "leave.lua");
script!(DESTROY, "destroy.lua");
script!(SWEEP_ROOM, "sweep_room.lua");
script!(HEARTBEAT, "heartbeat.lua");
script!(ONLINE, "online.lua");
script!(LIVE_NODES, "live_nodes.lua");
script!(DEAD_NODES, "dead_nodes.lua");
script!(FORGET_NODE, "forget_node.lua");
// Self-healing after Redis lost a relay's state (relay::heal).
script!(NODE_EPOCH, "node_epoch.lua");
script!(RESTORE, "restore.lua");
script!(LIST_ROOM, "list_room.lua");
script!(LIST_DAILY_TOPIC, "list_daily_topic.lua");
script!(UNLIST, "unlist.lua");
script!(MARK_LISTED, "mark_listed.lua");
script!(COUNT_ACTIVITY, "count_activity.lua");
script!(HIT, "hit.lua");
script!(SET_SECRETS, "set_secrets.lua");
// Abuse limits (budgets and password guesses), kept apart from the room
// scripts above.
script!(TAKE, "take.lua");
script!(GIVE_BACK, "give_back.lua");
script!(ROOM_GUESS, "room_guess.lua");
