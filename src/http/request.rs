// TEMP STUB
use super::{HttpError, Method, Span, Version};
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}
#[derive(Clone, Copy, Debug)]
pub struct RequestHead {
    pub method: Method,
    pub method_span: Span,
    pub version: Version,
    pub target: Span,
    pub path: Span,
    pub query: Option<Span>,
    pub head_len: usize,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub host: Option<Span>,
    pub accept_encoding: Option<Span>,
    pub if_none_match: Option<Span>,
    pub if_match: Option<Span>,
    pub if_modified_since: Option<Span>,
    pub if_unmodified_since: Option<Span>,
    pub range: Option<Span>,
    pub if_range: Option<Span>,
    pub user_agent: Option<Span>,
    pub referer: Option<Span>,
}
pub fn parse(_buf: &[u8], _limits: &Limits) -> Result<Option<RequestHead>, HttpError> {
    todo!()
}
#[derive(Debug, Default)]
pub struct ChunkedDecoder {}
impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {}
    }
    pub fn feed(&mut self, _input: &[u8], _limits: &Limits) -> Result<(usize, bool), HttpError> {
        todo!()
    }
}
