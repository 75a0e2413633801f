//! Toy subgraphs covering composite keys, `@requires` with nested selections, `@provides`,
//! interfaces and unions.

pub const FED: &str = r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", "@shareable", "@external", "@requires", "@provides"])"#;

pub const PRODUCTS: &str = r#"
type Query { topProducts: [Product]! search: [SearchResult!]! node(id: ID!): Node }
interface Node { id: ID! }
type Product implements Node @key(fields: "upc") @key(fields: "sku region { code }") {
  id: ID! upc: String! sku: String! region: Region! name: String price: Int weight: Int dims: Dims
}
type Region @shareable { code: String! }
type Dims @shareable { width: Int height: Int }
type Book implements Node { id: ID! title: String }
union SearchResult = Product | Book
"#;

pub const SHIPPING: &str = r#"
type Product @key(fields: "upc") {
  upc: String!
  price: Int @external
  weight: Int @external
  dims: Dims @external
  shippingEstimate: Int @requires(fields: "price weight dims { width height }")
}
type Dims @shareable { width: Int height: Int }
"#;

pub const INVENTORY: &str = r#"
type Product @key(fields: "sku region { code }") { sku: String! region: Region! inStock: Boolean! }
type Region @shareable { code: String! }
"#;

pub const REVIEWS: &str = r#"
type Query { latestReviews: [Review!]! }
type Review { body: String! author: User @provides(fields: "username") }
type User @key(fields: "id") { id: ID! username: String @external }
"#;

pub const ACCOUNTS: &str = r#"
type User @key(fields: "id") { id: ID! username: String email: String }
"#;

pub fn sdl(body: &str) -> String {
    format!("{FED}\n{body}")
}
