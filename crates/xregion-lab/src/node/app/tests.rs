//! The shop over HTTPS on three in-process regions that replicate to each other and call each other over mutual
//! TLS, as in the lab (without the WAN's delay).

use crate::config::Defects;
use crate::node::{Node, http, testutil};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A shop of three regions: each node with its HTTPS address.
struct Shop {
    test: String,
    nodes: Vec<(Arc<Node>, SocketAddr)>,
}

impl Shop {
    /// Regions a, b and c of lab `test`, each with `defects`, fully wired.
    async fn start(test: &str, defects: Defects) -> Shop {
        let names = ["a", "b", "c"];
        let nodes: Vec<Arc<Node>> = names
            .iter()
            .map(|r| {
                let peers: Vec<&str> = names.iter().copied().filter(|p| p != r).collect();
                testutil::node(test, r, &peers, defects.clone())
            })
            .collect();
        let mut repl = Vec::new();
        for n in &nodes {
            repl.push(testutil::listen(n).await);
        }
        for (i, from) in nodes.iter().enumerate() {
            for (j, to) in nodes.iter().enumerate() {
                if i != j {
                    testutil::ship_to(from, &to.region, repl[j]);
                }
            }
        }
        let mut served = Vec::new();
        for n in nodes {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(http::serve(n.clone(), listener));
            served.push((n, addr));
        }
        Shop { test: test.to_string(), nodes: served }
    }

    /// Sends a request to region `i` as admin, with extra `headers`; the status and JSON body.
    async fn call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let addr = self.nodes[i].1;
        let lab = testutil::lab(&self.test);
        let config = crate::pki::Pki::load(&lab).unwrap().client_config().unwrap();
        let token = crate::auth::Tokens::load(&lab).unwrap().token_of("admin").unwrap().to_string();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request += &format!("{name}: {value}\r\n");
        }
        request += "\r\n";
        request += &body;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut s = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(testutil::WAIT, s.read_to_end(&mut out)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Polls `path` in every region until `done` holds for each answer.
    async fn converge(&self, path: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + testutil::WAIT;
        loop {
            let mut answers = Vec::new();
            for i in 0..self.nodes.len() {
                answers.push(self.call(i, "GET", path, &[], None).await.1);
            }
            if answers.iter().all(&done) {
                return answers;
            }
            assert!(std::time::Instant::now() < deadline, "{path} never settled: {answers:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&self) {
        for (n, _) in &self.nodes {
            n.shutdown.cancel();
        }
    }
}

/// Goal: the shop keeps its three promises across regions. An e-mail registers once: of two registrations at
/// once in two regions exactly one succeeds, and every region lists one customer. Escrowed stock: three units
/// received in one region sell exactly three times from three regions (the others take units from it), the
/// fourth order is refused as sold out, and every region agrees on 0 left of 3 received. A payment retried with
/// its key in other regions charges once (the home region settles it), another key is 409, and every region
/// lists one charge. Bad input gets JSON 4xx.
#[tokio::test]
async fn the_shop_keeps_its_promises_across_regions() {
    let shop = Shop::start("app-promises", Defects::default()).await;
    let reg = serde_json::json!({ "email": "Ada@Example.com", "name": "Ada" });
    let (r1, r2) = tokio::join!(
        shop.call(1, "POST", "/app/v1/customers", &[], Some(reg.clone())),
        shop.call(2, "POST", "/app/v1/customers", &[], Some(reg.clone()))
    );
    let mut statuses = [r1.0, r2.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{r1:?} {r2:?}");
    let listed = shop
        .converge("/app/v1/customers?email=ada@example.com", |v| {
            v["customers"].as_array().is_some_and(|c| !c.is_empty())
        })
        .await;
    assert!(listed.iter().all(|v| v["customers"].as_array().unwrap().len() == 1), "{listed:?}");

    let (s, v) = shop.call(0, "POST", "/app/v1/stock/widget-1", &[], Some(serde_json::json!({ "units": 3 }))).await;
    assert_eq!((s, v["units"].as_u64()), (200, Some(3)), "{v}");
    let order = serde_json::json!({ "customer": "c-1", "sku": "widget-1", "qty": 1 });
    let mut placed = Vec::new();
    for i in [1, 2, 0, 1] {
        let (s, v) = shop.call(i, "POST", "/app/v1/orders", &[], Some(order.clone())).await;
        placed.push(s);
        if s == 201 {
            assert_eq!(v["order"]["home"].as_str(), Some(shop.nodes[i].0.region.as_str()), "{v}");
        } else {
            assert_eq!(v["error"].as_str(), Some("sold_out"), "{v}");
        }
    }
    assert_eq!(placed, [201, 201, 201, 409]);
    let stock = shop.converge("/app/v1/stock/widget-1", |v| v["sold"].as_u64() == Some(3)).await;
    assert!(stock.iter().all(|v| v["units"].as_u64() == Some(0) && v["received"].as_u64() == Some(3)), "{stock:?}");

    let (s, v) = shop
        .call(
            0,
            "POST",
            "/app/v1/orders",
            &[],
            Some(serde_json::json!({ "customer": "c-1", "sku": "none-1", "qty": 1 })),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("sold_out")), "no stock received: {v}");
    shop.call(2, "POST", "/app/v1/stock/gadget", &[], Some(serde_json::json!({ "units": 1 }))).await;
    let (s, v) = shop
        .call(
            2,
            "POST",
            "/app/v1/orders",
            &[],
            Some(serde_json::json!({ "customer": "c-1", "sku": "gadget", "qty": 1 })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["order"]["id"].as_str().unwrap().to_string();
    let amount = serde_json::json!({ "amount_cents": v["order"]["amount_cents"] });
    let pay = format!("/app/v1/orders/{id}/payments");
    let (s, first) = shop.call(0, "POST", &pay, &[("idempotency-key", "k-1")], Some(amount.clone())).await;
    assert_eq!((s, first["replayed"].as_bool()), (201, Some(false)), "{first}");
    for i in [1, 2] {
        let (s, again) = shop.call(i, "POST", &pay, &[("idempotency-key", "k-1")], Some(amount.clone())).await;
        assert_eq!((s, again["replayed"].as_bool(), &again["charge"]), (200, Some(true), &first["charge"]), "{again}");
    }
    let (s, v) = shop.call(1, "POST", &pay, &[("idempotency-key", "k-2")], Some(amount.clone())).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("already_paid")), "{v}");
    let charges = shop
        .converge(&format!("/app/v1/orders/{id}/charges"), |v| v["charges"].as_array().is_some_and(|c| !c.is_empty()))
        .await;
    assert!(charges.iter().all(|v| v["charges"].as_array().unwrap().len() == 1), "{charges:?}");
    let paid = shop.converge(&format!("/app/v1/orders/{id}"), |v| v["order"]["status"] == "paid").await;
    assert_eq!(paid[1]["order"]["charge"], first["charge"]["id"]);

    for (method, path, headers, body, status, code) in [
        ("POST", pay.as_str(), &[][..], Some(amount.clone()), 400, "missing_idempotency_key"),
        (
            "POST",
            pay.as_str(),
            &[("idempotency-key", "k-3")][..],
            Some(serde_json::json!({ "amount_cents": 1 })),
            409,
            "already_paid",
        ),
        (
            "POST",
            "/app/v1/orders/zz:00/payments",
            &[("idempotency-key", "k")][..],
            Some(amount.clone()),
            404,
            "unknown_order",
        ),
        (
            "POST",
            "/app/v1/customers",
            &[][..],
            Some(serde_json::json!({ "email": "nope", "name": "x" })),
            400,
            "invalid_email",
        ),
        ("POST", "/app/v1/customers", &[][..], Some(serde_json::json!({ "email": "a@b.c" })), 400, "invalid_body"),
        (
            "POST",
            "/app/v1/orders",
            &[][..],
            Some(serde_json::json!({ "customer": "c", "sku": "gadget", "qty": 0 })),
            400,
            "invalid_qty",
        ),
        ("POST", "/app/v1/stock/BAD", &[][..], Some(serde_json::json!({ "units": 1 })), 400, "invalid_sku"),
        ("GET", "/app/v1/stock/never-received", &[][..], None, 404, "unknown_sku"),
    ] {
        let (s, v) = shop.call(1, method, path, headers, body).await;
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{method} {path}: {v}");
    }
    shop.stop();
}

/// Goal: each defect breaks its promise: without e-mail reservations two regions register one e-mail, a shared
/// counter sells the last unit in two regions, and a payment retried in another region charges twice.
#[tokio::test]
async fn each_defect_breaks_its_promise() {
    let defects = Defects {
        email_uniqueness_disabled: true,
        inventory_escrow_disabled: true,
        payment_idempotency_disabled: true,
        ..Defects::default()
    };
    let shop = Shop::start("app-defects", defects).await;
    // Slow commits (a slow disk) keep two requests sent at once from seeing each other's replicated writes.
    for (n, _) in &shop.nodes {
        n.store.set_commit_delay(100);
    }
    let reg = serde_json::json!({ "email": "bob@example.com", "name": "Bob" });
    let (r1, r2) = tokio::join!(
        shop.call(1, "POST", "/app/v1/customers", &[], Some(reg.clone())),
        shop.call(2, "POST", "/app/v1/customers", &[], Some(reg.clone()))
    );
    assert_eq!((r1.0, r2.0), (201, 201), "{r1:?} {r2:?}");
    let listed = shop
        .converge("/app/v1/customers?email=bob@example.com", |v| {
            v["customers"].as_array().is_some_and(|c| c.len() == 2)
        })
        .await;
    assert_eq!(listed.len(), 3);

    shop.call(0, "POST", "/app/v1/stock/last-one", &[], Some(serde_json::json!({ "units": 1 }))).await;
    shop.converge("/app/v1/stock/last-one", |v| v["units"].as_u64() == Some(1)).await;
    let order = serde_json::json!({ "customer": "c-1", "sku": "last-one", "qty": 1 });
    let (o1, o2) = tokio::join!(
        shop.call(1, "POST", "/app/v1/orders", &[], Some(order.clone())),
        shop.call(2, "POST", "/app/v1/orders", &[], Some(order.clone()))
    );
    assert_eq!((o1.0, o2.0), (201, 201), "the last unit sold twice: {o1:?} {o2:?}");

    let id = o1.1["order"]["id"].as_str().unwrap().to_string();
    let amount = serde_json::json!({ "amount_cents": o1.1["order"]["amount_cents"] });
    let pay = format!("/app/v1/orders/{id}/payments");
    for i in [1, 2] {
        let (s, _) = shop.call(i, "POST", &pay, &[("idempotency-key", "k-1")], Some(amount.clone())).await;
        assert_eq!(s, 201);
    }
    shop.converge(&format!("/app/v1/orders/{id}/charges"), |v| v["charges"].as_array().is_some_and(|c| c.len() == 2))
        .await;
    shop.stop();
}
