//! The embedded broker: rmqtt, in this process, on `mqtt.listen`, for a single box.
//!
//! Chosen by measurement (docs/FLOOR.md, *Choosing the embedded broker*): it sets TCP_NODELAY
//! on the sockets it accepts (without it every scan round trip waits ~40 ms for Nagle's
//! algorithm and the peer's delayed ACK) and lets its user decide every CONNECT, publish and
//! subscribe through hooks, which is how each device is held to its own topics here:
//!
//! * CONNECT: the user name must be a registered device (`scanner/sc-01`) or the node's own
//!   in-process user, with the right password ([`Registry::check`]); a will must be on a topic
//!   the user may publish to. Anything else is refused (bad user name or password).
//! * PUBLISH: [`Scope::may_publish`]; a refused publish is dropped (MQTT 3.1.1 has no way to
//!   say no) and counted in `wms_node_floor_broker_denied_total{what="publish"}`. The check
//!   reads the registry each time, so a device removed while connected can publish nothing more.
//! * SUBSCRIBE: [`Scope::may_subscribe`]; refused with reason "not authorized".
//!
//! Retained messages (the `state` of every device and the node) live in memory: the broker
//! restarts with the node, and every device publishes its birth again when it reconnects.
//! Nothing durable is kept here: the node's store is the only source of truth.

use super::acl::{Principal, Scope};
use super::devices::{DeviceId, Registry};
use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::server::MqttServer;
use rmqtt::types::{
    AuthResult, LastWill, PublishAclResult, Retain, SubscribeAclResult, TopicFilter, TopicName,
};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The embedded broker's settings.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Where it listens (`mqtt.listen`); port 0 picks a free one.
    pub listen: SocketAddr,
    /// Largest packet accepted, in bytes (a print job with graphics fits in 1 MiB).
    pub max_packet_bytes: u32,
    /// Unacknowledged QoS 1 messages per client. The node acknowledges an event only after its
    /// commit, so this bounds the events in flight to the node.
    pub max_inflight: u16,
}

impl BrokerOptions {
    /// Defaults for `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        BrokerOptions {
            listen,
            max_packet_bytes: 1024 * 1024,
            max_inflight: 1024,
        }
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for MQTT on {addr} (mqtt.listen): {reason}")]
pub struct BrokerError {
    /// `mqtt.listen`.
    pub addr: SocketAddr,
    /// Why (in use, not an address of this host).
    pub reason: String,
}

/// A running embedded broker.
pub struct Embedded {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Embedded {
    /// Binds `opts.listen` and starts serving; the node's own user is `node_user` with
    /// `node_password`, devices are checked against `registry`.
    pub async fn start(
        opts: &BrokerOptions,
        scope: Scope,
        registry: Registry,
        node_user: String,
    ) -> Result<Embedded, BrokerError> {
        let fail = |reason: String| BrokerError {
            addr: opts.listen,
            reason,
        };
        let scx = ServerContext::new().build().await;
        *scx.extends.retain_mut().await = Box::new(Retained(DefaultRetainStorage::new()));
        let rules = Rules {
            scope,
            registry,
            node_user,
        };
        let reg = scx.extends.hook_mgr().register();
        reg.add(Type::ClientAuthenticate, Box::new(rules.clone()))
            .await;
        reg.add(Type::MessagePublishCheckAcl, Box::new(rules.clone()))
            .await;
        reg.add(Type::ClientSubscribeCheckAcl, Box::new(rules))
            .await;
        reg.start().await;
        let listener = Builder::new()
            .name("floor")
            .laddr(opts.listen)
            // The reason this broker was chosen: no Nagle delay on any floor socket.
            .nodelay(true)
            .allow_anonymous(false)
            .max_packet_size(opts.max_packet_bytes)
            .max_inflight(NonZeroU16::new(opts.max_inflight).unwrap_or(NonZeroU16::MIN))
            .max_mqueue_len(10_000)
            .session_expiry_interval(Duration::from_secs(24 * 60 * 60))
            .bind()
            .map_err(|e| fail(e.to_string()))?
            .tcp()
            .map_err(|e| fail(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
        let server = MqttServer::new(scx).listener_by_id(listener, 1).build();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        });
        tracing::info!(addr = %addr, "embedded MQTT broker listening");
        Ok(Embedded { addr, task })
    }

    /// Where it listens (the real port when `listen` said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `token` is cancelled, then stops accepting and drops every connection.
    pub async fn serve(self, token: CancellationToken) -> Result<(), std::convert::Infallible> {
        let mut task = self.task;
        tokio::select! {
            // Shutdown: the node's clients have said goodbye by now.
            _ = token.cancelled() => task.abort(),
            // The server ended by itself (logged where it ended).
            _ = &mut task => {}
        }
        Ok(())
    }
}

/// Retained messages in memory (rmqtt keeps none unless a storage says it is enabled).
struct Retained(DefaultRetainStorage);

#[async_trait]
impl RetainStorage for Retained {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry_interval: Option<Duration>,
    ) -> rmqtt::Result<()> {
        self.0
            .set_with_timeout(topic, retain, expiry_interval)
            .await
    }

    async fn get(&self, topic_filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.0.get_message(topic_filter).await
    }

    async fn count(&self) -> isize {
        self.0.count().await
    }

    async fn max(&self) -> isize {
        self.0.max().await
    }
}

/// The CONNECT, publish and subscribe checks.
#[derive(Clone)]
struct Rules {
    scope: Scope,
    registry: Registry,
    node_user: String,
}

impl Rules {
    fn principal(&self, user: &str) -> Option<Principal> {
        if user == self.node_user {
            return Some(Principal::Node);
        }
        DeviceId::from_username(user)
            .filter(|_| self.registry.contains(user))
            .map(Principal::Device)
    }

    fn authenticate(
        &self,
        user: Option<&str>,
        password: Option<&[u8]>,
        will: Option<&str>,
    ) -> bool {
        let (Some(user), Some(password)) = (user, password) else {
            return false;
        };
        let Ok(password) = std::str::from_utf8(password) else {
            return false;
        };
        let Some(who) = self.principal(user) else {
            return false;
        };
        if !self.registry.check(user, password) {
            return false;
        }
        // rmqtt publishes wills without the publish check: check the topic here.
        will.is_none_or(|topic| self.scope.may_publish(&who, topic))
    }
}

fn denied(what: &'static str, user: &str, topic: &str) {
    metrics::counter!("wms_node_floor_broker_denied_total", "what" => what).increment(1);
    tracing::warn!(user, topic, what, "broker refused a client");
}

#[async_trait]
impl Handler for Rules {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                let user = ci.username().map(|u| u.as_ref());
                let will = ci.last_will().map(|lw| match lw {
                    LastWill::V3(w) => w.topic.to_string(),
                    LastWill::V5(w) => w.topic.to_string(),
                });
                let ok =
                    self.authenticate(user, ci.password().map(|p| p.as_ref()), will.as_deref());
                if !ok {
                    denied("connect", user.unwrap_or(""), will.as_deref().unwrap_or(""));
                }
                let result = if ok {
                    AuthResult::Allow(false, None)
                } else {
                    AuthResult::BadUsernameOrPassword
                };
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let user = s.id.username.as_ref().map(|u| u.as_ref()).unwrap_or("");
                let ok = self
                    .principal(user)
                    .is_some_and(|who| self.scope.may_publish(&who, &p.topic));
                let result = if ok {
                    PublishAclResult::allow()
                } else {
                    denied("publish", user, &p.topic);
                    PublishAclResult::rejected(false, None)
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let user = s.id.username.as_ref().map(|u| u.as_ref()).unwrap_or("");
                let ok = self
                    .principal(user)
                    .is_some_and(|who| self.scope.may_subscribe(&who, &sub.topic_filter));
                let result = if ok {
                    SubscribeAclResult::new_success(sub.opts.qos(), None)
                } else {
                    denied("subscribe", user, &sub.topic_filter);
                    SubscribeAclResult::new_failure(
                        rmqtt::codec::v5::SubscribeAckReason::NotAuthorized,
                    )
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            _ => (true, acc),
        }
    }
}
