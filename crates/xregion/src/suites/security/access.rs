//! Access control: no token gets 401, a wrong scope 403, admin routes refuse tenant tokens, and every replication
//! listener refuses a peer without a client certificate.

use super::{MTLS_WAIT, TLS_TIMEOUT, role_client, table};
use crate::check::{Ctx, PerRegion, ResultBuilder};
use crate::net::Role;
use crate::tls_scan::ClientCertProbe;
use std::time::Duration;
use xregion_model::report::{CheckResult, Verdict};

/// Status of one request, or why there was none (one sentence naming the endpoint).
async fn status_of(req: reqwest::RequestBuilder, endpoint: &str) -> Result<u16, String> {
    req.send().await.map(|r| r.status().as_u16()).map_err(|e| {
        let host = reqwest::Url::parse(endpoint).ok().and_then(|u| u.host_str().map(str::to_string));
        let host = host.unwrap_or_else(|| endpoint.to_string());
        if e.is_timeout() {
            format!("{endpoint} did not answer in time; check that it is up, or raise [deployment] request_timeout_ms")
        } else {
            format!("{endpoint}: {}", crate::net::transport_problem(&e, host.trim_matches(['[', ']']), None))
        }
    })
}

pub(super) async fn access_control(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let auth = &ctx.config.deployment.auth;
    if auth.read_token.is_none() || auth.write_token.is_none() || auth.admin_token.is_none() {
        return rb.finish(
            Verdict::Skipped,
            "needs a read, a write and an admin token: set [deployment.auth] or XREGION_TOKEN_READ/WRITE/ADMIN",
        );
    }
    let anon = role_client(ctx, Role::Anonymous);
    let reader = role_client(ctx, Role::Read);
    let writer = role_client(ctx, Role::Write);
    let admin = role_client(ctx, Role::Admin);
    let bogus = {
        let mut h = reqwest::header::HeaderMap::new();
        let mut v = reqwest::header::HeaderValue::from_static("Bearer xrl_not-a-valid-token-0000000000000000");
        v.set_sensitive(true);
        h.insert(reqwest::header::AUTHORIZATION, v);
        crate::net::client_builder(&ctx.config.deployment, Role::Anonymous)
            .default_headers(h)
            .timeout(Duration::from_millis(ctx.config.deployment.request_timeout_ms))
            .build()
            .unwrap_or_default()
    };
    let key = format!("{}access", ctx.prefix("access-control"));
    let body = serde_json::json!({ "value": "access-control canary" });
    let mut rows = Vec::new();
    let mut per = PerRegion::new();
    let mut wrong = 0usize;
    for p in &ctx.probes {
        let base = &p.endpoint;
        let kv = format!("{base}/v1/kv/{key}");
        let audit = format!("{base}/v1/audit?limit=1");
        // (request, principal, expected statuses, client request)
        let cases: Vec<(&str, &str, &[u16], reqwest::RequestBuilder)> = vec![
            ("GET /v1/kv/{key}", "no token", &[401], anon.get(&kv)),
            ("PUT /v1/kv/{key}", "no token", &[401], anon.put(&kv).json(&body)),
            ("GET /v1/kv/{key}", "invalid token", &[401], bogus.get(&kv)),
            ("PUT /v1/kv/{key}", "reader", &[403], reader.put(&kv).json(&body)),
            ("POST /v1/erase/{key}", "reader", &[403], reader.post(format!("{base}/v1/erase/{key}"))),
            ("GET /v1/audit", "reader", &[403], reader.get(&audit)),
            ("GET /v1/audit", "writer", &[403], writer.get(&audit)),
            ("GET /metrics", "writer", &[403, 404], writer.get(format!("{base}/metrics"))),
            ("PUT /v1/kv/{key}", "writer", &[200], writer.put(&kv).json(&body)),
            ("GET /v1/kv/{key}", "reader", &[200, 404], reader.get(&kv)),
            ("GET /v1/audit", "admin", &[200], admin.get(&audit)),
        ];
        let mut region_ok = true;
        let mut region_wrong = Vec::new();
        for (what, who, expected, req) in cases {
            let got = status_of(req, base).await;
            let ok = matches!(&got, Ok(s) if expected.contains(s));
            let exp = expected.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ");
            let got_s = match &got {
                Ok(s) => s.to_string(),
                Err(e) => format!("error: {e}"),
            };
            rows.push(vec![
                p.region.clone(),
                what.to_string(),
                who.to_string(),
                exp.clone(),
                got_s,
                if ok { "ok" } else { "WRONG" }.into(),
            ]);
            match &got {
                Err(e) => {
                    // An endpoint that cannot be reached answers no other request either: one row says why.
                    region_ok = false;
                    per.error(&p.region, e.clone());
                    break;
                }
                Ok(s) if !ok => {
                    region_ok = false;
                    wrong += 1;
                    region_wrong.push(format!("{what} as {who} got {s} (expected {exp})"));
                }
                _ => {}
            }
        }
        if !region_wrong.is_empty() {
            per.fail(&p.region, super::list(&region_wrong, 2));
        } else if region_ok {
            per.pass(&p.region, "401 without a token, 403 for every wrong scope");
        }
    }
    rb.table(table(
        "Requests by token and scope",
        &["region", "request", "principal", "expected", "got", "verdict"],
        rows,
    ));
    // Replication: a peer without a client certificate must be refused.
    let repl = &ctx.config.deployment.security.replication;
    let mut mtls_rows = Vec::new();
    if repl.is_empty() {
        rb.note(
            "replication mutual TLS not checked: the deployment's replication listeners are unknown (set \
             [deployment.security] replication = { region = \"host:port\" })",
        );
    }
    for (region, addr) in repl {
        let r = match tokio::net::lookup_host(addr.as_str()).await.ok().and_then(|mut a| a.next()) {
            None => Err(format!("cannot resolve {addr}; check [deployment.security] replication")),
            Some(sa) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                crate::tls_scan::probe_without_client_cert(sa, host, MTLS_WAIT, TLS_TIMEOUT).await
            }
        };
        let (cell, ok) = match &r {
            Ok(ClientCertProbe::Refused { alert }) => {
                per.pass(region, format!("replication refuses a peer without a client certificate ({alert})"));
                (format!("refused ({alert})"), true)
            }
            Ok(ClientCertProbe::Accepted { how }) => {
                wrong += 1;
                per.fail(region, format!("replication at {addr} accepts a peer without a client certificate ({how})"));
                (format!("accepted ({how})"), false)
            }
            Ok(ClientCertProbe::NotTls { how }) => {
                wrong += 1;
                per.fail(region, format!("replication at {addr} does not speak TLS ({how})"));
                (format!("not TLS ({how})"), false)
            }
            Ok(ClientCertProbe::Undecided { how }) => {
                per.error(
                    region,
                    format!("replication at {addr} neither refused with a certificate alert nor accepted: {how}"),
                );
                (format!("undecided ({how})"), false)
            }
            Err(e) => {
                per.error(region, format!("replication at {addr}: {e}"));
                (format!("error: {e}"), false)
            }
        };
        mtls_rows.push(vec![region.clone(), addr.clone(), cell, if ok { "ok" } else { "WRONG" }.into()]);
    }
    if !mtls_rows.is_empty() {
        rb.table(table(
            "Replication listeners, connected without a client certificate",
            &["region", "address", "outcome", "verdict"],
            mtls_rows,
        ));
    }
    rb.metric("wrong_answers", wrong as f64);
    rb.measured(format!("{wrong} wrong answers"));
    let replication = if repl.is_empty() {
        "replication not checked (no listeners configured)".to_string()
    } else {
        format!("replication refuses peers without a client certificate ({} listeners)", repl.len())
    };
    let pass = format!("401 without a token, 403 for every wrong scope in {} regions; {replication}", ctx.probes.len());
    per.finish(rb, pass)
}
