//! What a request means for one site: the router turns a parsed request into a reply,
//! `files` maps normalised paths to open files under the root (cached per reactor), and
//! `autoindex` renders directory listings (on the offload pool). No sockets here.

pub mod autoindex;
pub mod files;
pub mod route;
