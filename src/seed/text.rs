//! Words for seeded people and what they write: display names, bios, post and comment
//! bodies, picked from built-in lists so seeding needs no network and no data files.

use rand::Rng;
use rand::seq::SliceRandom;

/// A post body is at most this many characters (the posts subgraph's rule).
pub const POST_BODY_MAX_CHARS: usize = 2000;
/// A comment body is at most this many characters.
pub const COMMENT_BODY_MAX_CHARS: usize = 1000;
/// A bio is at most this many characters (the users subgraph's rule).
pub const BIO_MAX_CHARS: usize = 500;

const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Alice", "Amara", "Ana", "Aris", "Ben", "Bo", "Carla", "Chen", "Chloe", "Dana",
    "David", "Diego", "Elena", "Eli", "Emma", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines",
    "Ivan", "Jae", "Jamal", "Jonas", "Julia", "Kai", "Kenji", "Lara", "Leo", "Lina", "Luca",
    "Maya", "Mei", "Milo", "Nadia", "Nia", "Noah", "Olga", "Omar", "Paula", "Priya", "Quinn",
    "Rafael", "Rosa", "Sam", "Sara", "Sofia", "Tariq", "Tess", "Theo", "Uma", "Victor", "Wen",
    "Yara", "Yusuf", "Zoe", "Zain",
];

const LAST_NAMES: &[&str] = &[
    "Abbott", "Adeyemi", "Alvarez", "Andersen", "Bauer", "Becker", "Brooks", "Castillo", "Chen",
    "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Haddad", "Hansen", "Ito", "Jensen",
    "Kaur", "Kim", "Kowalski", "Larsen", "Lopez", "Mbeki", "Meyer", "Moreau", "Murphy", "Nakamura",
    "Novak", "Okafor", "Olsen", "Park", "Patel", "Perez", "Petrov", "Quinn", "Rossi", "Sato",
    "Schmidt", "Silva", "Singh", "Smith", "Tanaka", "Torres", "Unger", "Vargas", "Wagner", "Walsh",
    "Weber", "Xu", "Yamada", "Zhang",
];

const WORDS: &[&str] = &[
    "about",
    "after",
    "again",
    "almost",
    "always",
    "another",
    "anyone",
    "around",
    "back",
    "because",
    "before",
    "best",
    "better",
    "between",
    "big",
    "book",
    "bread",
    "build",
    "built",
    "busy",
    "cafe",
    "call",
    "city",
    "clean",
    "code",
    "coffee",
    "cold",
    "come",
    "cook",
    "could",
    "day",
    "deploy",
    "dinner",
    "dog",
    "done",
    "dream",
    "early",
    "easy",
    "every",
    "everyone",
    "family",
    "fast",
    "feel",
    "few",
    "film",
    "finally",
    "find",
    "first",
    "fix",
    "found",
    "friend",
    "fun",
    "game",
    "garden",
    "get",
    "good",
    "great",
    "green",
    "happy",
    "hard",
    "here",
    "hike",
    "home",
    "idea",
    "just",
    "keep",
    "kind",
    "know",
    "late",
    "learn",
    "light",
    "little",
    "long",
    "look",
    "love",
    "made",
    "make",
    "market",
    "maybe",
    "morning",
    "much",
    "music",
    "never",
    "new",
    "next",
    "nice",
    "night",
    "nothing",
    "now",
    "old",
    "only",
    "open",
    "other",
    "outside",
    "park",
    "people",
    "perfect",
    "picture",
    "plan",
    "play",
    "pretty",
    "project",
    "quick",
    "quiet",
    "rain",
    "read",
    "ready",
    "really",
    "release",
    "right",
    "river",
    "road",
    "run",
    "same",
    "school",
    "see",
    "ship",
    "short",
    "simple",
    "slow",
    "small",
    "snow",
    "some",
    "something",
    "song",
    "soon",
    "start",
    "still",
    "street",
    "summer",
    "sun",
    "sure",
    "talk",
    "tea",
    "team",
    "test",
    "thing",
    "think",
    "this",
    "time",
    "today",
    "together",
    "tomorrow",
    "tonight",
    "train",
    "tried",
    "trip",
    "true",
    "walk",
    "want",
    "warm",
    "watch",
    "water",
    "weekend",
    "well",
    "what",
    "when",
    "where",
    "while",
    "window",
    "winter",
    "with",
    "work",
    "world",
    "write",
    "year",
    "yes",
    "yesterday",
    "young",
];

const HASHTAGS: &[&str] = &[
    "#rustlang",
    "#coffee",
    "#weekend",
    "#photography",
    "#music",
    "#travel",
    "#food",
    "#books",
    "#running",
    "#gamedev",
    "#graphql",
    "#sunset",
];

const ROLES: &[&str] = &[
    "Engineer",
    "Designer",
    "Writer",
    "Photographer",
    "Runner",
    "Baker",
    "Teacher",
    "Gardener",
    "Musician",
    "Student",
    "Traveller",
    "Cyclist",
];

pub fn display_name(rng: &mut impl Rng) -> String {
    format!("{} {}", pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES))
}

/// Half of the seeded people leave their bio empty, as real ones do.
pub fn bio(rng: &mut impl Rng) -> String {
    if rng.gen_bool(0.5) {
        return String::new();
    }
    let bio = format!(
        "{}. {}",
        pick(rng, ROLES),
        sentence(rng, 3..=10).trim_end_matches('.')
    );
    truncate_at_word(bio, BIO_MAX_CHARS)
}

/// One to four sentences, sometimes with a hashtag: a few dozen to a few hundred characters.
pub fn post_body(rng: &mut impl Rng) -> String {
    let sentences = rng.gen_range(1..=4);
    let mut body = paragraph(rng, sentences, 4..=18);
    if rng.gen_bool(0.2) {
        body.push(' ');
        body.push_str(pick(rng, HASHTAGS));
    }
    truncate_at_word(body, POST_BODY_MAX_CHARS)
}

/// A short reply: one or two sentences.
pub fn comment_body(rng: &mut impl Rng) -> String {
    let sentences = rng.gen_range(1..=2);
    truncate_at_word(paragraph(rng, sentences, 2..=14), COMMENT_BODY_MAX_CHARS)
}

fn paragraph(
    rng: &mut impl Rng,
    sentences: usize,
    words: std::ops::RangeInclusive<usize>,
) -> String {
    let mut text = String::new();
    for i in 0..sentences {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(&sentence(rng, words.clone()));
    }
    text
}

fn sentence(rng: &mut impl Rng, words: std::ops::RangeInclusive<usize>) -> String {
    let count = rng.gen_range(words);
    let mut text = String::new();
    for i in 0..count {
        let word = pick(rng, WORDS);
        if i == 0 {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                text.extend(first.to_uppercase());
                text.push_str(chars.as_str());
            }
        } else {
            text.push(' ');
            text.push_str(word);
        }
    }
    text.push(if rng.gen_bool(0.15) { '!' } else { '.' });
    text
}

fn pick<'a>(rng: &mut impl Rng, list: &[&'a str]) -> &'a str {
    list.choose(rng).copied().unwrap_or_default()
}

/// Cuts `text` to at most `max` characters at a word boundary (all words are ASCII).
fn truncate_at_word(mut text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let cut = text
        .char_indices()
        .nth(max)
        .map_or(text.len(), |(index, _)| index);
    text.truncate(cut);
    if let Some(space) = text.rfind(' ') {
        text.truncate(space);
    }
    text
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn bodies_are_never_empty_and_stay_within_their_length_limits() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..5_000 {
            let post = post_body(&mut rng);
            assert!((1..=POST_BODY_MAX_CHARS).contains(&post.chars().count()));
            assert_eq!(post.trim(), post);
            let comment = comment_body(&mut rng);
            assert!((1..=COMMENT_BODY_MAX_CHARS).contains(&comment.chars().count()));
            assert!(bio(&mut rng).chars().count() <= BIO_MAX_CHARS);
        }
    }

    #[test]
    fn a_long_text_is_cut_at_a_word_boundary() {
        let text = "alpha beta gamma".to_owned();
        assert_eq!(truncate_at_word(text.clone(), 12), "alpha beta");
        assert_eq!(truncate_at_word(text.clone(), 100), text);
    }

    #[test]
    fn display_names_are_valid_for_the_users_subgraph() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let name = display_name(&mut rng);
            assert!(
                gantry_users::domain::DisplayName::parse(&name).is_ok(),
                "{name}"
            );
        }
    }
}
