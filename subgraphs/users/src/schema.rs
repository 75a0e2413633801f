//! The users subgraph's GraphQL schema. Resolvers read the viewer, call the service and
//! convert models into the API's types; nothing else.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Object, Result, Schema};
use chrono::{DateTime, Utc};
use gantry_entities::user;
use gantry_kit::authorization::authenticated;
use gantry_kit::live::LiveDelivery;
use gantry_kit::reads::{ReadChoice, ReadRoutingExtension};
use gantry_kit::text::{Lines, refuse_control_characters};
use gantry_kit::viewer::{ClientAddr, RequireViewer, viewer_state};
use gantry_kit::{ApiError, ViewerState};
use uuid::Uuid;

use crate::live::Subscription;
use crate::loader::UserLoaders;
use crate::service::{Registration, SignedIn, UsersService};
use crate::throttle::RegistrationLimit;

pub type UsersSchema = Schema<Query, Mutation, Subscription>;

/// Builds the schema around a service. The `User` loader batches across the request (and
/// across the subscriptions delivering one event); each request's reads are routed by the
/// service's [`gantry_kit::reads::ReadRouting`]. The subscriptions read `live`'s bus and
/// hold permits of its limits.
pub fn build(
    service: Arc<UsersService>,
    registrations: RegistrationLimit,
    batch_delay: std::time::Duration,
    live: &LiveDelivery,
) -> UsersSchema {
    Schema::build(Query, Mutation, Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
        .extension(ReadRoutingExtension(service.reads().clone()))
        .data(UserLoaders::new(&service, batch_delay))
        .data(service)
        .data(registrations)
        .data(live.bus.clone())
        .data(live.limits.clone())
        .limit_depth(32)
        .limit_complexity(5_000)
        .finish()
}

fn service<'a>(ctx: &Context<'a>) -> &'a Arc<UsersService> {
    ctx.data_unchecked::<Arc<UsersService>>()
}

fn client_addr(ctx: &Context<'_>) -> IpAddr {
    ctx.data_opt::<ClientAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0)
}

fn parse_id(id: &ID) -> Option<Uuid> {
    Uuid::parse_str(id.as_str()).ok()
}

/// A person with an account.
#[derive(Debug, Clone)]
pub struct User {
    model: user::Model,
    /// Set where the user is known to be the viewer (the payload of their own sign-in).
    is_viewer: bool,
}

impl User {
    pub(crate) fn new(model: user::Model) -> Self {
        Self {
            model,
            is_viewer: false,
        }
    }
}

// Cache hint: 30 s, which also makes `_entities` fetches of users cacheable.
#[Object(cache_control(max_age = 30))]
impl User {
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }

    async fn username(&self) -> &str {
        &self.model.username
    }

    async fn display_name(&self) -> &str {
        &self.model.display_name
    }

    async fn bio(&self) -> &str {
        &self.model.bio
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }

    /// Only the user themself sees their email; everyone else gets null.
    // Not `@authenticated`: `register` and `login` answer with the user's own email to a
    // caller who has no token yet.
    #[graphql(cache_control(private))]
    async fn email(&self, ctx: &Context<'_>) -> Option<&str> {
        let is_viewer = self.is_viewer
            || viewer_state(ctx)
                .viewer()
                .is_some_and(|v| v.user_id == self.model.id);
        is_viewer.then_some(self.model.email.as_str())
    }
}

/// Tokens for a signed-in session.
#[derive(Debug)]
pub struct AuthPayload(SignedIn);

#[Object]
impl AuthPayload {
    /// A JWT for the `Authorization: Bearer` header, valid for `expiresIn` seconds.
    async fn access_token(&self) -> &str {
        &self.0.access_token
    }

    /// Exchange it with `refreshSession` for new tokens; each works once.
    async fn refresh_token(&self) -> &str {
        self.0.refresh_token.expose()
    }

    async fn expires_in(&self) -> i32 {
        i32::try_from(self.0.expires_in).unwrap_or(i32::MAX)
    }

    /// The signed-in user, who may see their own email here.
    async fn user(&self) -> User {
        User {
            model: self.0.user.clone(),
            is_viewer: true,
        }
    }
}

#[derive(Debug, InputObject)]
pub struct RegisterInput {
    pub username: String,
    pub email: String,
    pub password: String,
    pub display_name: String,
}

#[derive(Debug, InputObject)]
pub struct LoginInput {
    /// Username or email.
    pub login: String,
    pub password: String,
}

#[derive(Debug, InputObject)]
pub struct UpdateProfileInput {
    pub display_name: Option<String>,
    pub bio: Option<String>,
}

#[derive(Debug, InputObject)]
pub struct ChangePasswordInput {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Default)]
pub struct Query;

#[Object]
impl Query {
    /// The signed-in user; without a token null with `UNAUTHORIZED_FIELD_OR_TYPE`,
    /// `UNAUTHENTICATED` with a bad one. From the replica unless the viewer wrote lately.
    #[graphql(cache_control(private), directive = authenticated::apply())]
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let viewer = match viewer_state(ctx) {
            ViewerState::Anonymous => return Ok(None),
            state => state.require()?,
        };
        Ok(service(ctx)
            .profile(ReadChoice::of(ctx), viewer.user_id)
            .await?
            .map(User::new))
    }

    #[graphql(cache_control(max_age = 30))]
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let Some(id) = parse_id(&id) else {
            return Err(ApiError::bad_input("id", "`id` is not a valid user id").into());
        };
        Ok(load(ctx, id).await?)
    }

    #[graphql(cache_control(max_age = 30))]
    async fn user_by_username(&self, ctx: &Context<'_>, username: String) -> Result<Option<User>> {
        refuse_control_characters(&username, "username", "a username", Lines::Refused)?;
        Ok(service(ctx)
            .profile_by_username(ReadChoice::of(ctx), &username)
            .await?
            .map(User::new))
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        match parse_id(&id) {
            Some(id) => Ok(load(ctx, id).await?),
            None => Ok(None),
        }
    }
}

async fn load(ctx: &Context<'_>, id: Uuid) -> Result<Option<User>, ApiError> {
    Ok(ctx
        .data_unchecked::<UserLoaders>()
        .of(ReadChoice::of(ctx))
        .load_one(id)
        .await?
        .map(User::new))
}

#[derive(Debug, Default)]
pub struct Mutation;

#[Object]
impl Mutation {
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> Result<AuthPayload> {
        ctx.data_unchecked::<RegistrationLimit>()
            .admit(client_addr(ctx))
            .await?;
        let registration = Registration {
            username: input.username,
            email: input.email,
            password: input.password,
            display_name: input.display_name,
        };
        Ok(AuthPayload(service(ctx).register(registration).await?))
    }

    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<AuthPayload> {
        Ok(AuthPayload(
            service(ctx)
                .login(&input.login, &input.password, client_addr(ctx))
                .await?,
        ))
    }

    /// Rotates the session: the presented token stops working. Presenting a rotated token
    /// again revokes the whole session.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> Result<AuthPayload> {
        Ok(AuthPayload(service(ctx).refresh(&refresh_token).await?))
    }

    async fn logout(&self, ctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        Ok(service(ctx).logout(&refresh_token).await?)
    }

    #[graphql(directive = authenticated::apply())]
    async fn logout_everywhere(&self, ctx: &Context<'_>) -> Result<bool> {
        let viewer = viewer_state(ctx).require()?;
        Ok(service(ctx).logout_everywhere(viewer).await?)
    }

    #[graphql(directive = authenticated::apply())]
    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> Result<User> {
        let viewer = viewer_state(ctx).require()?;
        Ok(User {
            model: service(ctx)
                .update_profile(viewer, input.display_name, input.bio)
                .await?,
            is_viewer: true,
        })
    }

    /// Ends every other session of the user.
    #[graphql(directive = authenticated::apply())]
    async fn change_password(&self, ctx: &Context<'_>, input: ChangePasswordInput) -> Result<bool> {
        let viewer = viewer_state(ctx).require()?;
        Ok(service(ctx)
            .change_password(
                viewer,
                &input.current_password,
                &input.new_password,
                client_addr(ctx),
            )
            .await?)
    }

    #[graphql(directive = authenticated::apply())]
    async fn delete_account(&self, ctx: &Context<'_>, password: String) -> Result<bool> {
        let viewer = viewer_state(ctx).require()?;
        Ok(service(ctx)
            .delete_account(viewer, &password, client_addr(ctx))
            .await?)
    }
}
