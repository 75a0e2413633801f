//! The data the four subgraphs answer from: a fixed catalogue of users, products and
//! reviews, made the same way on every start, so that every gateway and every run sees the
//! same answers. The review bodies are long enough that the deep query's answer is about
//! 90 KB.

use std::sync::LazyLock;

/// Users (the `accounts` subgraph; `reviews` knows their ids and usernames).
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub username: String,
    pub birthday: i32,
}

/// Products (`products`; `inventory` knows their stock).
#[derive(Debug, Clone)]
pub struct ProductRow {
    pub upc: String,
    pub name: String,
    pub price: i64,
    pub weight: i64,
    pub in_stock: bool,
}

/// Reviews (`reviews`).
#[derive(Debug, Clone)]
pub struct ReviewRow {
    pub id: String,
    pub body: String,
    pub product_upc: String,
    pub author_id: String,
}

#[derive(Debug)]
pub struct Catalogue {
    pub users: Vec<UserRow>,
    pub products: Vec<ProductRow>,
    pub reviews: Vec<ReviewRow>,
}

/// Reviews written per product.
const REVIEWS_PER_PRODUCT: usize = 2;

const PEOPLE: [(&str, &str); 6] = [
    ("Ada Lindqvist", "ada"),
    ("Bruno Okafor", "bruno"),
    ("Chiara Neri", "chiara"),
    ("Dmitri Volkov", "dmitri"),
    ("Esme Hart", "esme"),
    ("Farid Haddad", "farid"),
];

/// Name, price (cents) and weight (grams) of each product, in `topProducts` order.
const GOODS: [(&str, i64, i64); 9] = [
    ("Oak desk", 749, 180),
    ("Reading armchair", 1_450, 2_200),
    ("Walnut bookshelf", 980, 640),
    ("Copper kettle", 64, 30),
    ("Wool rug", 320, 90),
    ("Round mirror", 210, 120),
    ("Garden bench", 1_890, 3_100),
    ("Linen wardrobe", 2_350, 5_400),
    ("Wall clock", 45, 15),
];

const WORDS: [&str; 24] = [
    "sturdy",
    "arrived",
    "quickly",
    "the",
    "finish",
    "is",
    "smooth",
    "and",
    "assembly",
    "took",
    "an",
    "evening",
    "would",
    "buy",
    "again",
    "colour",
    "matches",
    "photos",
    "packaging",
    "was",
    "careful",
    "though",
    "instructions",
    "unclear",
];

pub static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::build);

impl Catalogue {
    fn build() -> Self {
        let users: Vec<UserRow> = PEOPLE
            .iter()
            .enumerate()
            .map(|(i, (name, username))| UserRow {
                id: (i + 1).to_string(),
                name: (*name).to_owned(),
                username: (*username).to_owned(),
                birthday: 631_152_000 + 86_400 * 97 * i32::try_from(i).unwrap_or(0),
            })
            .collect();
        let products: Vec<ProductRow> = GOODS
            .iter()
            .enumerate()
            .map(|(i, (name, price, weight))| ProductRow {
                upc: (i + 1).to_string(),
                name: (*name).to_owned(),
                price: *price,
                weight: *weight,
                in_stock: i % 3 != 1,
            })
            .collect();
        let mut words = Words(0x2545_f491_4f6c_dd1d);
        let reviews = (0..products.len() * REVIEWS_PER_PRODUCT)
            .map(|k| ReviewRow {
                id: (k + 1).to_string(),
                body: words.sentence(200 + (k * 37) % 260),
                product_upc: products[k / REVIEWS_PER_PRODUCT].upc.clone(),
                author_id: users[k % users.len()].id.clone(),
            })
            .collect();
        Self {
            users,
            products,
            reviews,
        }
    }

    pub fn user(&self, id: &str) -> Option<&UserRow> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn product(&self, upc: &str) -> Option<&ProductRow> {
        self.products.iter().find(|p| p.upc == upc)
    }

    pub fn review(&self, id: &str) -> Option<&ReviewRow> {
        self.reviews.iter().find(|r| r.id == id)
    }

    pub fn reviews_of_product(&self, upc: &str) -> impl Iterator<Item = &ReviewRow> {
        self.reviews.iter().filter(move |r| r.product_upc == upc)
    }

    pub fn reviews_by(&self, author_id: &str) -> impl Iterator<Item = &ReviewRow> {
        self.reviews
            .iter()
            .filter(move |r| r.author_id == author_id)
    }
}

/// A fixed pseudo-random word stream (xorshift), so the bodies are the same on every start.
struct Words(u64);

impl Words {
    fn next_index(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % WORDS.len() as u64).unwrap_or(0)
    }

    /// Words until the text is at least `len` bytes, capitalised, with a full stop.
    fn sentence(&mut self, len: usize) -> String {
        let mut text = String::with_capacity(len + 16);
        while text.len() < len {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(WORDS[self.next_index()]);
        }
        let mut chars = text.chars();
        let first = chars.next().map(|c| c.to_ascii_uppercase());
        first.into_iter().chain(chars).chain(['.']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_wrote_reviews_and_every_product_has_them() {
        let c = &*CATALOGUE;
        for user in &c.users {
            assert_eq!(c.reviews_by(&user.id).count(), 3, "{}", user.id);
        }
        for product in &c.products {
            assert_eq!(
                c.reviews_of_product(&product.upc).count(),
                REVIEWS_PER_PRODUCT
            );
        }
    }

    #[test]
    fn the_catalogue_is_the_same_on_every_build() {
        let (a, b) = (Catalogue::build(), Catalogue::build());
        let bodies = |c: &Catalogue| c.reviews.iter().map(|r| r.body.clone()).collect::<Vec<_>>();
        assert_eq!(bodies(&a), bodies(&b));
        assert!(a.reviews.iter().all(|r| r.body.len() >= 200));
    }
}
