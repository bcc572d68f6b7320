//! Chat messages and reactions (PROTOCOL.md §2.3, §2.7, §6 reactions, §8 chat rate limit).

use rmpv::Value;

use crate::map;
use crate::support::msg::{assert_keys, now_ms};
use crate::support::room::{create_room, expect_message, unique};
use crate::support::{assert_room_chats, open_room, say, t, Client, Env, Member, Opts, ValueExt};

const IV_ERROR: &str = "iv and ciphertext must be non-empty strings";

#[tokio::test]
async fn message_is_relayed_to_every_other_member() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let before = now_ms();
    a.send(
        t::SEND_MESSAGE,
        map! {"iv" => "aXY", "ciphertext" => "Y2lwaGVy"},
    )
    .await;
    for m in [&mut b, &mut c] {
        let data = m.expect(t::RELAY_MESSAGE).await;
        assert_keys(&data, &["senderId", "senderName", "iv", "ciphertext", "t"]);
        assert_eq!(data.str("senderId"), a.id);
        assert_eq!(data.str("senderName"), "m0");
        assert_eq!(data.str("iv"), "aXY");
        assert_eq!(data.str("ciphertext"), "Y2lwaGVy");
        let at = data.int("t");
        assert!(
            (before..=now_ms()).contains(&at),
            "t {at} is not the server's unix ms"
        );
    }
}

#[tokio::test]
async fn sender_gets_no_echo_and_no_ack() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    say(&mut a, &mut [&mut b]).await;
    // The next thing a sees is b's message: nothing came back for its own.
    say(&mut b, &mut [&mut a]).await;
    a.sync().await;
}

#[tokio::test]
async fn messages_arrive_in_the_order_sent() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let cts: Vec<String> = (0..8).map(|_| unique("ct")).collect();
    for ct in &cts {
        a.send(
            t::SEND_MESSAGE,
            map! {"iv" => "iv", "ciphertext" => ct.as_str()},
        )
        .await;
    }
    for m in [&mut b, &mut c] {
        for ct in &cts {
            expect_message(m, &a, "iv", ct).await;
        }
    }
}

#[tokio::test]
async fn all_members_see_interleaved_messages_in_the_same_order() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    // a and b send concurrently-ish; c (who sends nothing) defines the room order, and every
    // receiver's view must agree with it where both saw the messages.
    for i in 0..5 {
        a.send(
            t::SEND_MESSAGE,
            map! {"iv" => "a", "ciphertext" => format!("a{i}")},
        )
        .await;
        b.send(
            t::SEND_MESSAGE,
            map! {"iv" => "b", "ciphertext" => format!("b{i}")},
        )
        .await;
    }
    let mut order_c = Vec::new();
    for _ in 0..10 {
        order_c.push(
            c.expect(t::RELAY_MESSAGE)
                .await
                .str("ciphertext")
                .to_string(),
        );
    }
    let mut seen_a = Vec::new();
    for _ in 0..5 {
        seen_a.push(
            a.expect(t::RELAY_MESSAGE)
                .await
                .str("ciphertext")
                .to_string(),
        );
    }
    let mut seen_b = Vec::new();
    for _ in 0..5 {
        seen_b.push(
            b.expect(t::RELAY_MESSAGE)
                .await
                .str("ciphertext")
                .to_string(),
        );
    }
    let only = |prefix: &str| -> Vec<String> {
        order_c
            .iter()
            .filter(|c| c.starts_with(prefix))
            .cloned()
            .collect()
    };
    assert_eq!(seen_a, only("b"));
    assert_eq!(seen_b, only("a"));
}

#[tokio::test]
async fn message_outside_a_room_gets_e003() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    c.expect_error("E003", "not in a room").await;
    // Not in a room is checked before the data.
    c.send(t::SEND_MESSAGE, Value::Nil).await;
    c.expect_error("E003", "not in a room").await;
}

#[tokio::test]
async fn message_with_non_map_data_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for data in [
        Value::Nil,
        Value::from("text"),
        Value::Array(vec![Value::from("i")]),
    ] {
        a.send(t::SEND_MESSAGE, data).await;
        a.expect_error("E005", "invalid message data").await;
    }
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn message_with_missing_or_empty_iv_or_ciphertext_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for data in [
        map! {"ciphertext" => "c"},
        map! {"iv" => "i"},
        map! {"iv" => "", "ciphertext" => "c"},
        map! {"iv" => "i", "ciphertext" => ""},
        map! {},
    ] {
        a.send(t::SEND_MESSAGE, data).await;
        a.expect_error("E005", IV_ERROR).await;
    }
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn message_with_bin_iv_or_ciphertext_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(
        t::SEND_MESSAGE,
        map! {"iv" => b"iv".to_vec(), "ciphertext" => "c"},
    )
    .await;
    a.expect_error("E005", IV_ERROR).await;
    a.send(
        t::SEND_MESSAGE,
        map! {"iv" => "i", "ciphertext" => b"c".to_vec()},
    )
    .await;
    a.expect_error("E005", IV_ERROR).await;
    a.send(t::SEND_MESSAGE, map! {"iv" => 5, "ciphertext" => "c"})
        .await;
    a.expect_error("E005", IV_ERROR).await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn extra_fields_in_a_message_are_ignored() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(
        t::SEND_MESSAGE,
        map! {"iv" => "i", "ciphertext" => "c", "senderId" => "forged", "t" => 1},
    )
    .await;
    let data = b.expect(t::RELAY_MESSAGE).await;
    assert_eq!(data.str("senderId"), a.id);
    assert_ne!(data.int("t"), 1);
}

/// Sends `n` messages from `from` and checks `to` receives each.
async fn send_n(from: &mut Member, to: &mut Member, n: usize) {
    for _ in 0..n {
        say(from, &mut [to]).await;
    }
}

#[tokio::test]
async fn eleventh_message_in_ten_seconds_gets_e004() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    send_n(&mut a, &mut b, 10).await;
    a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "over"})
        .await;
    a.expect_error("E004", "rate limited, please slow down")
        .await;
    // The rejected message was not relayed: b's next frame is a's barrier... b syncs itself.
    b.sync().await;
}

#[tokio::test]
async fn rate_limit_is_per_connection() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    send_n(&mut a, &mut b, 10).await;
    a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "over"})
        .await;
    a.expect_error("E004", "rate limited, please slow down")
        .await;
    // b has its own budget, and a still receives.
    send_n(&mut b, &mut a, 10).await;
}

#[tokio::test]
async fn rejected_messages_do_not_count_toward_the_rate_limit() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for _ in 0..5 {
        a.send(t::SEND_MESSAGE, map! {"iv" => "", "ciphertext" => "c"})
            .await;
        a.expect_error("E005", IV_ERROR).await;
    }
    send_n(&mut a, &mut b, 10).await;
    a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "over"})
        .await;
    a.expect_error("E004", "rate limited, please slow down")
        .await;
    // Rate-limited attempts are not recorded either.
    a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "over"})
        .await;
    a.expect_error("E004", "rate limited, please slow down")
        .await;
}

#[tokio::test]
async fn rate_limit_follows_its_flags_and_the_window_slides() {
    let env = Env::start_with(
        Opts::new()
            .flag("--chat-rate-limit", 3)
            .flag("--chat-rate-window-ms", 1500),
    )
    .await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    send_n(&mut a, &mut b, 3).await;
    let last_accepted = tokio::time::Instant::now();
    a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "over"})
        .await;
    a.expect_error("E004", "rate limited, please slow down")
        .await;
    // Once the window has passed since the accepted messages, sending works again.
    tokio::time::sleep_until(last_accepted + std::time::Duration::from_millis(1800)).await;
    send_n(&mut a, &mut b, 3).await;
}

#[tokio::test]
async fn rate_limited_member_does_not_disturb_the_room() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    for _ in 0..10 {
        say(&mut a, &mut [&mut b, &mut c]).await;
    }
    for _ in 0..5 {
        a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "over"})
            .await;
        a.expect_error("E004", "rate limited, please slow down")
            .await;
    }
    say(&mut b, &mut [&mut a, &mut c]).await;
    say(&mut c, &mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn reaction_is_relayed_to_others_without_echo() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let before = now_ms();
    b.send(
        t::SEND_REACTION,
        map! {"iv" => "rIV", "ciphertext" => "rCT"},
    )
    .await;
    for m in [&mut a, &mut c] {
        let data = m.expect(t::RELAY_REACTION).await;
        assert_keys(&data, &["senderId", "senderName", "iv", "ciphertext", "t"]);
        assert_eq!(data.str("senderId"), b.id);
        assert_eq!(data.str("senderName"), "m1");
        assert_eq!(data.str("iv"), "rIV");
        assert_eq!(data.str("ciphertext"), "rCT");
        assert!((before..=now_ms()).contains(&data.int("t")));
    }
    say(&mut a, &mut [&mut b, &mut c]).await;
}

#[tokio::test]
async fn reactions_are_not_rate_limited() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for i in 0..30 {
        a.send(
            t::SEND_REACTION,
            map! {"iv" => "i", "ciphertext" => format!("r{i}")},
        )
        .await;
    }
    for i in 0..30 {
        let data = b.expect(t::RELAY_REACTION).await;
        assert_eq!(data.str("ciphertext"), format!("r{i}"));
    }
    // Reactions did not use up the chat budget either.
    send_n(&mut a, &mut b, 10).await;
}

#[tokio::test]
async fn reaction_outside_a_room_gets_e003() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::SEND_REACTION, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    c.expect_error("E003", "not in a room").await;
}

#[tokio::test]
async fn reaction_with_non_map_data_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(t::SEND_REACTION, Value::Nil).await;
    a.expect_error("E005", "invalid reaction data").await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn reaction_with_empty_or_bin_fields_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for data in [
        map! {"iv" => "", "ciphertext" => "c"},
        map! {"iv" => "i"},
        map! {"iv" => b"i".to_vec(), "ciphertext" => "c"},
        map! {"iv" => "i", "ciphertext" => b"c".to_vec()},
    ] {
        a.send(t::SEND_REACTION, data).await;
        // PROTOCOL.md §2.7: E005 (with SendMessage's text); clients act on the code.
        a.expect_error_code("E005").await;
    }
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn lone_member_can_send_into_an_empty_audience() {
    let env = Env::start().await;
    let mut a = create_room(&env, 0, "alone").await;
    a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    a.send(t::SEND_REACTION, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    a.sync().await;
}

#[tokio::test]
async fn messages_stay_in_their_room() {
    let env = Env::start().await;
    let [mut a1, mut b1] = open_room::<2>(&env).await;
    let [mut a2, mut b2] = open_room::<2>(&env).await;
    say(&mut a1, &mut [&mut b1]).await;
    a1.send(t::SEND_REACTION, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    b1.expect(t::RELAY_REACTION).await;
    a1.send(t::TYPING, map! {"typing" => true}).await;
    b1.expect(t::MEMBER_TYPING).await;
    // The other room saw none of it.
    a2.sync().await;
    b2.sync().await;
    say(&mut a2, &mut [&mut b2]).await;
    b1.sync().await;
}

#[tokio::test]
async fn rate_limit_window_is_sliding_not_fixed() {
    use std::time::Duration;
    use tokio::time::{sleep_until, Instant};
    const WINDOW: Duration = Duration::from_millis(1500);
    let env = Env::start_with(
        Opts::new()
            .flag("--chat-rate-limit", 3)
            .flag("--chat-rate-window-ms", WINDOW.as_millis() as u64),
    )
    .await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    // The relay counts a message when it handles it: after the test sent it, before the other
    // member received it. The relay and the test read the same monotonic clock, so each
    // message's count time is bracketed by the test's own readings.
    send_n(&mut a, &mut b, 2).await;
    let first_two_counted_by = Instant::now();
    sleep_until(first_two_counted_by + WINDOW / 2).await;
    let third_counted_from = Instant::now();
    send_n(&mut a, &mut b, 1).await;
    // From here on the first two have left the window for certain, the third has not (until
    // third_counted_from + WINDOW at the earliest): two more fit, a third does not (a fixed
    // window, reset by now, would allow three).
    sleep_until(first_two_counted_by + WINDOW).await;
    send_n(&mut a, &mut b, 2).await;
    a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "over"})
        .await;
    a.expect_error("E004", "rate limited, please slow down")
        .await;
    assert!(
        Instant::now() < third_counted_from + WINDOW,
        "the third message may have left the window before the last was refused: the machine \
         was too slow for this test to be meaningful ({:?} after the third was sent)",
        third_counted_from.elapsed()
    );
}
