//! Turns the settings (flags, environment, configuration file) into the typed settings of
//! each library.

use std::time::Duration;

use anyhow::Context;
use gantry_kit::client::TrustedProxies;
use gantry_kit::db::DatabaseSettings;
use gantry_kit::jwt::JwtSettings;
use gantry_kit::keys::KeySettings;
use gantry_kit::live::LiveSettings;
use gantry_kit::reads::ReadSettings;
use gantry_kit::server::{ServerLimits, ServerTls, ServerTlsFiles};
use gantry_posts::{FeedRead, FeedSettings, PostsConfig};
use gantry_users::{ThrottleSettings, UsersConfig};

use crate::cli::{CommonArgs, FeedReadArg};

impl CommonArgs {
    pub fn database(&self) -> DatabaseSettings {
        let mut settings = DatabaseSettings::from_url_or_data_dir(
            self.database.database_url.clone(),
            &self.database.data_dir,
        );
        settings.max_connections = self.database.database_max_connections;
        settings
    }

    /// The read replica's pool settings, when `DATABASE_READ_URL` is set (same pool size
    /// as the primary's).
    pub fn read_replica(&self) -> Option<DatabaseSettings> {
        self.database_read_url.as_ref().map(|url| DatabaseSettings {
            url: url.clone(),
            max_connections: self.database.database_max_connections,
        })
    }

    pub fn reads(&self) -> ReadSettings {
        let defaults = ReadSettings::default();
        let millis =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
        ReadSettings {
            max_lag: millis(self.database_read_max_lag_ms, defaults.max_lag),
            read_your_writes: millis(self.read_your_writes_ms, defaults.read_your_writes),
            check_every: millis(self.database_read_check_ms, defaults.check_every)
                .max(Duration::from_millis(50)),
        }
    }

    pub fn keys(&self) -> KeySettings {
        KeySettings {
            private_key_pem: self.jwt_private_key.clone(),
            private_key_file: self.jwt_private_key_file.clone(),
            data_dir: self.database.data_dir.clone(),
        }
    }

    pub fn jwt(&self) -> JwtSettings {
        JwtSettings {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            access_ttl: Duration::from_secs(self.access_token_ttl_secs),
        }
    }

    pub fn users(&self) -> UsersConfig {
        UsersConfig {
            jwt: self.jwt(),
            throttle: ThrottleSettings {
                account_threshold: self.login_account_threshold.max(1),
                address_threshold: self.login_address_threshold.max(1),
                base_delay: Duration::from_millis(self.login_backoff_base_ms),
                max_delay: Duration::from_secs(self.login_backoff_max_secs),
                registrations_per_hour: self
                    .registrations_per_hour
                    .unwrap_or(ThrottleSettings::default().registrations_per_hour)
                    .max(1),
                ..ThrottleSettings::default()
            },
            trusted_proxies: self.trusted_proxies(TrustedProxies::loopback()),
            batch_delay: self.batch_delay(),
            live: self.live(),
            shared: None,
            revocations: Default::default(),
        }
    }

    pub fn posts(&self) -> PostsConfig {
        PostsConfig {
            outbox_poll_interval: Duration::from_millis(self.outbox_poll_ms.max(10)),
            trusted_proxies: self.trusted_proxies(TrustedProxies::loopback()),
            batch_delay: self.batch_delay(),
            feed: self.feed(),
            live: self.live(),
        }
    }

    pub fn feed(&self) -> FeedSettings {
        let defaults = FeedSettings::default();
        FeedSettings {
            fanout_max_followers: self
                .feed_fanout_max_followers
                .unwrap_or(defaults.fanout_max_followers),
            timeline_cap: self
                .feed_timeline_cap
                .unwrap_or(defaults.timeline_cap)
                .max(1),
            read: match self.feed_read {
                FeedReadArg::Hybrid => FeedRead::Hybrid,
                FeedReadArg::FanoutOnRead => FeedRead::FanoutOnRead,
            },
        }
    }

    /// `--trusted-proxies`, else every peer with `--trust-forwarded-for`, else `default`
    /// (nobody for the gateway, loopback for a subgraph).
    pub fn trusted_proxies(&self, default: TrustedProxies) -> TrustedProxies {
        match (
            &self.server.trusted_proxies,
            self.server.trust_forwarded_for,
        ) {
            (Some(proxies), _) => proxies.clone(),
            (None, true) => TrustedProxies::any(),
            (None, false) => default,
        }
    }

    /// The connection and request limits of a server command.
    pub fn server_limits(&self) -> ServerLimits {
        let defaults = ServerLimits::default();
        let ms = |value: Option<u64>, default: Duration| {
            value.map_or(default, |ms| Duration::from_millis(ms.max(1)))
        };
        let s = &self.server;
        ServerLimits {
            header_read_timeout: ms(s.header_read_timeout_ms, defaults.header_read_timeout),
            idle_timeout: ms(s.idle_timeout_ms, defaults.idle_timeout),
            body_read_timeout: ms(s.body_read_timeout_ms, defaults.body_read_timeout),
            request_timeout: ms(s.request_timeout_ms, defaults.request_timeout),
            max_connections: s.max_connections.unwrap_or(defaults.max_connections).max(1),
            body_bytes_in_flight: s
                .body_bytes_in_flight
                .unwrap_or(defaults.body_bytes_in_flight),
            shutdown_grace: self.shutdown_grace(),
            tls_handshake_timeout: ms(s.tls_handshake_timeout_ms, defaults.tls_handshake_timeout),
        }
    }

    /// The server's certificate and key (`--tls-cert`, `--tls-key`), loaded; `None` serves
    /// plain HTTP.
    pub fn server_tls(&self) -> anyhow::Result<Option<ServerTls>> {
        let files = ServerTlsFiles {
            cert: self.server.tls_cert.clone(),
            key: self.server.tls_key.clone(),
        };
        ServerTls::load(&files).context("loading the server's TLS certificate and key")
    }

    /// How the subgraphs' live events reach subscriptions: the relay polls as often as
    /// the outbox consumer does.
    pub fn live(&self) -> LiveSettings {
        let defaults = LiveSettings::default();
        LiveSettings {
            relay_poll_interval: Duration::from_millis(self.outbox_poll_ms.max(10)),
            per_connection: self
                .subgraph_subscriptions_per_connection
                .unwrap_or(defaults.per_connection)
                .max(1),
            per_process: self
                .subgraph_subscriptions_per_process
                .unwrap_or(defaults.per_process)
                .max(1),
            keepalive: self
                .subgraph_subscription_keepalive_secs
                .map_or(defaults.keepalive, |secs| Duration::from_secs(secs.max(1))),
            ..defaults
        }
    }

    pub fn batch_delay(&self) -> Duration {
        Duration::from_millis(self.batch_delay_ms)
    }

    pub fn startup_wait(&self) -> Duration {
        Duration::from_secs(self.server.startup_wait_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_secs)
    }
}
