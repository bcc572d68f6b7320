//! Typing indicators, plain and encrypted (PROTOCOL.md §2.5, and §12 for how it differs from the reference).

use rmpv::Value;

use crate::map;
use crate::support::msg::assert_keys;
use crate::support::{assert_room_chats, open_room, say, t, Client, Env, ValueExt};

#[tokio::test]
async fn plain_typing_is_relayed_to_others_as_member_typing() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    a.send(t::TYPING, map! {"typing" => true}).await;
    for m in [&mut b, &mut c] {
        let data = m.expect(t::MEMBER_TYPING).await;
        assert_keys(&data, &["id", "typing"]);
        assert_eq!(data.str("id"), a.id);
        assert!(data.boolean("typing"));
    }
    a.send(t::TYPING, map! {"typing" => false}).await;
    for m in [&mut b, &mut c] {
        let data = m.expect(t::MEMBER_TYPING).await;
        assert!(!data.boolean("typing"));
    }
    // No echo to the typist.
    say(&mut b, &mut [&mut a, &mut c]).await;
}

#[tokio::test]
async fn encrypted_typing_carries_iv_and_ciphertext() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(
        t::TYPING,
        map! {"iv" => "dGlJVg", "ciphertext" => "dHlwaW5n"},
    )
    .await;
    let data = b.expect(t::MEMBER_TYPING).await;
    assert_keys(&data, &["id", "typing", "iv", "ciphertext"]);
    assert_eq!(data.str("id"), a.id);
    assert!(
        !data.boolean("typing"),
        "typing defaults to false when missing"
    );
    assert_eq!(data.str("iv"), "dGlJVg");
    assert_eq!(data.str("ciphertext"), "dHlwaW5n");
}

#[tokio::test]
async fn encrypted_typing_keeps_a_plain_typing_flag_too() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(
        t::TYPING,
        map! {"typing" => true, "iv" => "x", "ciphertext" => "y"},
    )
    .await;
    let data = b.expect(t::MEMBER_TYPING).await;
    assert!(data.boolean("typing"));
    assert_eq!(data.str("iv"), "x");
    assert_eq!(data.str("ciphertext"), "y");
}

#[tokio::test]
async fn typing_flag_defaults_to_false_when_missing_or_not_a_bool() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for data in [map! {}, map! {"typing" => "yes"}, map! {"typing" => 1}] {
        a.send(t::TYPING, data).await;
        let got = b.expect(t::MEMBER_TYPING).await;
        assert!(!got.boolean("typing"), "{got}");
        assert!(!got.has("iv") && !got.has("ciphertext"), "{got}");
    }
}

#[tokio::test]
async fn typing_outside_a_room_gets_e003() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::TYPING, map! {"typing" => true}).await;
    c.expect_error("E003", "not in a room").await;
}

#[tokio::test]
async fn typing_with_non_map_data_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for data in [Value::Nil, Value::from(true), Value::Array(vec![])] {
        a.send(t::TYPING, data).await;
        a.expect_error("E005", "invalid typing data").await;
    }
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn typing_is_not_rate_limited() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for i in 0..30 {
        a.send(t::TYPING, map! {"typing" => i % 2 == 0}).await;
    }
    for i in 0..30 {
        assert_eq!(
            b.expect(t::MEMBER_TYPING).await.boolean("typing"),
            i % 2 == 0
        );
    }
    // Typing did not use the chat budget.
    for _ in 0..10 {
        say(&mut a, &mut [&mut b]).await;
    }
}

#[tokio::test]
async fn typing_iv_and_ciphertext_are_relayed_only_as_strings() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(
        t::TYPING,
        map! {"typing" => true, "iv" => vec![1u8, 2], "ciphertext" => vec![3u8]},
    )
    .await;
    let data = b.expect(t::MEMBER_TYPING).await;
    assert!(data.boolean("typing"));
    for key in ["iv", "ciphertext"] {
        if let Some(v) = data.get_opt(key) {
            assert!(v.is_str(), "{key} relayed as a non-string: {data}");
        }
    }
}
