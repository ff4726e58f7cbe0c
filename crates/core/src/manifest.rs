//! Reading manifests: files, directories and stdin; multi-document YAML, JSON streams and
//! `kind: List`. Every failure becomes an [`InputError`] naming file, document, line and field,
//! and never stops the other documents from being read.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

/// Largest input read by default: far above any real manifest (the API server stores objects
/// of at most 1.5 MiB) and above a 10,000-VM stream, but a bound on memory all the same.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 32 * 1024 * 1024;

/// Name used for standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub file: Arc<str>,
    /// 1-based index among the non-empty documents of the file.
    pub document: usize,
    /// 0-based index in `items` when the document is a `kind: List`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// 1-based line where the document starts.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One Kubernetes object read from the input.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    pub value: Value,
}

impl Document {
    pub fn kind(&self) -> Option<&str> {
        self.value.get("kind").and_then(Value::as_str)
    }

    pub fn api_version(&self) -> Option<&str> {
        self.value.get("apiVersion").and_then(Value::as_str)
    }

    /// `kubevirt.io/v1` (or the older `v1alpha3`, still served) `VirtualMachine`.
    pub fn is_virtual_machine(&self) -> bool {
        self.kind() == Some("VirtualMachine")
            && matches!(
                self.api_version(),
                Some("kubevirt.io/v1" | "kubevirt.io/v1alpha3")
            )
    }
}

/// Input that could not be read or understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct InputError {
    pub file: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The field at fault, as KubeVirt writes paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for InputError {
    /// `vm.yaml: document 2 (line 14): spec.running: invalid type: ...`, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(document) = self.document {
            write!(f, ": document {document}")?;
            if let Some(item) = self.item {
                write!(f, " item {item}")?;
            }
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(
            f,
            ": {}",
            crate::rules::finding::one_line(&self.message, 400)
        )
    }
}

impl InputError {
    pub fn file(file: &Arc<str>, message: impl Into<String>) -> Self {
        InputError {
            file: file.clone(),
            document: None,
            item: None,
            line: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn in_document(source: &Source, field: Option<String>, message: impl Into<String>) -> Self {
        InputError {
            file: source.file.clone(),
            document: Some(source.document),
            item: source.item,
            line: Some(source.line),
            field,
            message: message.into(),
        }
    }
}

pub type Parsed = Result<Document, InputError>;

/// Limits on reading.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub max_input_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// Reads a path given on the command line: `-` is stdin, a directory is walked for `*.yaml`,
/// `*.yml` and `*.json` (sorted, hidden entries skipped), anything else is read as a file.
pub fn read_path(path: &Path, options: ReadOptions) -> Vec<Parsed> {
    if path.as_os_str() == "-" {
        let file: Arc<str> = Arc::from(STDIN_NAME);
        return read_bounded(&file, std::io::stdin().lock(), options);
    }
    if path.is_dir() {
        return manifest_files(path)
            .into_iter()
            .flat_map(|entry| match entry {
                Ok(file) => read_file(&file, options),
                Err(err) => vec![Err(err)],
            })
            .collect();
    }
    read_file(path, options)
}

fn manifest_files(dir: &Path) -> Vec<Result<PathBuf, InputError>> {
    let is_hidden = |entry: &walkdir::DirEntry| {
        entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.')
    };
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !is_hidden(e))
        .filter_map(|entry| match entry {
            Ok(entry) => {
                // Links are followed to files (a ConfigMap volume is all links); a broken
                // link is read, so that it is reported instead of silently skipped.
                let file_like = entry.file_type().is_file()
                    || (entry.file_type().is_symlink() && !entry.path().is_dir());
                let manifest = file_like
                    && matches!(
                        entry.path().extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    );
                manifest.then(|| Ok(entry.into_path()))
            }
            Err(err) => {
                let name = err
                    .path()
                    .map_or_else(|| dir.display().to_string(), |p| p.display().to_string());
                Some(Err(InputError::file(
                    &Arc::from(name),
                    format!("cannot read: {err}"),
                )))
            }
        })
        .collect()
}

fn too_large(file: &Arc<str>, size: Option<u64>, options: ReadOptions) -> InputError {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let size = size.map_or_else(String::new, |s| format!(" ({:.1} MiB)", mib(s)));
    InputError::file(
        file,
        format!(
            "input{size} is above the limit of {:.1} MiB (--max-input-bytes)",
            mib(options.max_input_bytes)
        ),
    )
}

pub fn read_file(path: &Path, options: ReadOptions) -> Vec<Parsed> {
    let file: Arc<str> = Arc::from(path.display().to_string());
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(err) => return vec![Err(InputError::file(&file, format!("cannot read: {err}")))],
    };
    if size > options.max_input_bytes {
        return vec![Err(too_large(&file, Some(size), options))];
    }
    // The size is checked again while reading: devices, FIFOs and /proc files say 0.
    match std::fs::File::open(path) {
        Ok(reader) => read_bounded(&file, reader, options),
        Err(err) => vec![Err(InputError::file(&file, format!("cannot read: {err}")))],
    }
}

/// Reads at most the limit (and one byte more, to know the input is larger), then parses.
fn read_bounded(file: &Arc<str>, reader: impl Read, options: ReadOptions) -> Vec<Parsed> {
    let mut bytes = Vec::new();
    let limit = options.max_input_bytes.saturating_add(1);
    match reader.take(limit).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 > options.max_input_bytes => {
            vec![Err(too_large(file, None, options))]
        }
        Ok(_) => parse_bytes(file, &bytes),
        Err(err) => vec![Err(InputError::file(file, format!("cannot read: {err}")))],
    }
}

/// Parses manifest bytes: UTF-8 text holding YAML documents or a JSON stream. Bytes that are
/// not UTF-8 make an error for the document that holds them; the other documents are read.
pub fn parse_bytes(file: &Arc<str>, bytes: &[u8]) -> Vec<Parsed> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let err = match std::str::from_utf8(bytes) {
        Ok(text) => return parse_text(file, text),
        Err(err) => err,
    };
    let mut out = Vec::new();
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        // A JSON stream cannot go past the bad byte: read the values before it.
        let valid = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default();
        let (documents, stopped) = parse_json_stream(file, valid, true, &mut out);
        if !stopped {
            out.push(Err(not_utf8(
                file,
                documents + 1,
                line_at(valid, valid.len()),
                valid.len(),
            )));
        }
        return out;
    }
    parse_yaml_documents(file, bytes, &mut out);
    out
}

fn not_utf8(file: &Arc<str>, document: usize, line: usize, offset: usize) -> InputError {
    InputError {
        file: file.clone(),
        document: Some(document),
        item: None,
        line: Some(line),
        field: None,
        message: format!("not UTF-8 text (invalid byte at offset {offset}): is this a manifest?"),
    }
}

/// Parses manifest text. A text whose first character is `{` or `[` is read as JSON (one or
/// more values); anything else as YAML documents split on `---` lines, as kubectl splits them.
pub fn parse_text(file: &Arc<str>, text: &str) -> Vec<Parsed> {
    let mut out = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with(['{', '[']) {
        parse_json_stream(file, text, false, &mut out);
    } else {
        parse_yaml_documents(file, text.as_bytes(), &mut out);
    }
    out
}

/// Parses YAML documents; a document that is not UTF-8 is an error of its own.
fn parse_yaml_documents(file: &Arc<str>, bytes: &[u8], out: &mut Vec<Parsed>) {
    let chunks = split_yaml(bytes);
    // An empty `List` (kubectl's answer when nothing matches) is a document; no document at
    // all is not a manifest.
    if chunks.is_empty() {
        out.push(Err(InputError::file(
            file,
            "no documents: the input is empty or holds only comments",
        )));
    }
    for chunk in chunks {
        let source = Source {
            file: file.clone(),
            document: chunk.index,
            item: None,
            line: chunk.first_content_line,
        };
        let text = match std::str::from_utf8(chunk.bytes) {
            Ok(text) => text,
            Err(err) => {
                let valid = &chunk.bytes[..err.valid_up_to()];
                let line = chunk.start_line + valid.iter().filter(|b| **b == b'\n').count();
                out.push(Err(not_utf8(
                    file,
                    chunk.index,
                    line,
                    chunk.offset + err.valid_up_to(),
                )));
                continue;
            }
        };
        match parse_yaml_chunk(text, chunk.start_line) {
            Ok(value) => push_objects(source, value, out),
            Err((line, message)) => out.push(Err(InputError {
                line: Some(line),
                ..InputError::in_document(&source, None, message)
            })),
        }
    }
}

/// Returns how many documents the stream held (good or bad), and whether it stopped at a
/// syntax error. A `truncated` text (cut before a byte that is not UTF-8) may end inside a
/// value: the caller reports that value.
fn parse_json_stream(
    file: &Arc<str>,
    text: &str,
    truncated: bool,
    out: &mut Vec<Parsed>,
) -> (usize, bool) {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut index = 0;
    loop {
        let offset = stream.byte_offset();
        let line = line_at(text, offset + leading_whitespace(&text[offset..]));
        match stream.next() {
            None => break,
            Some(Err(err)) if truncated && err.is_eof() => break,
            Some(Ok(value)) => {
                index += 1;
                let source = Source {
                    file: file.clone(),
                    document: index,
                    item: None,
                    line,
                };
                push_objects(source, value, out);
            }
            Some(Err(err)) => {
                index += 1;
                out.push(Err(InputError {
                    file: file.clone(),
                    document: Some(index),
                    item: None,
                    line: Some(err.line()),
                    field: None,
                    message: format!("invalid JSON: {err}"),
                }));
                // A JSON stream cannot resynchronise after a syntax error.
                return (index, true);
            }
        }
    }
    (index, false)
}

fn leading_whitespace(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// One YAML document's bytes and where they sit in the file.
struct Chunk<'a> {
    bytes: &'a [u8],
    index: usize,
    /// Byte offset of the chunk in the input.
    offset: usize,
    /// Line of the chunk's first line (for parser line numbers).
    start_line: usize,
    /// Line of its first non-blank, non-comment line (for messages).
    first_content_line: usize,
}

/// Splits on lines that are `---`, optionally followed by spaces or a comment (kubectl's rule).
/// Empty documents (blank or comments only), such as a leading `---`, are dropped.
fn split_yaml(bytes: &[u8]) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut index = 0;
    let mut offset = 0;
    let mut line_number = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        line_number += 1;
        let is_separator = line.strip_prefix(b"---").is_some_and(|rest| {
            std::str::from_utf8(rest).is_ok_and(|rest| {
                let rest = rest.trim();
                rest.is_empty() || rest.starts_with('#')
            })
        });
        if is_separator {
            if let Some(chunk) = content_chunk(bytes, start..offset, start_line, &mut index) {
                chunks.push(chunk);
            }
            start = offset + line.len();
            start_line = line_number + 1;
        }
        offset += line.len();
    }
    if let Some(chunk) = content_chunk(bytes, start..bytes.len(), start_line, &mut index) {
        chunks.push(chunk);
    }
    chunks
}

fn content_chunk<'a>(
    bytes: &'a [u8],
    range: std::ops::Range<usize>,
    start_line: usize,
    index: &mut usize,
) -> Option<Chunk<'a>> {
    let offset = range.start;
    let bytes = &bytes[range];
    let is_content = |line: &str| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#') && line != "..."
    };
    let first_content = match std::str::from_utf8(bytes) {
        Ok(text) => text.lines().position(is_content)?,
        // Bytes that are not UTF-8 make a document, even in a comment: they are reported.
        Err(_) => String::from_utf8_lossy(bytes)
            .lines()
            .position(is_content)
            .unwrap_or(0),
    };
    *index += 1;
    Some(Chunk {
        bytes,
        index: *index,
        offset,
        start_line,
        first_content_line: start_line + first_content,
    })
}

/// Parses one YAML document; on failure returns the file line and a one-line message.
fn parse_yaml_chunk(text: &str, start_line: usize) -> Result<Value, (usize, String)> {
    serde_saphyr::from_str::<Value>(text).map_err(|err| {
        let message = err.without_snippet().to_string();
        match err.location() {
            Some(location) => {
                let line = start_line + location.line() as usize - 1;
                // The parser says where in the document; say where in the file instead.
                let message = match message.rfind(" at line ") {
                    Some(cut) => message[..cut].to_string(),
                    None => message,
                };
                (
                    line,
                    format!("invalid YAML at column {}: {message}", location.column()),
                )
            }
            None => (start_line, format!("invalid YAML: {message}")),
        }
    })
}

/// Turns a parsed document into objects: the document itself, or each item of a `List`.
fn push_objects(source: Source, value: Value, out: &mut Vec<Parsed>) {
    let Value::Object(map) = &value else {
        out.push(Err(InputError::in_document(
            &source,
            None,
            format!(
                "expected a Kubernetes object (a mapping), found {}",
                json_type(&value)
            ),
        )));
        return;
    };
    let is_list = map
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && map.get("items").is_some();
    if !is_list {
        out.push(Ok(Document { source, value }));
        return;
    }
    let Some(Value::Array(items)) = map.get("items") else {
        out.push(Err(InputError::in_document(
            &source,
            Some("items".into()),
            format!(
                "expected a list of objects, found {}",
                json_type(&value["items"])
            ),
        )));
        return;
    };
    for (index, item) in items.iter().enumerate() {
        let item_source = Source {
            item: Some(index),
            ..source.clone()
        };
        if item.is_object() {
            out.push(Ok(Document {
                source: item_source,
                value: item.clone(),
            }));
        } else {
            out.push(Err(InputError::in_document(
                &item_source,
                Some(format!("items[{index}]")),
                format!("expected a Kubernetes object, found {}", json_type(item)),
            )));
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Parsed> {
        parse_text(&Arc::from("vm.yaml"), text)
    }

    #[test]
    fn splits_documents_and_numbers_lines() {
        let docs = parse("---\n# c\nkind: A\n---\n\n---   # x\nkind: B\nx: 1\n");
        let docs: Vec<_> = docs.into_iter().map(Result::unwrap).collect();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].source.document, docs[0].source.line), (1, 3));
        assert_eq!((docs[1].source.document, docs[1].source.line), (2, 7));
        assert_eq!(docs[1].kind(), Some("B"));
    }

    #[test]
    fn a_bad_document_does_not_hide_the_others() {
        let docs = parse("kind: A\n---\nkind: [\n---\nkind: C\n");
        assert!(docs[0].is_ok());
        let err = docs[1].as_ref().unwrap_err();
        assert_eq!(err.document, Some(2));
        assert_eq!(err.line, Some(3));
        assert!(
            err.to_string()
                .starts_with("vm.yaml: document 2 (line 3): invalid YAML"),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
        assert_eq!(docs[2].as_ref().unwrap().kind(), Some("C"));
    }

    #[test]
    fn lists_become_items() {
        let docs = parse("apiVersion: v1\nkind: List\nitems:\n- kind: A\n- 3\n");
        assert_eq!(docs[0].as_ref().unwrap().source.item, Some(0));
        let err = docs[1].as_ref().unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[1]"));
    }

    #[test]
    fn json_streams_and_json_errors() {
        let docs = parse_text(
            &Arc::from("vm.json"),
            "{\"kind\": \"A\"}\n\n{\"kind\": \"B\"}",
        );
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].as_ref().unwrap().source.line, 3);
        let bad = parse_text(&Arc::from("vm.json"), "{\"kind\": \n\"A\",}");
        let err = bad[0].as_ref().unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.starts_with("invalid JSON"));
    }

    #[test]
    fn bytes_that_are_not_utf8_spoil_only_their_document() {
        let text = b"kind: A\n---\nkind: B\nname: caf\xe9\n---\n# caf\xe9\n---\nkind: C\n";
        let docs = parse_bytes(&Arc::from("vm.yaml"), text);
        assert_eq!(docs.len(), 4, "{docs:?}");
        assert_eq!(docs[0].as_ref().unwrap().kind(), Some("A"));
        let err = docs[1].as_ref().unwrap_err();
        assert_eq!((err.document, err.line), (Some(2), Some(4)));
        assert!(
            err.to_string().starts_with(
                "vm.yaml: document 2 (line 4): not UTF-8 text (invalid byte at offset 29)"
            ),
            "{err}"
        );
        assert_eq!(docs[2].as_ref().unwrap_err().document, Some(3));
        let c = docs[3].as_ref().unwrap();
        assert_eq!(
            (c.kind(), c.source.document, c.source.line),
            (Some("C"), 4, 8)
        );

        let json = parse_bytes(
            &Arc::from("vm.json"),
            b"{\"kind\": \"A\"}\n{\"kind\": \"\xff\"}",
        );
        assert_eq!(json[0].as_ref().unwrap().kind(), Some("A"));
        let err = json[1].as_ref().unwrap_err();
        assert_eq!((err.document, err.line), (Some(2), Some(2)));
        assert!(err.message.starts_with("not UTF-8"), "{err}");
        let broken = parse_bytes(&Arc::from("vm.json"), b"{\"kind\" 1}\xff");
        assert_eq!(broken.len(), 1);
        assert!(
            broken[0]
                .as_ref()
                .unwrap_err()
                .message
                .starts_with("invalid JSON")
        );
    }

    #[test]
    fn reads_stop_at_the_limit_whatever_the_file_says_its_size_is() {
        let options = ReadOptions {
            max_input_bytes: 1024,
        };
        let endless = std::io::repeat(b'a');
        let docs = read_bounded(&Arc::from("/dev/zero"), endless, options);
        let err = docs[0].as_ref().unwrap_err();
        assert!(err.message.contains("above the limit"), "{err}");
        #[cfg(target_os = "linux")]
        {
            let docs = read_file(Path::new("/dev/zero"), options);
            assert!(
                docs[0]
                    .as_ref()
                    .unwrap_err()
                    .message
                    .contains("above the limit")
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn directories_follow_links_and_report_broken_ones() {
        let dir = std::env::temp_dir().join(format!("vp-manifest-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..data")).unwrap();
        std::fs::write(dir.join("..data/vm.yaml"), "kind: A\n").unwrap();
        std::os::unix::fs::symlink("..data/vm.yaml", dir.join("vm.yaml")).unwrap();
        std::os::unix::fs::symlink("missing.yaml", dir.join("broken.yaml")).unwrap();
        std::os::unix::fs::symlink("..data", dir.join("linked.yaml")).unwrap();
        let docs = read_path(&dir, ReadOptions::default());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(docs.len(), 2, "{docs:?}");
        let err = docs[0].as_ref().unwrap_err();
        assert!(err.file.ends_with("broken.yaml") && err.message.starts_with("cannot read"));
        assert_eq!(docs[1].as_ref().unwrap().kind(), Some("A"));
    }

    #[test]
    fn empty_input_and_garbage_are_errors() {
        let err = parse("# nothing\n---\n")[0].clone().unwrap_err();
        assert!(err.message.starts_with("no documents"));
        let garbage = parse_bytes(&Arc::from("x.bin"), &[0x00, 0xff, 0xfe, 0x10]);
        let err = garbage[0].as_ref().unwrap_err();
        assert!(err.message.contains("not UTF-8"));
        assert_eq!((err.document, err.line), (Some(1), Some(1)));
        let empty_list = parse("apiVersion: v1\nkind: List\nitems: []\n");
        assert!(empty_list.is_empty(), "{empty_list:?}");
        let scalar = parse("just a string\n");
        assert!(
            scalar[0]
                .as_ref()
                .unwrap_err()
                .message
                .contains("found a string")
        );
    }
}
