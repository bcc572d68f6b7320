//! Real network faults between hosts: relay 2 runs in a network namespace of its own (`ip
//! netns`, a veth pair to the test's namespace), reaching Redis through a TCP proxy on the
//! host side of the veth and its clients over the veth. nftables rules inside relay 2's
//! namespace drop packets (a partition: every packet; loss: `numgen random`), the proxy delays
//! Redis's replies (this kernel has no `netem`). Redis, the gateway and relays 0 and 1 stay
//! on the test's loopback. Each scenario asserts what ARCHITECTURE.md "Failure behaviour"
//! promises and prints its figures (`FIGURE ...`, run with `-- --nocapture`).
//!
//! Needs root (namespaces, veth, nftables) and the `ip` and `nft` commands; otherwise every
//! test prints `SKIPPED` and passes. Run: `cargo test --all-features --test netns --
//! --nocapture --test-threads=2` (about 60 s). Each test runs on a multi-threaded runtime: the
//! delaying proxy is a task of the test's runtime and must keep forwarding while the test
//! blocks on a command (`ip`, `nft`).

#[path = "support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use support::client::Event;
use support::proxy::Proxy;
use support::room::{expect_member_joined, open_room, say};
use support::server::Redis;
use support::{t, Env, Member, Opts, Topology, ValueExt};

/// Why network namespaces cannot be used here, if they cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for (bin, arg) in [("ip", "-V"), ("nft", "--version")] {
        match Command::new(bin).arg(arg).output() {
            Ok(out) if out.status.success() => {}
            _ => return Some(format!("`{bin}` is not available")),
        }
    }
    None
}

/// Skips the test (returning early) when namespaces are not available, saying so.
macro_rules! require_netns {
    ($name:literal) => {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED {}: network namespaces unavailable ({why})", $name);
            return;
        }
    };
}

fn run(cmd: &[&str]) {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to ours by a veth pair: `host_ip` on our side, `ns_ip` inside.
/// Deleted (with its veth and rules) on drop.
struct NetNs {
    name: String,
    host_ip: String,
    ns_ip: String,
}

impl NetNs {
    fn new() -> NetNs {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("arthas-t{pid}-{k}");
        let (host_if, ns_if) = (
            format!("ah{}{k}", pid % 100_000),
            format!("an{}{k}", pid % 100_000),
        );
        let net = format!("10.{}.{}", 100 + pid % 100, k);
        let (host_ip, ns_ip) = (format!("{net}.1"), format!("{net}.2"));
        run(&["ip", "netns", "add", &name]);
        let ns = NetNs {
            name,
            host_ip,
            ns_ip,
        };
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        run(&["ip", "link", "set", &ns_if, "netns", &ns.name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", ns.ns_ip),
            "dev",
            &ns_if,
        ]);
        ns.exec(&["ip", "link", "set", &ns_if, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, cmd: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        run(&full);
    }

    /// Replaces the namespace's fault rules with `rules` (nft statements for both the output
    /// and the input hook, each with its own match); empty: no faults.
    fn faults(&self, out_rules: &[String], in_rules: &[String]) {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "nft",
                "delete",
                "table",
                "inet",
                "arthas_fault",
            ])
            .output();
        if out_rules.is_empty() && in_rules.is_empty() {
            return;
        }
        let script = format!(
            "table inet arthas_fault {{\n chain out {{ type filter hook output priority 0; policy accept;\n{}\n }}\n chain in {{ type filter hook input priority 0; policy accept;\n{}\n }}\n}}\n",
            out_rules.join("\n"),
            in_rules.join("\n")
        );
        let file = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&file, script).expect("write the nft script");
        self.exec(&["nft", "-f", &file.display().to_string()]);
        let _ = std::fs::remove_file(file);
    }

    /// Drops every packet between relay 2 and the Redis proxy on `port` (both ways).
    fn cut_from(&self, port: u16) {
        self.faults(
            &[format!("  ip daddr {} tcp dport {port} drop", self.host_ip)],
            &[format!("  ip saddr {} tcp sport {port} drop", self.host_ip)],
        );
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Redis on loopback, a proxy to it on the host side of a fresh namespace's veth, and the env:
/// relay 2 inside the namespace, reaching Redis through the proxy. Returns the members of a room
/// spread over relays 0, 1, 2.
async fn lab(opts: Opts) -> (NetNs, Proxy, Env, [Member; 3]) {
    let ns = NetNs::new();
    let redis = Redis::start(Topology::Redis).await;
    let upstream = match &redis {
        Redis::Standalone(s) => s.addr(),
        _ => unreachable!("standalone"),
    };
    let proxy = Proxy::start_on(&ns.host_ip, &upstream).await;
    let opts = opts
        .flag("--chat-rate-limit", 1_000_000)
        .relay_redis_url(2, &format!("redis://{}", proxy.addr()))
        .relay_in_netns(2, &ns.name, &ns.ns_ip);
    let env = Env::start_on(redis, opts).await;
    let mut room = open_room::<3>(&env).await;
    for m in room.iter_mut() {
        // Long waits see the relays' application Pings (answered automatically).
        m.skip_app_pings = true;
    }
    (ns, proxy, env, room)
}

fn proxy_port(proxy: &Proxy) -> u16 {
    proxy
        .addr()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("proxy port")
}

fn chat(ct: &str) -> rmpv::Value {
    crate::map! {"iv" => "iv", "ciphertext" => ct}
}

/// `from` sends probes until `to` all receive one (each skips frames listed as harmless);
/// returns how long that took. Error frames to the sender (E005 while its relay's bus is down)
/// are counted in `refused`.
async fn probe_until_delivered(
    from: &mut Member,
    to: &mut [&mut Member],
    within: Duration,
    refused: &mut usize,
) -> Duration {
    let started = Instant::now();
    let mut seen = vec![false; to.len()];
    let mut n = 0;
    loop {
        assert!(
            started.elapsed() < within,
            "{}'s probes reached {:?} only, within {within:?}",
            from.name,
            seen
        );
        n += 1;
        from.send(t::SEND_MESSAGE, chat(&format!("probe-{n}")))
            .await;
        while let Some(ev) = from.next_event(Duration::from_millis(1)).await {
            match ev {
                Event::Msg(ty, data) if ty == t::ERROR => {
                    assert_eq!(data.str("code"), "E005", "{data}");
                    *refused += 1;
                }
                Event::Msg(ty, _) if ty == t::PING || ty == t::RELAY_MESSAGE => {}
                Event::Ping(_) | Event::Pong => {}
                other => panic!("{}: {other:?}", from.name),
            }
        }
        for (m, seen) in to.iter_mut().zip(seen.iter_mut()) {
            while let Some(ev) = m.next_event(Duration::from_millis(50)).await {
                match ev {
                    Event::Msg(ty, data) if ty == t::RELAY_MESSAGE => {
                        if data.str("senderId") == from.id {
                            *seen = true;
                        }
                    }
                    Event::Msg(ty, _) if ty == t::PING => {}
                    // A late re-join of a swept member (see `rejoined`).
                    Event::Msg(ty, _) if ty == t::MEMBER_JOINED || ty == t::MEMBER_LEFT => {}
                    Event::Ping(_) | Event::Pong => {}
                    other => panic!("{}: unexpected {other:?}", m.name),
                }
            }
        }
        if seen.iter().all(|s| *s) {
            return started.elapsed();
        }
    }
}

/// A 5 s partition of relay 2 from Redis, shorter than the heartbeat TTL (10 s): nobody is
/// swept (no MemberLeft, no MemberJoined), relay 2's sender is told its messages failed (E005,
/// never silence), and delivery both ways resumes after the partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_partition_of_a_relay_from_redis() {
    require_netns!("a_short_partition_of_a_relay_from_redis");
    let (ns, proxy, _env, [mut m0, mut m1, mut m2]) = lab(Opts::new()).await;
    let cut = Instant::now();
    ns.cut_from(proxy_port(&proxy));
    // While cut: m2's message is refused.
    m2.timeout = Duration::from_secs(10);
    m2.send(t::SEND_MESSAGE, chat("while-cut")).await;
    m2.expect_error("E005", "service temporarily unavailable, retry")
        .await;
    println!(
        "FIGURE netns 5 s partition: the sender behind the partition told E005 after {:?}",
        cut.elapsed()
    );
    // m0 and m1 still chat with each other.
    say(&mut m0, &mut [&mut m1]).await;
    let left = Duration::from_secs(5).saturating_sub(cut.elapsed());
    tokio::time::sleep(left).await; // the partition's length is the scenario, not a wait for an event
    ns.faults(&[], &[]);
    let healed = Instant::now();
    let mut refused = 0;
    let up = probe_until_delivered(
        &mut m2,
        &mut [&mut m0, &mut m1],
        Duration::from_secs(30),
        &mut refused,
    )
    .await;
    let down = probe_until_delivered(
        &mut m0,
        &mut [&mut m2],
        Duration::from_secs(30),
        &mut refused,
    )
    .await;
    println!(
        "FIGURE netns 5 s partition: delivery from the partitioned relay back {up:?} after the partition ended, to it {:?}; {refused} E005 meanwhile",
        healed.elapsed().saturating_sub(down).max(up)
    );
    // Nobody was swept: the next frames are the barrier replies, no MemberLeft/MemberJoined.
    for m in [&mut m0, &mut m1, &mut m2] {
        loop {
            m.send(t::CREATE_ROOM, crate::map! {"name" => "", "password" => ""})
                .await;
            let (ty, data) = m.recv().await;
            match ty {
                t::RELAY_MESSAGE => continue,
                t::ERROR
                    if data.str("code") == "E005"
                        && data.str("msg") != "service temporarily unavailable, retry" =>
                {
                    break
                }
                t::ERROR => continue,
                other => panic!(
                    "{}: 0x{other:02X} {data} after a partition shorter than the TTL",
                    m.name
                ),
            }
        }
    }
}

/// Reads `m`'s frames until MemberJoined for `back` (a MemberLeft for it may come first).
async fn rejoined(m: &mut Member, back: &Member) -> rmpv::Value {
    loop {
        let (ty, data) = m.recv().await;
        match ty {
            t::MEMBER_JOINED if data.str("id") == back.id => return data,
            t::MEMBER_LEFT if data.str("id") == back.id => continue,
            _ => panic!(
                "{}: 0x{ty:02X} {data} while waiting for {} to re-join",
                m.name, back.name
            ),
        }
    }
}

/// A 30 s partition of relay 2 from Redis, longer than the heartbeat TTL (10 s): the others
/// are told m2 left (the sweep), m2's messages are refused (E005). When the partition ends
/// relay 2 re-joins m2: the others get MemberJoined for it and the room chats again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_partition_of_a_relay_from_redis() {
    require_netns!("a_long_partition_of_a_relay_from_redis");
    let (ns, proxy, _env, [mut m0, mut m1, mut m2]) = lab(Opts::new()).await;
    let cut = Instant::now();
    ns.cut_from(proxy_port(&proxy));
    // Both read at once: a client that does not read does not answer the relays' pings.
    m0.timeout = Duration::from_secs(30);
    m1.timeout = Duration::from_secs(30);
    let (a, b) = tokio::join!(m0.expect(t::MEMBER_LEFT), m1.expect(t::MEMBER_LEFT));
    assert_eq!((a.str("id"), b.str("id")), (m2.id.as_str(), m2.id.as_str()));
    println!("FIGURE netns 30 s partition: MemberLeft for the cut-off relay's member after {:?} (TTL 10 s)", cut.elapsed());
    let left = Duration::from_secs(30).saturating_sub(cut.elapsed());
    tokio::time::sleep(left).await; // the partition's length is the scenario
    ns.faults(&[], &[]);
    let healed = Instant::now();
    // A sweep that had started on the stale deadline may remove m2 once more while relay 2
    // puts it back (MemberLeft, then MemberJoined again): wait for the MemberJoined that ends it.
    let (a, b) = tokio::join!(rejoined(&mut m0, &m2), rejoined(&mut m1, &m2));
    for data in [a, b] {
        assert_eq!(
            (data.str("id"), data.str("name")),
            (m2.id.as_str(), m2.name.as_str())
        );
    }
    println!(
        "FIGURE netns 30 s partition: MemberJoined for it {:?} after the partition ended",
        healed.elapsed()
    );
    // m2 may have E005 replies or missed nothing else; then the room chats.
    let mut refused = 0;
    probe_until_delivered(
        &mut m2,
        &mut [&mut m0, &mut m1],
        Duration::from_secs(30),
        &mut refused,
    )
    .await;
    probe_until_delivered(
        &mut m0,
        &mut [&mut m2, &mut m1],
        Duration::from_secs(30),
        &mut refused,
    )
    .await;
}

/// 100 ms added to every Redis reply to relay 2 and 3 % of the packets between relay 2 and
/// Redis dropped: every message relay 2's member sends is either delivered to the others, in
/// order, or refused with E005 (then sent again); none is lost silently. Prints the time per
/// accepted message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_loss_between_a_relay_and_redis() {
    require_netns!("latency_and_loss_between_a_relay_and_redis");
    let (ns, proxy, _env, [mut m0, mut m1, mut m2]) = lab(Opts::new()).await;
    let port = proxy_port(&proxy);
    proxy.delay_replies(Duration::from_millis(100));
    ns.faults(
        &[format!(
            "  ip daddr {} tcp dport {port} numgen random mod 100 < 3 drop",
            ns.host_ip
        )],
        &[format!(
            "  ip saddr {} tcp sport {port} numgen random mod 100 < 3 drop",
            ns.host_ip
        )],
    );
    const MESSAGES: usize = 30;
    let started = Instant::now();
    let mut refusals = 0;
    let sent: Vec<String> = (0..MESSAGES).map(|i| format!("lossy-{i}")).collect();
    let mut refused_at = vec![0usize; MESSAGES];
    m2.timeout = Duration::from_secs(20);
    for (i, ct) in sent.iter().enumerate() {
        loop {
            m2.send(t::SEND_MESSAGE, chat(ct)).await;
            // Barrier: CreateRoom with an empty name is answered E005 "...name..." after any
            // refusal of the message above.
            m2.send(t::CREATE_ROOM, crate::map! {"name" => "", "password" => ""})
                .await;
            let mut refused = false;
            loop {
                let data = m2.expect(t::ERROR).await;
                if data.str("msg") == "service temporarily unavailable, retry" {
                    refused = true;
                } else {
                    break;
                }
            }
            if !refused {
                break;
            }
            refusals += 1;
            refused_at[i] += 1;
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "message {i} refused for a minute"
            );
        }
    }
    let took = started.elapsed();
    for m in [&mut m0, &mut m1] {
        m.timeout = Duration::from_secs(20);
        let mut got = 0;
        while got < MESSAGES {
            let data = m.expect(t::RELAY_MESSAGE).await;
            let ct = data.str("ciphertext");
            // A refused publish may still have gone out (its reply was lost): a duplicate.
            if got > 0 && refused_at[got - 1] > 0 && ct == sent[got - 1] {
                continue;
            }
            assert_eq!(ct, sent[got], "{}: lost or reordered", m.name);
            got += 1;
        }
    }
    ns.faults(&[], &[]);
    println!(
        "FIGURE netns 100 ms replies + 3 % loss relay<->Redis: {MESSAGES} messages accepted in {took:?} ({:?} each), {refusals} refused and resent, none lost",
        took / MESSAGES as u32
    );
}

/// The clients of relay 2 are cut off from it (every packet between them dropped): relay 2
/// gets no pong within its read timeout, closes the member, and the others are told it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_clients_from_a_relay() {
    require_netns!("a_partition_of_clients_from_a_relay");
    let opts = Opts::new()
        .flag("--ping-interval-ms", 500)
        .flag("--read-timeout-ms", 2_000);
    let (ns, _proxy, env, [mut m0, mut m1, m2]) = lab(opts).await;
    let ws_port: u16 = env
        .ws_url(2)
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches("/ws").parse().ok())
        .expect("relay 2's port");
    let cut = Instant::now();
    ns.faults(
        &[format!("  tcp sport {ws_port} drop")],
        &[format!("  tcp dport {ws_port} drop")],
    );
    // Both read at once: a client that does not read does not answer the relays' pings.
    m0.timeout = Duration::from_secs(15);
    m1.timeout = Duration::from_secs(15);
    let (a, b) = tokio::join!(m0.expect(t::MEMBER_LEFT), m1.expect(t::MEMBER_LEFT));
    assert_eq!((a.str("id"), b.str("id")), (m2.id.as_str(), m2.id.as_str()));
    println!(
        "FIGURE netns clients cut off from their relay: the others told the member left after {:?} (read timeout 2 s)",
        cut.elapsed()
    );
    ns.faults(&[], &[]);
    drop(m2);
    // The room goes on: a newcomer through relay 2 sees m0 and m1.
    let (mut newcomer, joined) =
        support::room::join_room(&env, 2, &m0.room_id, "newcomer", "").await;
    assert_eq!(joined.array("members").len(), 3, "{joined}");
    expect_member_joined(&mut [&mut m0, &mut m1], &newcomer).await;
    say(&mut newcomer, &mut [&mut m0, &mut m1]).await;
}
