//! The generator: everything a seed run will write, decided up front from one random
//! seed, with no database involved (so it is unit-tested and deterministic).
//!
//! The shapes follow what social data looks like:
//! - **Follows**: each account follows a skewed number of others (5–200, median ≈ 11,
//!   mean ≈ 37), and whom it follows is drawn from a Zipf law over a random popularity
//!   ranking, so a few accounts are followed by nearly everyone and most by a handful.
//! - **Posts**: authors are drawn by a Pareto-distributed activity weight, so the mean is
//!   exactly `posts_per_user` while many write little and a few write a lot; posts get
//!   denser towards the present over the 90-day window.
//! - **Comments and likes** (≈2 and ≈5 per post): posts are drawn in proportion to their
//!   author's follower count, so popular accounts collect most of them; the commenter or
//!   liker is usually one of the author's followers. Each like is a distinct (post, user)
//!   pair and nobody likes their own post.

use std::collections::HashSet;

use rand::distributions::WeightedIndex;
use rand::prelude::*;
use rand::rngs::StdRng;

use super::text;
use super::timeline::{ACTIVITY_DAYS, DAY_MS, IdBits, Offset, SIGNUP_DAYS};

/// Zipf exponent of followee popularity: ~1 is what follower graphs show; below 1 the top
/// accounts saturate (followed by almost everyone) a little less quickly.
const POPULARITY_EXPONENT: f64 = 0.9;
/// Bounds of how many accounts one account follows.
const MIN_FOLLOWING: usize = 5;
const MAX_FOLLOWING: usize = 200;
/// Shape of the following count: `MIN + (MAX - MIN) * u^k`; larger `k`, longer tail.
const FOLLOWING_SKEW: i32 = 5;
/// Cap on one account's posting weight (Pareto, α = 2, mean 2), so one account cannot
/// write a large share of everything.
const MAX_ACTIVITY: f64 = 100.0;
const COMMENTS_PER_POST: usize = 2;
const LIKES_PER_POST: usize = 5;
/// How an engagement picks its actor: the author's follower, else anyone.
const FOLLOWER_SHARE: f64 = 0.8;
/// Share of comments the post's author writes (replies in their own thread).
const AUTHOR_REPLY_SHARE: f64 = 0.1;

const ACTIVITY_MS: u64 = ACTIVITY_DAYS * DAY_MS;
const SIGNUP_MS: u64 = SIGNUP_DAYS * DAY_MS;

/// What to seed. Usernames and emails are derived from `seed`, so two seeds never collide
/// and rerunning one seed finds its own rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedOptions {
    pub users: u32,
    pub posts_per_user: u32,
    pub seed: u64,
}

/// `s{seed}_u{index}`: lowercase `[a-z0-9_]`, valid for the users subgraph up to 30
/// characters (checked by [`SeedOptions::longest_username`]).
pub fn username(seed: u64, index: usize) -> String {
    format!("s{seed}_u{index}")
}

/// `s{seed}_u{index}@seed.gantry.test`: `.test` is reserved, so no mail ever leaves.
pub fn email(seed: u64, index: usize) -> String {
    format!("{}@seed.gantry.test", username(seed, index))
}

impl SeedOptions {
    /// The username of the last seeded user, the longest one.
    pub fn longest_username(&self) -> String {
        username(self.seed, self.users.saturating_sub(1) as usize)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUser {
    pub created: Offset,
    pub id: IdBits,
    pub display_name: String,
    pub bio: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFollow {
    pub follower: u32,
    pub followee: u32,
    pub at: Offset,
    pub id: IdBits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPost {
    pub author: u32,
    pub at: Offset,
    pub id: IdBits,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedComment {
    /// Index into [`Plan::posts`].
    pub post: u32,
    pub author: u32,
    pub at: Offset,
    pub id: IdBits,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLike {
    /// Index into [`Plan::posts`].
    pub post: u32,
    pub user: u32,
    pub at: Offset,
}

/// Every row of one seed run. Users are indexed by their number in the username; posts,
/// comments and follows are sorted oldest first (so ids arrive in index order), likes by
/// post.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub users: Vec<PlannedUser>,
    pub follows: Vec<PlannedFollow>,
    pub posts: Vec<PlannedPost>,
    pub comments: Vec<PlannedComment>,
    pub likes: Vec<PlannedLike>,
}

impl Plan {
    pub fn generate(options: &SeedOptions) -> Self {
        // One stream per phase, so a change in how one phase draws leaves the others alone.
        let mut streams = StdRng::seed_from_u64(options.seed);
        let mut phase = || StdRng::seed_from_u64(streams.next_u64());
        let (mut users_rng, mut follows_rng, mut posts_rng) = (phase(), phase(), phase());
        let (mut comments_rng, mut likes_rng) = (phase(), phase());

        let users = plan_users(&mut users_rng, options.users as usize);
        let follows = plan_follows(&mut follows_rng, users.len());
        let followers = followers_of(&follows, users.len());
        let posts = plan_posts(&mut posts_rng, users.len(), options.posts_per_user);
        let audience = Audience::new(&posts, &followers);
        let comments = plan_comments(&mut comments_rng, &posts, &audience);
        let likes = plan_likes(&mut likes_rng, &posts, &audience);
        Self {
            users,
            follows,
            posts,
            comments,
            likes,
        }
    }
}

fn plan_users(rng: &mut StdRng, count: usize) -> Vec<PlannedUser> {
    (0..count)
        .map(|_| PlannedUser {
            created: ACTIVITY_MS + rng.gen_range(0..SIGNUP_MS),
            id: rng.r#gen(),
            display_name: text::display_name(rng),
            bio: text::bio(rng),
        })
        .collect()
}

fn plan_follows(rng: &mut StdRng, users: usize) -> Vec<PlannedFollow> {
    let Some(popularity) = zipf(users) else {
        return Vec::new();
    };
    // Popularity rank → user, shuffled so the celebrities are not simply the first users.
    let mut ranked: Vec<u32> = (0..users).map(index_u32).collect();
    ranked.shuffle(rng);

    let mut follows = Vec::new();
    let mut chosen = HashSet::new();
    for follower in 0..users {
        let follower = index_u32(follower);
        let wanted = following_count(rng, users);
        let mut attempts = 4 * wanted + 20;
        chosen.clear();
        while chosen.len() < wanted && attempts > 0 {
            attempts -= 1;
            let followee = ranked[popularity.sample(rng)];
            if followee != follower && chosen.insert(followee) {
                follows.push(PlannedFollow {
                    follower,
                    followee,
                    at: rng.gen_range(0..ACTIVITY_MS),
                    id: rng.r#gen(),
                });
            }
        }
    }
    oldest_first(&mut follows, |follow| follow.at);
    follows
}

/// 5–200 (fewer when there are not that many others), most near the bottom.
fn following_count(rng: &mut StdRng, users: usize) -> usize {
    let spread = (MAX_FOLLOWING - MIN_FOLLOWING) as f64;
    let count = MIN_FOLLOWING + (spread * rng.r#gen::<f64>().powi(FOLLOWING_SKEW)) as usize;
    count.min(users.saturating_sub(1))
}

fn plan_posts(rng: &mut StdRng, users: usize, per_user: u32) -> Vec<PlannedPost> {
    // Pareto (α = 2) activity weights: many quiet accounts, a few prolific ones.
    let activity: Vec<f64> = (0..users)
        .map(|_| (1.0 - rng.r#gen::<f64>()).powf(-0.5).min(MAX_ACTIVITY))
        .collect();
    let Ok(authors) = WeightedIndex::new(&activity) else {
        return Vec::new();
    };
    let total = users * per_user as usize;
    let mut posts: Vec<PlannedPost> = (0..total)
        .map(|_| {
            // Density falls linearly from now back to the window's start: twice as many
            // posts today as 90 days ago.
            let back = 1.0 - (1.0 - rng.r#gen::<f64>()).sqrt();
            PlannedPost {
                author: index_u32(authors.sample(rng)),
                at: (ACTIVITY_MS as f64 * back) as Offset,
                id: rng.r#gen(),
                body: text::post_body(rng),
            }
        })
        .collect();
    oldest_first(&mut posts, |post| post.at);
    posts
}

/// Who engages with which post: posts drawn by their author's follower count, actors
/// drawn from the author's followers.
struct Audience<'a> {
    posts: Option<WeightedIndex<f64>>,
    followers: &'a [Vec<u32>],
    authors: Vec<u32>,
}

impl<'a> Audience<'a> {
    fn new(posts: &[PlannedPost], followers: &'a [Vec<u32>]) -> Self {
        let weights = posts
            .iter()
            .map(|post| (followers[post.author as usize].len() + 1) as f64);
        Self {
            posts: WeightedIndex::new(weights).ok(),
            followers,
            authors: posts.iter().map(|post| post.author).collect(),
        }
    }

    fn post(&self, rng: &mut StdRng) -> Option<usize> {
        self.posts.as_ref().map(|posts| posts.sample(rng))
    }

    /// One of the author's followers most of the time, else anyone.
    fn actor(&self, rng: &mut StdRng, post: usize) -> u32 {
        let followers = &self.followers[self.authors[post] as usize];
        match followers.choose(rng) {
            Some(&follower) if rng.gen_bool(FOLLOWER_SHARE) => follower,
            _ => index_u32(rng.gen_range(0..self.followers.len())),
        }
    }
}

fn plan_comments(
    rng: &mut StdRng,
    posts: &[PlannedPost],
    audience: &Audience<'_>,
) -> Vec<PlannedComment> {
    let mut comments = Vec::with_capacity(posts.len() * COMMENTS_PER_POST);
    for _ in 0..posts.len() * COMMENTS_PER_POST {
        let Some(post) = audience.post(rng) else {
            break;
        };
        let author = if rng.gen_bool(AUTHOR_REPLY_SHARE) {
            posts[post].author
        } else {
            audience.actor(rng, post)
        };
        comments.push(PlannedComment {
            post: index_u32(post),
            author,
            at: reaction_time(rng, posts[post].at),
            id: rng.r#gen(),
            body: text::comment_body(rng),
        });
    }
    oldest_first(&mut comments, |comment| comment.at);
    comments
}

fn plan_likes(
    rng: &mut StdRng,
    posts: &[PlannedPost],
    audience: &Audience<'_>,
) -> Vec<PlannedLike> {
    let wanted = posts.len() * LIKES_PER_POST;
    let mut likes = Vec::with_capacity(wanted);
    let mut seen = HashSet::with_capacity(wanted);
    let mut attempts = 3 * wanted;
    while likes.len() < wanted && attempts > 0 {
        attempts -= 1;
        let Some(post) = audience.post(rng) else {
            break;
        };
        let user = audience.actor(rng, post);
        if user != posts[post].author && seen.insert((post, user)) {
            likes.push(PlannedLike {
                post: index_u32(post),
                user,
                at: reaction_time(rng, posts[post].at),
            });
        }
    }
    likes.sort_by_key(|like| (like.post, like.user));
    likes
}

/// After the post (at least a millisecond later when there is room), mostly soon after.
fn reaction_time(rng: &mut StdRng, post_at: Offset) -> Offset {
    if post_at == 0 {
        return 0;
    }
    let delay = 1 + ((post_at - 1) as f64 * rng.r#gen::<f64>().powi(4)) as Offset;
    post_at - delay.min(post_at)
}

fn followers_of(follows: &[PlannedFollow], users: usize) -> Vec<Vec<u32>> {
    let mut followers = vec![Vec::new(); users];
    for follow in follows {
        followers[follow.followee as usize].push(follow.follower);
    }
    followers
}

/// Zipf weights over popularity ranks; `None` when there is nobody to follow.
fn zipf(users: usize) -> Option<WeightedIndex<f64>> {
    let weights = (1..=users).map(|rank| (rank as f64).powf(-POPULARITY_EXPONENT));
    WeightedIndex::new(weights).ok()
}

/// Sorts by time, oldest (largest offset) first; stable, so still deterministic.
fn oldest_first<T>(rows: &mut [T], at: impl Fn(&T) -> Offset) {
    rows.sort_by_key(|row| std::cmp::Reverse(at(row)));
}

/// Seeded counts are `u32` by construction (`--users` is a `u32`; posts, comments and likes
/// are indexed within `u32` for any size that fits in memory).
fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(users: u32, posts_per_user: u32, seed: u64) -> SeedOptions {
        SeedOptions {
            users,
            posts_per_user,
            seed,
        }
    }

    fn follower_counts(plan: &Plan) -> Vec<usize> {
        let mut counts = vec![0; plan.users.len()];
        for follow in &plan.follows {
            counts[follow.followee as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        counts
    }

    #[test]
    fn the_same_seed_plans_the_same_rows() {
        let first = Plan::generate(&options(300, 4, 42));
        let second = Plan::generate(&options(300, 4, 42));
        assert_eq!(first, second);
        let other = Plan::generate(&options(300, 4, 43));
        assert_ne!(first.follows, other.follows);
        assert_ne!(first.posts, other.posts);
    }

    #[test]
    fn the_top_percent_of_accounts_has_far_more_followers_than_the_median() {
        let plan = Plan::generate(&options(2_000, 1, 1));
        let counts = follower_counts(&plan);
        let top = &counts[..counts.len() / 100];
        let top_mean = top.iter().sum::<usize>() as f64 / top.len() as f64;
        let median = counts[counts.len() / 2] as f64;
        assert!(
            top_mean > 20.0 * median.max(1.0),
            "top 1% mean {top_mean}, median {median}"
        );
    }

    #[test]
    fn following_counts_are_skewed_between_five_and_two_hundred() {
        let plan = Plan::generate(&options(2_000, 1, 3));
        let mut following = vec![0usize; plan.users.len()];
        for follow in &plan.follows {
            following[follow.follower as usize] += 1;
        }
        assert!(following.iter().all(|&n| n <= MAX_FOLLOWING));
        let at_least_min = following.iter().filter(|&&n| n >= MIN_FOLLOWING).count();
        assert!(at_least_min > following.len() * 99 / 100);
        following.sort_unstable();
        let median = following[following.len() / 2];
        let mean = plan.follows.len() / following.len();
        assert!(median < mean, "median {median}, mean {mean}");
        assert!(following[following.len() - 1] > 150);
    }

    #[test]
    fn nobody_follows_themselves_and_no_pair_repeats() {
        let plan = Plan::generate(&options(500, 1, 9));
        let mut pairs = HashSet::new();
        for follow in &plan.follows {
            assert_ne!(follow.follower, follow.followee);
            assert!(pairs.insert((follow.follower, follow.followee)));
        }
    }

    #[test]
    fn a_tiny_seed_still_plans_valid_rows() {
        for users in 0..4 {
            let plan = Plan::generate(&options(users, 2, 5));
            assert_eq!(plan.users.len(), users as usize);
            assert_eq!(plan.posts.len(), 2 * users as usize);
            assert!(plan.follows.iter().all(|f| f.follower != f.followee));
        }
    }

    #[test]
    fn posts_average_the_requested_count_and_some_authors_write_far_more() {
        let plan = Plan::generate(&options(1_000, 10, 2));
        assert_eq!(plan.posts.len(), 10_000);
        let mut per_author = vec![0usize; plan.users.len()];
        for post in &plan.posts {
            per_author[post.author as usize] += 1;
        }
        per_author.sort_unstable();
        assert!(per_author[per_author.len() - 1] > 5 * per_author[per_author.len() / 2]);
    }

    #[test]
    fn popular_authors_collect_several_times_their_share_of_likes_and_comments() {
        let plan = Plan::generate(&options(1_000, 5, 4));
        let counts = follower_counts(&plan);
        let threshold = counts[counts.len() / 10];
        let mut followers = vec![0usize; plan.users.len()];
        for follow in &plan.follows {
            followers[follow.followee as usize] += 1;
        }
        let popular = |post: u32| followers[plan.posts[post as usize].author as usize] > threshold;
        let popular_posts = plan
            .posts
            .iter()
            .filter(|p| followers[p.author as usize] > threshold);
        let popular_share = popular_posts.count() as f64 / plan.posts.len() as f64;
        let liked_share =
            plan.likes.iter().filter(|l| popular(l.post)).count() as f64 / plan.likes.len() as f64;
        let commented_share = plan.comments.iter().filter(|c| popular(c.post)).count() as f64
            / plan.comments.len() as f64;
        // Popular authors write about their tenth of the posts but collect several times
        // that share of the likes and comments (≈60% at 10,000 users, ≈40% here).
        assert!(popular_share < 0.2, "popular authors wrote {popular_share}");
        assert!(
            liked_share > 3.0 * popular_share,
            "popular authors got {liked_share} of likes for {popular_share} of posts"
        );
        assert!(
            commented_share > 3.0 * popular_share,
            "popular authors got {commented_share} of comments for {popular_share} of posts"
        );
    }

    #[test]
    fn likes_are_distinct_pairs_and_nobody_likes_their_own_post() {
        let plan = Plan::generate(&options(300, 5, 6));
        let mut pairs = HashSet::new();
        for like in &plan.likes {
            assert_ne!(like.user, plan.posts[like.post as usize].author);
            assert!(pairs.insert((like.post, like.user)));
        }
        // ≈5 per post, a little less when popular posts run out of new likers.
        assert!(plan.likes.len() > 4 * plan.posts.len());
        assert_eq!(plan.comments.len(), 2 * plan.posts.len());
    }

    #[test]
    fn everything_happens_after_signup_and_reactions_after_their_post() {
        let plan = Plan::generate(&options(300, 5, 8));
        assert!(plan.users.iter().all(|u| u.created >= ACTIVITY_MS));
        assert!(plan.posts.iter().all(|p| p.at < ACTIVITY_MS));
        assert!(plan.follows.iter().all(|f| f.at < ACTIVITY_MS));
        for comment in &plan.comments {
            assert!(comment.at < plan.posts[comment.post as usize].at);
        }
        for like in &plan.likes {
            assert!(like.at < plan.posts[like.post as usize].at);
        }
        assert!(plan.posts.windows(2).all(|w| w[0].at >= w[1].at));
    }

    #[test]
    fn bodies_stay_within_their_length_limits() {
        let plan = Plan::generate(&options(200, 5, 10));
        for post in &plan.posts {
            assert!((1..=text::POST_BODY_MAX_CHARS).contains(&post.body.chars().count()));
        }
        for comment in &plan.comments {
            assert!((1..=text::COMMENT_BODY_MAX_CHARS).contains(&comment.body.chars().count()));
        }
    }

    #[test]
    fn seeded_usernames_and_emails_are_valid_accounts() {
        let options = options(10_000, 1, 123_456);
        for index in [0, 9_999] {
            let name = username(options.seed, index);
            let parsed = gantry_users::domain::Username::parse(&name).expect("valid username");
            assert_eq!(parsed.as_str(), name);
            assert!(gantry_users::domain::Email::parse(&email(options.seed, index)).is_ok());
        }
        assert_eq!(options.longest_username(), "s123456_u9999");
    }
}
