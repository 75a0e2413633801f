//! Whole-pipeline tests: toy supergraphs, mock subgraphs, full client responses.

mod authorization;
mod caching;
mod fuzz;
mod layout;
mod preparation;
mod requests;
mod shapes;
mod shapes_sdl;
mod users_posts;
