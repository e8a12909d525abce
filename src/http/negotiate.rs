// TEMP STUB
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
    Zstd,
}
pub fn choose_encoding(_header: Option<&[u8]>, _offered: &[Coding]) -> Option<Coding> {
    todo!()
}
pub fn mime_matches(_mime: &str, _patterns: &[String]) -> bool {
    todo!()
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    NotModified,
    Failed,
}
pub struct Validators<'a> {
    pub etag: &'a [u8],
    pub last_modified: u64,
}
pub struct Conditionals<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
}
pub fn evaluate(_c: &Conditionals, _v: &Validators, _is_get_or_head: bool) -> Precondition {
    todo!()
}
pub fn if_range_matches(_if_range: &[u8], _v: &Validators) -> bool {
    todo!()
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}
#[derive(Debug, PartialEq, Eq)]
pub enum RangeResult {
    Ignore,
    Satisfiable,
    Unsatisfiable,
}
pub fn parse_range(
    _header: &[u8],
    _len: u64,
    _max_ranges: usize,
    _out: &mut Vec<ByteRange>,
) -> RangeResult {
    todo!()
}
pub struct Multipart {
    pub parts: Vec<(std::ops::Range<usize>, ByteRange)>,
    pub trailer: std::ops::Range<usize>,
    pub content_length: u64,
}
pub fn multipart_layout(
    _ranges: &[ByteRange],
    _len: u64,
    _content_type: &str,
    _boundary: &str,
    _heads: &mut Vec<u8>,
) -> Multipart {
    todo!()
}
