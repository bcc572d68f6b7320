//! The server never logs ciphertext, IVs or passwords, even at trace level
//! (ARCHITECTURE.md invariant 1; PROTOCOL.md §3 "no plain-text password ever reaches a server").
//! In a cluster env every process's logs are checked: each relay's and the gateway's.

use crate::map;
use crate::support::msg::password_hash;
use crate::support::room::{create_room_with, expect_member_joined, join_room};
use crate::support::{t, Env, Opts, ValueExt};

/// The ways a secret byte string could show up in a log line.
fn forms(secret: &[u8]) -> Vec<String> {
    let mut out = vec![
        format!("{secret:?}"),
        secret.iter().map(|b| format!("{b:02x}")).collect(),
        secret
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        out.push(text.to_string());
    }
    out
}

#[tokio::test]
async fn trace_logs_contain_no_ciphertext_iv_or_password() {
    let mut env = Env::start_with(Opts::new().env("ARTHAS_LOG", "trace")).await;
    let plain_password = "Tr0ub4dor&3-horse-battery";
    let hash = password_hash(plain_password);
    let create =
        map! {"name" => "alice", "password" => hash.as_str(), "ephemeral" => 0, "expiry" => 0};
    let (mut a, _, _) = create_room_with(&env, 0, create).await;
    let (mut b, _) = join_room(&env, 1, &a.room_id, "bob", &hash).await;
    expect_member_joined(&mut [&mut a], &b).await;

    let msg_iv = "SECRETmsgIVqq1";
    let msg_ct = "SECRETmsgCIPHERTEXTqq2";
    a.send(
        t::SEND_MESSAGE,
        map! {"iv" => msg_iv, "ciphertext" => msg_ct},
    )
    .await;
    assert_eq!(b.expect(t::RELAY_MESSAGE).await.str("ciphertext"), msg_ct);

    let re_iv = "SECRETreactIVqq3";
    let re_ct = "SECRETreactCTqq4";
    b.send(
        t::SEND_REACTION,
        map! {"iv" => re_iv, "ciphertext" => re_ct},
    )
    .await;
    assert_eq!(a.expect(t::RELAY_REACTION).await.str("ciphertext"), re_ct);

    let ty_iv = "SECRETtypingIVqq5";
    let ty_ct = "SECRETtypingCTqq6";
    a.send(t::TYPING, map! {"iv" => ty_iv, "ciphertext" => ty_ct})
        .await;
    assert_eq!(b.expect(t::MEMBER_TYPING).await.str("ciphertext"), ty_ct);

    let meta_iv = "SECRETmetaIVqq7";
    let meta_ct = b"SECRETmetaCTqq8".to_vec();
    a.send(
        t::FILE_META,
        map! {"transferId" => "tr-log", "iv" => meta_iv, "ciphertext" => meta_ct.clone()},
    )
    .await;
    b.expect(t::RELAY_FILE_META).await;
    let chunk_iv = b"SECRETchunkIV9".to_vec();
    let chunk_data = b"SECRETchunkDATAqq10".to_vec();
    a.send(
        t::FILE_CHUNK,
        map! {"transferId" => "tr-log", "index" => 0, "iv" => chunk_iv.clone(), "data" => chunk_data.clone()},
    )
    .await;
    assert_eq!(
        b.expect(t::RELAY_FILE_CHUNK).await.bin("data"),
        chunk_data.as_slice()
    );

    // A wrong password attempt is not logged either.
    let wrong = password_hash("wrong-guess-horse");
    let mut c = crate::support::Client::connect(&env.ws_url(2)).await;
    c.send(
        t::JOIN_ROOM,
        map! {"roomId" => a.room_id.as_str(), "name" => "eve", "password" => wrong.as_str()},
    )
    .await;
    c.expect_error("E006", "wrong password").await;

    // Every process (the all-in-one server, or each relay and the gateway) is stopped so
    // that its logs are complete, and each one's logs are checked.
    for (label, status) in env.terminate_all().await {
        assert!(status.success(), "{label}: exit status {status:?}");
    }
    let mut secrets: Vec<(&str, Vec<String>)> = vec![
        ("password hash", vec![hash.clone()]),
        ("plain password", vec![plain_password.to_string()]),
        ("wrong guess", vec![wrong.clone()]),
        ("chat iv", vec![msg_iv.to_string()]),
        ("chat ciphertext", vec![msg_ct.to_string()]),
        ("reaction iv", vec![re_iv.to_string()]),
        ("reaction ciphertext", vec![re_ct.to_string()]),
        ("typing iv", vec![ty_iv.to_string()]),
        ("typing ciphertext", vec![ty_ct.to_string()]),
        ("file meta iv", vec![meta_iv.to_string()]),
    ];
    secrets.push(("file meta ciphertext", forms(&meta_ct)));
    secrets.push(("file chunk iv", forms(&chunk_iv)));
    secrets.push(("file chunk data", forms(&chunk_data)));
    for server in env.processes() {
        let logs = server.stderr();
        assert!(
            !logs.trim().is_empty(),
            "{}: ARTHAS_LOG=trace produced no logs at all",
            server.label()
        );
        for (what, forms) in &secrets {
            for form in forms {
                if let Some(pos) = logs.find(form.as_str()) {
                    let line_start = logs[..pos].rfind('\n').map_or(0, |i| i + 1);
                    let line_end = logs[pos..].find('\n').map_or(logs.len(), |i| pos + i);
                    panic!(
                        "{what} appears in the logs of {}: {}",
                        server.label(),
                        &logs[line_start..line_end]
                    );
                }
            }
        }
    }
}
