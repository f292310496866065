//! Strict YAML reading for the Portcullis configuration file.
//!
//! This module owns three things: turning YAML source into a small spanned tree
//! ([`parse`] → [`Node`]), reading that tree strictly through a typed API ([`Reader`],
//! [`MapView`]) that collects *every* problem instead of stopping at the first, and the
//! [`Diagnostic`] type with its `file:line:col: path: message` rendering ([`render`]).
//! The parser rejects the YAML features that make configuration ambiguous or dangerous
//! (duplicate keys, tags, merge keys, multiple documents, alias bombs, absurd nesting),
//! and the typed readers refuse unquoted scalars that a YAML 1.1 or 1.2 loader would read
//! as something other than a string (`off`, `0123`, `1e3`, `~`, ...). It does not know
//! the configuration schema itself: which keys exist, which are required and what they
//! mean is the business of the config module, which is built on top of this one.

use std::collections::HashMap;
use std::time::Duration;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Maximum nesting of sequences and mappings (aliases included) in a document.
pub const MAX_DEPTH: usize = 128;

/// Maximum number of nodes a document may produce, counting every alias expansion
/// (and the copy kept for each anchor). Defeats "billion laughs" alias bombs.
pub const MAX_NODES: usize = 100_000;

/// A position in the source: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number in characters, starting at 1.
    pub col: usize,
}

impl Span {
    /// yaml-rust2 markers have a 1-based line and a 0-based column.
    fn from_marker(mark: &Marker) -> Span {
        Span { line: mark.line().max(1), col: mark.col().saturating_add(1) }
    }

    fn key(self) -> (usize, usize) {
        (self.line, self.col)
    }
}

/// A node of the spanned YAML tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where the node starts in the source.
    pub span: Span,
    /// What the node holds.
    pub value: Value,
}

/// The content of a [`Node`].
#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar. `plain` is true when it was written without quotes (so YAML 1.1 would type it).
    Scalar {
        /// The scalar's text after YAML unescaping / folding.
        text: String,
        /// True for plain (unquoted, non-block) scalars.
        plain: bool,
    },
    /// A sequence, in file order.
    Seq(Vec<Node>),
    /// A mapping: (key node, value node) pairs in file order. Keys are always scalars
    /// and unique in a tree returned by [`parse`].
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this node is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// One problem found in the configuration, with its position and field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Position of the offending token.
    pub span: Span,
    /// Field path such as `routes[2].require.groups_any` (`""` at the root).
    pub path: String,
    /// Human-readable description of the problem and, where possible, how to fix it.
    pub message: String,
}

/// Render a diagnostic as `file:line:col: path: message` (the path part is omitted when
/// empty), e.g. `portcullis.yaml:12:7: routes[2].require.groups_any: must not be empty`.
pub fn render(file: &str, d: &Diagnostic) -> String {
    if d.path.is_empty() {
        format!("{file}:{}:{}: {}", d.span.line, d.span.col, d.message)
    } else {
        format!("{file}:{}:{}: {}: {}", d.span.line, d.span.col, d.path, d.message)
    }
}

/// Path of field `key` inside `parent`: `parent.key`, or `key` at the root. Keys that
/// are not made of letters, digits, `_` and `-` are written as `parent["key"]`.
pub fn field_path(parent: &str, key: &str) -> String {
    let simple = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (simple, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", quote(key)),
    }
}

/// Path of element `index` inside `parent`: `parent[index]`.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

// ---------------------------------------------------------------------------------------
// Part 1: YAML source -> spanned tree
// ---------------------------------------------------------------------------------------

/// Parse a single YAML document into a spanned tree.
///
/// Returns `Ok(None)` for an empty document (nothing but comments / whitespace, or an
/// explicit empty document). Aliases are expanded by copying the anchored node. Never
/// panics, whatever the input.
///
/// # Errors
///
/// Every problem found, sorted by position: a syntax error (which ends parsing), duplicate
/// keys (reported at the second occurrence), non-scalar keys, merge keys (`<<`), explicit
/// tags, a second document, nesting deeper than [`MAX_DEPTH`], or more than [`MAX_NODES`]
/// nodes once aliases are expanded (the last three also end parsing).
pub fn parse(source: &str) -> Result<Option<Node>, Vec<Diagnostic>> {
    // yaml-rust2 does not skip a byte order mark; the YAML spec allows one at the start.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut builder = Builder::new(source);
    let mut parser = Parser::new_from_str(source);
    let mut documents = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(err) => {
                let span = Span::from_marker(err.marker());
                let path = builder.path(true);
                builder.error(span, path, format!("invalid YAML: {}", err.info()));
                break;
            }
        };
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    builder.error(
                        Span::from_marker(&mark),
                        String::new(),
                        "only one YAML document is allowed, found a second one (`---`)",
                    );
                    break;
                }
            }
            other => {
                if builder.event(other, &mark).is_err() {
                    break;
                }
            }
        }
    }
    builder.finish()
}

/// Marker error: parsing cannot continue (the diagnostic has already been recorded).
struct Stop;

/// What an anchor refers to, kept for alias expansion.
struct Anchored {
    node: Node,
    /// Nodes in the subtree (what an alias expansion costs).
    size: usize,
    /// Collection nesting levels inside the subtree (0 for a scalar).
    height: usize,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        /// The key waiting for its value.
        key: Option<Node>,
        /// Key text -> line of first occurrence, for duplicate detection.
        seen: HashMap<String, usize>,
    },
}

/// A collection under construction.
struct Frame {
    span: Span,
    anchor: usize,
    /// Node budget used when the collection started (to size anchored subtrees).
    budget_at_start: usize,
    /// Largest height among the children so far.
    child_height: usize,
    /// Index in `Builder::diags` of this collection's "tags are not supported" error,
    /// whose span is corrected together with the frame's.
    tag_diag: Option<usize>,
    kind: FrameKind,
}

/// Turns the parser's event stream into a tree without recursion.
struct Builder {
    chars: Vec<char>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    budget_used: usize,
    root: Option<Node>,
    diags: Vec<Diagnostic>,
}

impl Builder {
    fn new(source: &str) -> Builder {
        Builder {
            chars: source.chars().collect(),
            stack: Vec::new(),
            anchors: HashMap::new(),
            budget_used: 0,
            root: None,
            diags: Vec::new(),
        }
    }

    fn error(&mut self, span: Span, path: String, message: impl Into<String>) {
        self.diags.push(Diagnostic { span, path, message: message.into() });
    }

    fn finish(mut self) -> Result<Option<Node>, Vec<Diagnostic>> {
        if !self.diags.is_empty() {
            self.diags.sort_by_key(|d| d.span.key());
            return Err(self.diags);
        }
        match self.root {
            // An explicit but empty document (`---` alone) is the same as no document.
            Some(Node { value: Value::Scalar { ref text, plain }, .. }) if plain && text.is_empty() => Ok(None),
            root => Ok(root),
        }
    }

    /// Field path of the position currently being built. With `include_top` false, the
    /// innermost collection's pending child is left out (used for errors about keys).
    fn path(&self, include_top: bool) -> String {
        let n = if include_top { self.stack.len() } else { self.stack.len().saturating_sub(1) };
        let mut path = String::new();
        for frame in self.stack.iter().take(n) {
            match &frame.kind {
                FrameKind::Seq(items) => path = index_path(&path, items.len()),
                FrameKind::Map { key: Some(key), .. } => {
                    if let Some(text) = key.as_scalar() {
                        path = field_path(&path, text);
                    }
                }
                FrameKind::Map { key: None, .. } => {}
            }
        }
        path
    }

    fn charge(&mut self, nodes: usize, span: Span) -> Result<(), Stop> {
        match self.budget_used.checked_add(nodes) {
            Some(total) if total <= MAX_NODES => {
                self.budget_used = total;
                Ok(())
            }
            _ => {
                let path = self.path(true);
                self.error(
                    span,
                    path,
                    format!(
                        "document too large: more than {MAX_NODES} nodes \
                         (every use of an alias counts its whole anchored node)"
                    ),
                );
                Err(Stop)
            }
        }
    }

    /// Report an explicit tag; returns the index of the diagnostic, if any.
    fn check_tag(&mut self, tag: Option<&Tag>, span: Span) -> Option<usize> {
        let tag = tag?;
        let shown = if tag.handle == "tag:yaml.org,2002:" {
            format!("!!{}", tag.suffix)
        } else {
            format!("{}{}", tag.handle, tag.suffix)
        };
        let path = self.path(true);
        let index = self.diags.len();
        self.error(span, path, format!("tags are not supported (found `{shown}`); remove the tag"));
        Some(index)
    }

    /// The start of a sequence. yaml-rust2 reports an indentless block sequence
    /// (`key:\n- a`) at its first item rather than at the `-`; walk back to the dash.
    fn sequence_span(&self, mark: &Marker) -> Span {
        let span = Span::from_marker(mark);
        let index = mark.index();
        match self.chars.get(index) {
            Some('-' | '[') | None => return span,
            Some(_) => {}
        }
        let mut i = index;
        let mut col = mark.col();
        while i > 0 && col > 0 {
            i -= 1;
            col -= 1;
            match self.chars.get(i) {
                Some(' ') => {}
                Some('-') => {
                    return Span { line: span.line, col: col + 1 };
                }
                _ => break,
            }
        }
        span
    }

    fn event(&mut self, event: Event, mark: &Marker) -> Result<(), Stop> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let span = Span::from_marker(mark);
                let start = self.budget_used;
                self.charge(1, span)?;
                self.check_tag(tag.as_ref(), span);
                let node = Node { span, value: Value::Scalar { text, plain: style == TScalarStyle::Plain } };
                self.complete(node, 0, anchor, start)
            }
            Event::Alias(id) => self.alias(id, Span::from_marker(mark)),
            Event::SequenceStart(anchor, tag) => {
                let span = self.sequence_span(mark);
                self.open(span, anchor, tag.as_ref(), FrameKind::Seq(Vec::new()))
            }
            Event::MappingStart(anchor, tag) => {
                let span = Span::from_marker(mark);
                let kind = FrameKind::Map { entries: Vec::new(), key: None, seen: HashMap::new() };
                self.open(span, anchor, tag.as_ref(), kind)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    // Unbalanced end: cannot happen with yaml-rust2, but never panic.
                    return Ok(());
                };
                let value = match frame.kind {
                    FrameKind::Seq(items) => Value::Seq(items),
                    FrameKind::Map { entries, .. } => Value::Map(entries),
                };
                let node = Node { span: frame.span, value };
                self.complete(node, frame.child_height.saturating_add(1), frame.anchor, frame.budget_at_start)
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {
                Ok(())
            }
        }
    }

    fn open(&mut self, span: Span, anchor: usize, tag: Option<&Tag>, kind: FrameKind) -> Result<(), Stop> {
        if self.stack.len() >= MAX_DEPTH {
            let path = self.path(true);
            self.error(span, path, format!("nesting too deep: more than {MAX_DEPTH} levels"));
            return Err(Stop);
        }
        let start = self.budget_used;
        self.charge(1, span)?;
        let tag_diag = self.check_tag(tag, span);
        self.stack.push(Frame { span, anchor, budget_at_start: start, child_height: 0, tag_diag, kind });
        Ok(())
    }

    fn alias(&mut self, id: usize, span: Span) -> Result<(), Stop> {
        let Some(anchored) = self.anchors.get(&id) else {
            let path = self.path(true);
            self.error(span, path, "alias refers to an anchor whose node is not complete yet (recursive alias)");
            return Err(Stop);
        };
        let (size, height) = (anchored.size, anchored.height);
        if self.stack.len().saturating_add(height) > MAX_DEPTH {
            let path = self.path(true);
            self.error(span, path, format!("nesting too deep: expanding this alias exceeds {MAX_DEPTH} levels"));
            return Err(Stop);
        }
        self.charge(size, span)?;
        let mut node = match self.anchors.get(&id) {
            Some(anchored) => anchored.node.clone(),
            None => return Err(Stop),
        };
        node.span = span;
        self.attach(node, height);
        Ok(())
    }

    /// A node is finished: remember it if anchored, then attach it to its parent.
    fn complete(&mut self, node: Node, height: usize, anchor: usize, budget_at_start: usize) -> Result<(), Stop> {
        if anchor > 0 {
            let size = self.budget_used.saturating_sub(budget_at_start).max(1);
            // Keeping a copy for later aliases costs as much as the subtree itself.
            self.charge(size, node.span)?;
            self.anchors.insert(anchor, Anchored { node: node.clone(), size, height });
        }
        self.attach(node, height);
        Ok(())
    }

    fn attach(&mut self, mut node: Node, height: usize) {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        frame.child_height = frame.child_height.max(height);
        let mut problems: Vec<(Span, String)> = Vec::new();
        let mut corrected_span = None;
        match &mut frame.kind {
            FrameKind::Seq(items) => items.push(node),
            FrameKind::Map { entries, key, seen } => match key.take() {
                Some(k) => {
                    // An empty value (`key:` and nothing else) is reported by yaml-rust2
                    // at the next token, often on a later line; point at its key instead.
                    if matches!(&node.value, Value::Scalar { text, plain: true } if text.is_empty()) {
                        node.span = k.span;
                    }
                    entries.push((k, node));
                }
                None => {
                    // yaml-rust2 reports block mappings a little after their first key.
                    if entries.is_empty() && node.span.key() < frame.span.key() {
                        frame.span = node.span;
                        corrected_span = frame.tag_diag.map(|i| (i, node.span));
                    }
                    match &node.value {
                        Value::Scalar { text, plain } => {
                            if *plain && text == "<<" {
                                problems.push((
                                    node.span,
                                    "merge keys (`<<`) are not supported; \
                                     write the entries out explicitly"
                                        .to_string(),
                                ));
                            } else if let Some(first) = seen.get(text.as_str()) {
                                problems.push((
                                    node.span,
                                    format!("duplicate key {} (first at line {first})", quote(text)),
                                ));
                            } else {
                                seen.insert(text.clone(), node.span.line);
                            }
                        }
                        Value::Seq(_) | Value::Map(_) => problems
                            .push((node.span, format!("mapping keys must be scalars, found {}", describe(&node)))),
                    }
                    *key = Some(node);
                }
            },
        }
        if let Some((index, span)) = corrected_span
            && let Some(diag) = self.diags.get_mut(index)
        {
            diag.span = span;
        }
        if problems.is_empty() {
            return;
        }
        // The mapping's own path (its pending key is the one being complained about).
        let key_path = self.path(false);
        for (span, message) in problems {
            self.error(span, key_path.clone(), message);
        }
    }
}

// ---------------------------------------------------------------------------------------
// YAML 1.1 / 1.2 implicit typing of plain scalars
// ---------------------------------------------------------------------------------------

/// How a YAML 1.1 or 1.2 loader would read a plain scalar, when not as a string.
struct Implicit {
    /// e.g. "a boolean", "an integer".
    what: &'static str,
    /// e.g. "YAML 1.1", "YAML (octal in YAML 1.1)".
    version: &'static str,
}

fn implicit(what: &'static str, version: &'static str) -> Option<Implicit> {
    Some(Implicit { what, version })
}

/// `[0-9][0-9_]*`
fn is_digits_underscores(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit()) && s.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// Decimal float in the union of the YAML 1.1 and 1.2 core schemas.
fn is_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    match mantissa.split_once('.') {
        Some((int, frac)) => {
            let int_ok = int.is_empty() || is_digits_underscores(int);
            let frac_ok = frac.chars().all(|c| c.is_ascii_digit() || c == '_');
            let has_digit = !int.is_empty() || frac.starts_with(|c: char| c.is_ascii_digit());
            int_ok && frac_ok && has_digit
        }
        None => exponent.is_some() && is_digits_underscores(mantissa),
    }
}

/// YAML 1.1 base-60 numbers: `1:30`, `190:20:30`, `1:30.5`.
fn is_sexagesimal(s: &str) -> bool {
    let mut parts = s.split(':');
    let first = parts.next().unwrap_or("");
    if !is_digits_underscores(first) {
        return false;
    }
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        return false;
    }
    let last_index = rest.len() - 1;
    rest.iter().enumerate().all(|(i, part)| {
        let (sixty, frac) = match part.split_once('.') {
            Some((a, b)) if i == last_index => (a, Some(b)),
            Some(_) => return false,
            None => (*part, None),
        };
        let bytes = sixty.as_bytes();
        let sixty_ok = match bytes {
            [d] => d.is_ascii_digit(),
            [t, d] => (b'0'..=b'5').contains(t) && d.is_ascii_digit(),
            _ => false,
        };
        sixty_ok && frac.is_none_or(|f| f.chars().all(|c| c.is_ascii_digit() || c == '_'))
    })
}

/// What a YAML 1.1 or 1.2 loader would make of a plain scalar other than a string.
fn classify_plain(t: &str) -> Option<Implicit> {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return implicit("null", "YAML"),
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => {
            return implicit("a boolean", "YAML");
        }
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "on" | "On" | "ON" | "off" | "Off"
        | "OFF" => return implicit("a boolean", "YAML 1.1"),
        ".nan" | ".NaN" | ".NAN" => return implicit("a floating-point number (NaN)", "YAML"),
        _ => {}
    }
    let s = t.strip_prefix(['+', '-']).unwrap_or(t);
    if matches!(s, ".inf" | ".Inf" | ".INF") {
        return implicit("a floating-point number (infinity)", "YAML");
    }
    let radix = |prefix: &str, ok: fn(char) -> bool| {
        s.strip_prefix(prefix).is_some_and(|rest| rest.chars().any(ok) && rest.chars().all(|c| ok(c) || c == '_'))
    };
    if radix("0x", |c| c.is_ascii_hexdigit()) {
        return implicit("a hexadecimal integer", "YAML");
    }
    if radix("0o", |c| ('0'..='7').contains(&c)) {
        return implicit("an octal integer", "YAML 1.2");
    }
    if radix("0b", |c| c == '0' || c == '1') {
        return implicit("a binary integer", "YAML 1.1");
    }
    if is_digits_underscores(s) {
        if s.contains('_') {
            return implicit("an integer", "YAML 1.1");
        }
        if s.len() > 1 && s.starts_with('0') && s.chars().all(|c| ('0'..='7').contains(&c)) {
            return implicit("an integer", "YAML (octal in YAML 1.1)");
        }
        return implicit("an integer", "YAML");
    }
    if is_float(s) {
        return implicit("a floating-point number", "YAML");
    }
    if is_sexagesimal(s) {
        return implicit("a sexagesimal (base 60) number", "YAML 1.1");
    }
    None
}

// ---------------------------------------------------------------------------------------
// Small text helpers
// ---------------------------------------------------------------------------------------

/// Double-quoted YAML/JSON-style rendering of `s`, for messages.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.extend(format!("\\u{:04X}", u32::from(c)).chars()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Shortened, control-character-free copy of a scalar for messages.
fn snippet(s: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = s.chars().take(MAX).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// "a mapping", "a list", "a string `abc`", "a boolean `yes`", "an empty value", ...
fn describe(node: &Node) -> String {
    match &node.value {
        Value::Map(_) => "a mapping".to_string(),
        Value::Seq(_) => "a list".to_string(),
        Value::Scalar { text, plain } => describe_scalar(text, *plain),
    }
}

fn describe_scalar(text: &str, plain: bool) -> String {
    if plain && text.is_empty() {
        return "an empty value".to_string();
    }
    let what = if plain { classify_plain(text).map_or("a string", |i| i.what) } else { "a string" };
    format!("{what} `{}`", snippet(text))
}

fn control_char_name(c: char) -> String {
    match c {
        '\t' => "a tab".to_string(),
        '\n' => "a line break".to_string(),
        '\r' => "a carriage return".to_string(),
        c => format!("U+{:04X}", u32::from(c)),
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expand `${env:NAME}` references and the `$${` escape. Other `${...}` forms are kept.
/// Substituted values are not expanded again.
fn substitute_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(s.len());
    let mut errors = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body) = after.strip_prefix("${env:") {
            let Some(end) = body.find('}') else {
                errors.push(
                    "unterminated `${env:` reference; write `${env:NAME}` \
                     (or `$${` for a literal `${`)"
                        .to_string(),
                );
                rest = "";
                break;
            };
            let name = &body[..end];
            if is_env_name(name) {
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => errors.push(format!("environment variable `{name}` is not set")),
                }
            } else {
                errors.push(format!(
                    "invalid environment variable name {} in `${{env:...}}`; \
                     names must match [A-Za-z_][A-Za-z0-9_]*",
                    quote(name)
                ));
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

// ---------------------------------------------------------------------------------------
// Part 2: strict typed reading
// ---------------------------------------------------------------------------------------

/// Reads typed values out of a parsed tree, collecting every problem as a [`Diagnostic`].
///
/// Every reader reports a precise error and returns `None` on failure, so callers can
/// keep going and report all problems at once; call [`Reader::diagnostics`] at the end.
pub struct Reader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    diags: Vec<Diagnostic>,
}

/// A checked mapping (see [`Reader::map`]) giving access to its entries.
#[derive(Debug, Clone, Copy)]
pub struct MapView<'n> {
    span: Span,
    entries: &'n [(Node, Node)],
}

impl<'n> MapView<'n> {
    /// The value for `key` (the first one if the tree somehow had duplicates).
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entry(key).map(|(_, value)| value)
    }

    /// The key node and value node for `key`, e.g. to report an error at the key.
    pub fn entry(&self, key: &str) -> Option<(&'n Node, &'n Node)> {
        self.entries.iter().find(|(k, _)| k.as_scalar() == Some(key)).map(|(k, v)| (k, v))
    }

    /// Span of the mapping itself (its `{` or its first key).
    pub fn span(&self) -> Span {
        self.span
    }

    /// `(key node, value node)` pairs in file order (key spans are useful for errors).
    pub fn entries(&self) -> impl Iterator<Item = (&'n Node, &'n Node)> + use<'n> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<'a> Reader<'a> {
    /// A reader resolving `${env:NAME}` through `env` (inject `std::env::var(..).ok()` in
    /// production, a map lookup in tests).
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Reader { env, diags: Vec::new() }
    }

    /// Record a problem at `span` for the field at `path`.
    pub fn error(&mut self, span: Span, path: &str, msg: impl Into<String>) {
        self.diags.push(Diagnostic { span, path: path.to_string(), message: msg.into() });
    }

    /// All recorded problems, sorted by (line, column), exact duplicates removed.
    pub fn diagnostics(self) -> Vec<Diagnostic> {
        let mut diags = self.diags;
        diags.sort_by_key(|d| d.span.key());
        diags.dedup();
        diags
    }

    /// True if any problem has been recorded.
    pub fn has_errors(&self) -> bool {
        !self.diags.is_empty()
    }

    /// Check `node` is a mapping, report every key not in `known` (with the closest known
    /// key as a suggestion when it is within edit distance 2), and return a view for typed
    /// access. Returns `None` (after reporting) if `node` is not a mapping.
    ///
    /// An empty `known` means the mapping has free-form keys (e.g. `claims:
    /// {X-User-Email: email}`): no key is reported and the caller checks them through
    /// [`MapView::keys`] / [`MapView::entries`].
    pub fn map<'n>(&mut self, node: &'n Node, path: &str, known: &[&'static str]) -> Option<MapView<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(node.span, path, format!("expected a mapping, found {}", describe(node)));
            return None;
        };
        if !known.is_empty() {
            for (key, _) in entries {
                // Non-scalar keys were already rejected by `parse`.
                if let Some(text) = key.as_scalar()
                    && !known.contains(&text)
                {
                    self.error(key.span, path, unknown_key_message(text, known));
                }
            }
        }
        Some(MapView { span: node.span, entries })
    }

    /// The value of a required key; reports `missing required key` at the mapping if absent.
    pub fn require<'n>(&mut self, map: &MapView<'n>, key: &str, path: &str) -> Option<&'n Node> {
        let value = map.get(key);
        if value.is_none() {
            self.error(map.span(), path, format!("missing required key `{key}`"));
        }
        value
    }

    /// A string. Plain scalars that YAML would type otherwise (`off`, `0123`, `1e3`, `~`,
    /// ...) are rejected with a hint to quote them; `${env:NAME}` is substituted
    /// (`$${` escapes a literal `${`); control characters are rejected.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        let Value::Scalar { text, plain } = &node.value else {
            self.error(node.span, path, format!("expected a string, found {}", describe(node)));
            return None;
        };
        if *plain {
            if text.is_empty() {
                self.error(
                    node.span,
                    path,
                    "expected a string, found an empty value (null in YAML); \
                     write \"\" for an empty string",
                );
                return None;
            }
            if let Some(reading) = classify_plain(text) {
                self.error(
                    node.span,
                    path,
                    format!(
                        "`{}` is {} in {}; quote it ({}) if you mean the string",
                        snippet(text),
                        reading.what,
                        reading.version,
                        quote(text)
                    ),
                );
                return None;
            }
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            self.error(
                node.span,
                path,
                format!("strings must not contain control characters (found {})", control_char_name(c)),
            );
            return None;
        }
        match substitute_env(text, self.env) {
            Ok(value) => {
                if let Some(c) = value.chars().find(|c| c.is_control()) {
                    self.error(
                        node.span,
                        path,
                        format!(
                            "after substituting environment variables the string contains \
                             a control character ({})",
                            control_char_name(c)
                        ),
                    );
                    return None;
                }
                Some(value)
            }
            Err(messages) => {
                for message in messages {
                    self.error(node.span, path, message);
                }
                None
            }
        }
    }

    /// A boolean: only plain `true` or `false`.
    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Scalar { text, plain: true } if text == "true" => Some(true),
            Value::Scalar { text, plain: true } if text == "false" => Some(false),
            Value::Scalar { text, plain: false } if text == "true" || text == "false" => {
                self.error(
                    node.span,
                    path,
                    format!("expected a boolean, found the quoted string {}; remove the quotes", quote(text)),
                );
                None
            }
            Value::Scalar { text, plain: true } if classify_plain(text).is_some_and(|i| i.what == "a boolean") => {
                self.error(node.span, path, format!("`{text}` is not accepted as a boolean here; write true or false"));
                None
            }
            _ => {
                self.error(node.span, path, format!("expected a boolean (true or false), found {}", describe(node)));
                None
            }
        }
    }

    /// A non-negative integer written as plain decimal digits (no sign, no `_`, no `0x`,
    /// no leading zeros except `0` itself).
    pub fn u64(&mut self, node: &Node, path: &str) -> Option<u64> {
        let text = match &node.value {
            Value::Scalar { text, plain: true } if !text.is_empty() => text,
            Value::Scalar { text, plain: false } if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) => {
                self.error(
                    node.span,
                    path,
                    format!("expected an integer, found the quoted string {}; remove the quotes", quote(text)),
                );
                return None;
            }
            _ => {
                self.error(node.span, path, format!("expected a non-negative integer, found {}", describe(node)));
                return None;
            }
        };
        let message = match u64_problem(text) {
            None => match text.parse::<u64>() {
                Ok(value) => return Some(value),
                Err(_) => format!("`{}` is too large (maximum {})", snippet(text), u64::MAX),
            },
            Some(message) => message,
        };
        self.error(node.span, path, message);
        None
    }

    /// A duration: an integer followed by a unit, one of `ms`, `s`, `m`, `h`, `d`
    /// (`500ms`, `30s`, `5m`, `1h`, `1d`, `0s`). Quoted or plain.
    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let text = match &node.value {
            Value::Scalar { text, .. } if !text.is_empty() => text,
            _ => {
                self.error(node.span, path, format!("expected a duration such as 30s, found {}", describe(node)));
                return None;
            }
        };
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.error(node.span, path, message);
                None
            }
        }
    }

    /// A non-empty list of strings, each read with [`Reader::string`] (paths `path[i]`).
    /// Flow (`[a, b]`) and block forms are both fine.
    pub fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let Value::Seq(items) = &node.value else {
            self.error(node.span, path, format!("expected a list of strings, found {}", describe(node)));
            return None;
        };
        if items.is_empty() {
            self.error(node.span, path, "must not be empty");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(item, &index_path(path, i)) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A sequence (possibly empty); its items are left to the caller.
    pub fn seq<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.error(node.span, path, format!("expected a list, found {}", describe(node)));
                None
            }
        }
    }
}

fn unknown_key_message(key: &str, known: &[&'static str]) -> String {
    let mut message = format!("unknown key `{}`", snippet(key));
    let closest = known
        .iter()
        .map(|k| (levenshtein(key, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.chars().count().max(key.chars().count()))
        .min_by_key(|(d, _)| *d);
    if let Some((_, suggestion)) = closest {
        message.push_str(&format!("; did you mean `{suggestion}`?"));
    } else {
        message.push(';');
    }
    let mut sorted = known.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    message.push_str(&format!(" expected one of: {}", sorted.join(", ")));
    message
}

/// Why a plain scalar is not an acceptable u64 (None if it is digits only, no leading 0).
fn u64_problem(text: &str) -> Option<String> {
    let shown = snippet(text);
    if text.chars().all(|c| c.is_ascii_digit()) {
        if text.len() > 1 && text.starts_with('0') {
            let trimmed = text.trim_start_matches('0');
            let fixed = if trimmed.is_empty() { "0" } else { trimmed };
            return Some(format!(
                "leading zeros are not allowed (YAML 1.1 reads `{shown}` as octal); write {}",
                snippet(fixed)
            ));
        }
        return None;
    }
    if text.starts_with('-') {
        return Some(format!("`{shown}` is negative; expected a non-negative integer"));
    }
    if let Some(rest) = text.strip_prefix('+')
        && !rest.is_empty()
        && rest.chars().all(|c| c.is_ascii_digit())
    {
        return Some(format!("remove the `+` sign: write {}", snippet(rest)));
    }
    if is_digits_underscores(text) {
        return Some(format!("underscores are not allowed in numbers; write {}", snippet(&text.replace('_', ""))));
    }
    match classify_plain(text) {
        Some(reading) if reading.what.ends_with("integer") => {
            Some(format!("`{shown}` is {}; only plain decimal digits are accepted here", reading.what))
        }
        Some(reading) if reading.what.starts_with("a floating") => {
            Some(format!("expected a whole number, found `{shown}`"))
        }
        _ => Some(format!("expected a non-negative integer, found {}", describe_scalar(text, true))),
    }
}

const DURATION_UNITS: &str = "ms, s, m, h, d";

fn parse_duration(text: &str) -> Result<Duration, String> {
    let shown = snippet(text);
    if text.starts_with('-') {
        return Err(format!("`{shown}`: durations must not be negative"));
    }
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "invalid duration `{shown}`: expected an integer followed by a unit \
             ({DURATION_UNITS}), e.g. 30s"
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "`{shown}` has no unit; durations need one ({DURATION_UNITS}): write {}s",
            snippet(digits)
        ));
    }
    let Ok(value) = digits.parse::<u64>() else {
        return Err(format!("duration `{shown}` is too large"));
    };
    let too_large = || format!("duration `{shown}` is too large");
    match unit {
        "ms" => return Ok(Duration::from_millis(value)),
        "s" => return Ok(Duration::from_secs(value)),
        "m" | "h" | "d" => {
            let factor = match unit {
                "m" => 60,
                "h" => 3_600,
                _ => 86_400,
            };
            return value.checked_mul(factor).map(Duration::from_secs).ok_or_else(too_large);
        }
        _ => {}
    }
    let trimmed = unit.trim_start();
    if trimmed.len() != unit.len() && ["ms", "s", "m", "h", "d"].contains(&trimmed) {
        return Err(format!("remove the space in `{shown}`: write {}{trimmed}", snippet(digits)));
    }
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "`{shown}`: fractional durations are not supported; use a whole number of a \
             smaller unit (e.g. 1500ms instead of 1.5s)"
        ));
    }
    let unit_len = unit.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(unit.len());
    let (word, after) = unit.split_at(unit_len);
    if ["ms", "s", "m", "h", "d"].contains(&word) && after.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "`{shown}`: combined units are not supported; use a single unit (e.g. 90m \
             instead of 1h30m)"
        ));
    }
    Err(format!("unknown duration unit `{}` in `{shown}`; expected one of: {DURATION_UNITS} (e.g. 30s)", snippet(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn test_env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cret".to_string()),
            "EMPTY" => Some(String::new()),
            "_UNDER_1" => Some("u".to_string()),
            "NEWLINE" => Some("a\nb".to_string()),
            _ => None,
        }
    }

    fn parse_ok(src: &str) -> Node {
        match parse(src) {
            Ok(Some(node)) => node,
            other => panic!("expected a document for {src:?}, got {other:?}"),
        }
    }

    fn parse_err(src: &str) -> Vec<Diagnostic> {
        match parse(src) {
            Err(diags) => diags,
            Ok(node) => panic!("expected errors for {src:?}, got {node:?}"),
        }
    }

    fn at(line: usize, col: usize) -> Span {
        Span { line, col }
    }

    /// Parse `src` (which must be valid) and run `f` with a reader on its root.
    fn read<T>(src: &str, f: impl FnOnce(&mut Reader<'_>, &Node) -> T) -> (T, Vec<Diagnostic>) {
        let root = parse_ok(src);
        let env = test_env;
        let mut reader = Reader::new(&env);
        let out = f(&mut reader, &root);
        (out, reader.diagnostics())
    }

    /// Read `value` (the text after `v: `) through the `v` key with `f`.
    fn read_value<T>(
        value: &str,
        f: impl FnOnce(&mut Reader<'_>, &Node, &str) -> Option<T>,
    ) -> (Option<T>, Vec<Diagnostic>) {
        let src = format!("v: {value}\n");
        read(&src, |r, root| {
            let map = r.map(root, "", &["v"])?;
            let node = map.get("v")?;
            f(r, node, "v")
        })
    }

    fn messages(diags: &[Diagnostic]) -> Vec<String> {
        diags.iter().map(|d| d.message.clone()).collect()
    }

    fn entry<'n>(node: &'n Node, key: &str) -> &'n Node {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_scalar() == Some(key))
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no key {key}")),
            _ => panic!("not a map"),
        }
    }

    fn items(node: &Node) -> &[Node] {
        match &node.value {
            Value::Seq(items) => items,
            _ => panic!("not a sequence"),
        }
    }

    // ----- tree and spans ------------------------------------------------------------

    #[test]
    fn spans_are_one_based_and_point_at_tokens() {
        let src = "\
listen: 8080
upstream:
  url: \"http://x\"
  tags: [a, {k: v}]
list:
- one
-   two
nested:
  - - deep
empty: {}
\"quoted\": 'single'
";
        let root = parse_ok(src);
        assert_eq!(root.span, at(1, 1));
        assert_eq!(entry(&root, "listen").span, at(1, 9));
        let upstream = entry(&root, "upstream");
        assert_eq!(upstream.span, at(3, 3));
        assert_eq!(entry(upstream, "url").span, at(3, 8));
        let tags = entry(upstream, "tags");
        assert_eq!(tags.span, at(4, 9));
        assert_eq!(items(tags)[1].span, at(4, 13));
        assert_eq!(entry(&items(tags)[1], "k").span, at(4, 17));
        let list = entry(&root, "list");
        assert_eq!(list.span, at(6, 1));
        assert_eq!(items(list)[0].span, at(6, 3));
        assert_eq!(items(list)[1].span, at(7, 5));
        let nested = entry(&root, "nested");
        assert_eq!(nested.span, at(9, 3));
        assert_eq!(items(nested)[0].span, at(9, 5));
        assert_eq!(items(&items(nested)[0])[0].span, at(9, 7));
        assert_eq!(entry(&root, "empty").span, at(10, 8));
        let Value::Map(entries) = &root.value else { panic!("root is a map") };
        let (qk, qv) = &entries[5];
        assert_eq!(qk.span, at(11, 1));
        assert_eq!(qv.span, at(11, 11));
        assert!(matches!(&qk.value, Value::Scalar { text, plain: false } if text == "quoted"));
        assert!(matches!(&qv.value, Value::Scalar { text, plain: false } if text == "single"));
        assert!(matches!(
            &entry(&root, "listen").value,
            Value::Scalar { text, plain: true } if text == "8080"
        ));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let root = parse_ok("é: ü\nx: [ä, y]\n");
        assert_eq!(entry(&root, "é").span, at(1, 4));
        assert_eq!(items(entry(&root, "x"))[1].span, at(2, 8));
    }

    #[test]
    fn byte_order_mark_and_crlf_are_accepted() {
        let root = parse_ok("\u{feff}a: 1\r\nb:\r\n- x\r\n");
        assert_eq!(entry(&root, "a").span, at(1, 4));
        assert_eq!(entry(&root, "b").span, at(3, 1));
    }

    #[test]
    fn empty_documents_are_none() {
        for src in ["", "\n\n", "# only a comment\n", "---\n", "--- \n...\n"] {
            assert!(matches!(parse(src), Ok(None)), "{src:?}");
        }
        // A quoted empty string is a document.
        assert!(matches!(parse("''"), Ok(Some(_))));
    }

    #[test]
    fn duplicate_keys_are_all_reported_at_the_second_occurrence() {
        let src = "\
listen: a
upstream:
  url: x
  timeout: 1s
  url: y
listen: b
routes:
  - path: /
    path: /again
listen: c
";
        let diags = parse_err(src);
        assert_eq!(
            diags,
            vec![
                Diagnostic {
                    span: at(5, 3),
                    path: "upstream".into(),
                    message: "duplicate key \"url\" (first at line 3)".into(),
                },
                Diagnostic {
                    span: at(6, 1),
                    path: String::new(),
                    message: "duplicate key \"listen\" (first at line 1)".into(),
                },
                Diagnostic {
                    span: at(9, 5),
                    path: "routes[0]".into(),
                    message: "duplicate key \"path\" (first at line 8)".into(),
                },
                Diagnostic {
                    span: at(10, 1),
                    path: String::new(),
                    message: "duplicate key \"listen\" (first at line 1)".into(),
                },
            ]
        );
        // Flow mappings and quoted/plain spellings of the same key.
        let diags = parse_err("a: {x: 1, \"x\": 2}\n");
        assert_eq!(diags[0].span, at(1, 11));
        assert_eq!(diags[0].path, "a");
    }

    #[test]
    fn non_scalar_and_merge_keys_are_rejected() {
        let diags = parse_err("? [a, b]\n: 1\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].span, at(1, 3));
        assert!(diags[0].message.contains("mapping keys must be scalars, found a list"));

        let diags = parse_err("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].span, at(3, 3));
        assert_eq!(diags[0].path, "derived");
        assert!(diags[0].message.contains("merge keys (`<<`) are not supported"));
        // A quoted "<<" is an ordinary key.
        assert!(parse("\"<<\": 1\n").is_ok());
    }

    #[test]
    fn tags_are_rejected() {
        for (src, span, shown) in [
            ("a: !!str 5\n", at(1, 10), "!!str"),
            ("a: !custom {x: 1}\n", at(1, 12), "!custom"),
            ("- ! x\n", at(1, 5), "!"),
            ("!!map\nx: 1\n", at(2, 1), "!!map"),
        ] {
            let diags = parse_err(src);
            assert_eq!(diags.len(), 1, "{src:?}: {diags:?}");
            assert_eq!(diags[0].span, span, "{src:?}");
            assert_eq!(
                diags[0].message,
                format!("tags are not supported (found `{shown}`); remove the tag"),
                "{src:?}"
            );
        }
    }

    #[test]
    fn a_second_document_is_rejected() {
        let diags = parse_err("a: 1\n---\nb: 2\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].span, at(2, 1));
        assert!(diags[0].message.contains("only one YAML document"));
        assert!(parse_err("--- a\n--- b\n")[0].message.contains("only one"));
        assert!(parse_err("a: 1\n...\n---\nb: 2\n")[0].message.contains("only one"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        for (src, span) in [
            ("a: [1, 2\n", at(2, 1)),
            ("a: 1\n b: 2\n", at(2, 3)),
            ("a: \"unterminated\n", at(1, 4)),
            ("a: *nope\n", at(1, 4)),
            // yaml-rust2 reports this at the start of the plain scalar it was scanning.
            ("key: value\n\tbad: tab\n", at(1, 6)),
        ] {
            let diags = parse_err(src);
            assert_eq!(diags.len(), 1, "{src:?}: {diags:?}");
            assert_eq!(diags[0].span, span, "{src:?}: {diags:?}");
            assert!(diags[0].message.starts_with("invalid YAML: "), "{diags:?}");
        }
    }

    #[test]
    fn errors_before_a_syntax_error_are_kept() {
        let diags = parse_err("a: 1\na: 2\nb: [\n");
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(diags[0].message.contains("duplicate key"));
        assert!(diags[1].message.starts_with("invalid YAML"));
    }

    #[test]
    fn aliases_are_expanded() {
        let src = "\
defaults: &d
  timeout: 5s
  retries: 3
a: *d
names: &n [x, y]
b: *n
s: &s hello
c: *s
";
        let root = parse_ok(src);
        let a = entry(&root, "a");
        assert_eq!(a.span, at(4, 4));
        assert_eq!(entry(a, "timeout").as_scalar(), Some("5s"));
        assert_eq!(entry(a, "retries").as_scalar(), Some("3"));
        assert_eq!(items(entry(&root, "b")).len(), 2);
        assert_eq!(entry(&root, "c").as_scalar(), Some("hello"));
        assert_eq!(entry(&root, "c").span, at(8, 4));
    }

    #[test]
    // A bound on the parser's work, measured in real time.
    #[allow(clippy::disallowed_methods)]
    fn alias_bomb_is_rejected_fast() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, \
                 *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let diags = parse_err(&src);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("document too large"), "{diags:?}");
    }

    #[test]
    fn recursive_alias_is_rejected() {
        let diags = parse_err("a: &x [1, *x]\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].span, at(1, 11));
        assert!(diags[0].message.contains("recursive alias"));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let flow = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let diags = parse_err(&flow);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].span, at(1, MAX_DEPTH + 1));
        assert!(diags[0].message.contains("nesting too deep"));

        let mut block = String::new();
        for i in 0..150 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        assert!(parse_err(&block)[0].message.contains("nesting too deep"));

        // Exactly MAX_DEPTH levels is fine.
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());

        // Chained aliases cannot be used to build an over-deep tree.
        let mut chained = String::from("- &a0 [x]\n");
        for i in 1..200 {
            chained.push_str(&format!("- &a{i} [*a{}]\n", i - 1));
        }
        assert!(parse_err(&chained)[0].message.contains("nesting too deep"));
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic xorshift generator over YAML-ish bytes plus arbitrary bytes.
        const ALPHABET: &[u8] = b"ab:- \n\t[]{},&*!|>'\"#?%@`~.0123456789<<\\\r\xc3\xa9\x00";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..600 {
            let len = (next() % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if round % 3 == 0 { (r & 0xff) as u8 } else { ALPHABET[(r % ALPHABET.len() as u64) as usize] }
                })
                .collect();
            let src = String::from_utf8_lossy(&bytes);
            if let Ok(Some(root)) = parse(&src) {
                // Exercise the readers too.
                let env = no_env;
                let mut r = Reader::new(&env);
                let _ = r.string(&root, "");
                let _ = r.u64(&root, "");
                let _ = r.duration(&root, "");
                let _ = r.string_list(&root, "");
                if let Some(map) = r.map(&root, "", &["a", "b"]) {
                    for (_, v) in map.entries() {
                        let _ = r.bool(v, "x");
                    }
                }
                let _ = r.diagnostics();
            }
        }
    }

    // ----- reader: mappings ----------------------------------------------------------

    #[test]
    fn unknown_keys_are_reported_with_suggestions() {
        let src = "\
listen: :8080
upstream:
  url: http://backend
  timout: 5s
  bogus: 1
";
        let ((), diags) = read(src, |r, root| {
            let map = r.map(root, "", &["listen", "upstream"]).expect("a map");
            let upstream = map.get("upstream").expect("upstream");
            let up = r.map(upstream, "upstream", &["url", "timeout", "connect_timeout"]).expect("a map");
            assert_eq!(up.span(), at(3, 3));
            assert!(up.get("url").is_some());
        });
        assert_eq!(
            diags,
            vec![
                Diagnostic {
                    span: at(4, 3),
                    path: "upstream".into(),
                    message: "unknown key `timout`; did you mean `timeout`? expected one of: \
                              connect_timeout, timeout, url"
                        .into(),
                },
                Diagnostic {
                    span: at(5, 3),
                    path: "upstream".into(),
                    message: "unknown key `bogus`; expected one of: connect_timeout, timeout, url".into(),
                },
            ]
        );
    }

    #[test]
    fn map_keys_are_in_file_order() {
        let src = "claims:\n  X-User-Email: email\n  X-User-Id: sub\n  \"X-Quoted\": name\n";
        let (keys, diags) = read(src, |r, root| {
            let map = r.map(root, "", &["claims"])?;
            let claims = r.map(map.get("claims")?, "claims", &[])?;
            Some(claims.entries().filter_map(|(k, v)| Some((k.as_scalar()?.to_string(), v.span))).collect::<Vec<_>>())
        });
        assert_eq!(
            keys,
            Some(vec![
                ("X-User-Email".to_string(), at(2, 17)),
                ("X-User-Id".to_string(), at(3, 14)),
                ("X-Quoted".to_string(), at(4, 15)),
            ])
        );
        // An empty `known` means free-form keys: nothing is reported.
        assert_eq!(diags, vec![]);
    }

    #[test]
    fn wrong_container_types_are_reported() {
        let src = "\
a: just a string
b: [1]
c: {k: v}
d:
";
        let ((), diags) = read(src, |r, root| {
            let map = r.map(root, "", &["a", "b", "c", "d"]).expect("a map");
            assert!(r.map(map.get("a").expect("a"), "a", &[]).is_none());
            assert!(r.string(map.get("b").expect("b"), "b").is_none());
            assert!(r.seq(map.get("c").expect("c"), "c").is_none());
            assert!(r.map(map.get("d").expect("d"), "d", &[]).is_none());
        });
        let got: Vec<(Span, &str, &str)> =
            diags.iter().map(|d| (d.span, d.path.as_str(), d.message.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (at(1, 4), "a", "expected a mapping, found a string `just a string`"),
                (at(2, 4), "b", "expected a string, found a list"),
                (at(3, 4), "c", "expected a list, found a mapping"),
                (at(4, 1), "d", "expected a mapping, found an empty value"),
            ]
        );
    }

    #[test]
    fn require_reports_missing_keys_at_the_mapping() {
        let ((), diags) = read("upstream:\n  timeout: 5s\n", |r, root| {
            let map = r.map(root, "", &["upstream"]).expect("map");
            let up = r.map(map.get("upstream").expect("upstream"), "upstream", &["url", "timeout"]).expect("map");
            assert!(r.require(&up, "url", "upstream").is_none());
            assert!(r.require(&up, "timeout", "upstream").is_some());
        });
        assert_eq!(
            diags,
            vec![Diagnostic { span: at(2, 3), path: "upstream".into(), message: "missing required key `url`".into() }]
        );
    }

    // ----- reader: scalars -----------------------------------------------------------

    #[test]
    fn strings_that_yaml_would_type_are_rejected() {
        let cases: &[(&str, &str)] = &[
            ("off", "`off` is a boolean in YAML 1.1; quote it (\"off\") if you mean the string"),
            ("yes", "`yes` is a boolean in YAML 1.1; quote it (\"yes\") if you mean the string"),
            ("Y", "`Y` is a boolean in YAML 1.1"),
            ("NO", "`NO` is a boolean in YAML 1.1"),
            ("On", "`On` is a boolean in YAML 1.1"),
            ("True", "`True` is a boolean in YAML;"),
            ("false", "`false` is a boolean in YAML;"),
            ("~", "`~` is null in YAML; quote it (\"~\")"),
            ("null", "`null` is null in YAML"),
            ("NULL", "`NULL` is null in YAML"),
            ("0123", "`0123` is an integer in YAML (octal in YAML 1.1); quote it (\"0123\")"),
            ("0129", "`0129` is an integer in YAML;"),
            ("42", "`42` is an integer in YAML;"),
            ("-7", "`-7` is an integer in YAML;"),
            ("+7", "`+7` is an integer in YAML;"),
            ("1_000", "`1_000` is an integer in YAML 1.1;"),
            ("0x1F", "`0x1F` is a hexadecimal integer in YAML;"),
            ("0o17", "`0o17` is an octal integer in YAML 1.2;"),
            ("0b101", "`0b101` is a binary integer in YAML 1.1;"),
            ("1e3", "`1e3` is a floating-point number in YAML;"),
            ("1.5", "`1.5` is a floating-point number in YAML;"),
            ("1.", "`1.` is a floating-point number in YAML;"),
            (".5", "`.5` is a floating-point number in YAML;"),
            ("-2.5E-3", "`-2.5E-3` is a floating-point number in YAML;"),
            (".inf", "`.inf` is a floating-point number (infinity) in YAML;"),
            ("-.Inf", "`-.Inf` is a floating-point number (infinity) in YAML;"),
            (".nan", "`.nan` is a floating-point number (NaN) in YAML;"),
            ("1:30", "`1:30` is a sexagesimal (base 60) number in YAML 1.1;"),
            ("190:20:30.15", "`190:20:30.15` is a sexagesimal (base 60) number in YAML 1.1;"),
        ];
        for (value, expected) in cases {
            let (out, diags) = read_value(value, |r, n, p| r.string(n, p));
            assert_eq!(out, None, "{value}");
            assert_eq!(diags.len(), 1, "{value}: {diags:?}");
            assert_eq!(diags[0].span, at(1, 4), "{value}");
            assert_eq!(diags[0].path, "v");
            assert!(
                diags[0].message.starts_with(expected),
                "{value}: got {:?}, want prefix {expected:?}",
                diags[0].message
            );
        }
        let (out, diags) = read_value("", |r, n, p| r.string(n, p));
        assert_eq!(out, None);
        assert!(diags[0].message.contains("found an empty value"), "{diags:?}");
    }

    #[test]
    fn plain_and_quoted_strings_are_accepted() {
        let cases: &[(&str, &str)] = &[
            ("\"off\"", "off"),
            ("'yes'", "yes"),
            ("\"0123\"", "0123"),
            ("'~'", "~"),
            ("\"\"", ""),
            ("hello world", "hello world"),
            ("1.2.3", "1.2.3"),
            ("10.0.0.1", "10.0.0.1"),
            ("localhost:8080", "localhost:8080"),
            (":8080", ":8080"),
            ("8080:80", "8080:80"),
            ("0x", "0x"),
            ("1e", "1e"),
            ("e3", "e3"),
            (".", "."),
            ("yesno", "yesno"),
            ("nullable", "nullable"),
            ("https://example.com/a?b=c", "https://example.com/a?b=c"),
            ("\"tab\\tless\"", "tab\tless"),
            ("|-\n  literal", "literal"),
        ];
        for (value, expected) in cases {
            let (out, diags) = read_value(value, |r, n, p| r.string(n, p));
            if value.contains("\\t") {
                // Control characters are rejected even when quoted.
                assert_eq!(out, None);
                assert!(diags[0].message.contains("control characters (found a tab)"));
                continue;
            }
            assert_eq!(diags, vec![], "{value}");
            assert_eq!(out.as_deref(), Some(*expected), "{value}");
        }
        // A literal block keeps its final newline, which is a control character.
        let (out, diags) = read_value("|\n  two\n  lines", |r, n, p| r.string(n, p));
        assert_eq!(out, None);
        assert!(diags[0].message.contains("found a line break"), "{diags:?}");
    }

    #[test]
    fn env_substitution() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("\"${env:SECRET}\"", Ok("s3cret")),
            ("Bearer ${env:SECRET}!", Ok("Bearer s3cret!")),
            ("${env:SECRET}${env:_UNDER_1}", Ok("s3cretu")),
            ("x${env:EMPTY}y", Ok("xy")),
            ("$${env:SECRET}", Ok("${env:SECRET}")),
            ("'cost: $$5'", Ok("cost: $$5")),
            ("\"${client_id}\"", Ok("${client_id}")),
            ("/auth/${client_id}/$${x}", Ok("/auth/${client_id}/${x}")),
            ("${env:MISSING}", Err("environment variable `MISSING` is not set")),
            ("\"${env:1BAD}\"", Err("invalid environment variable name \"1BAD\"")),
            ("\"${env:SECRET\"", Err("unterminated `${env:` reference")),
            ("${env:NEWLINE}", Err("after substituting environment variables")),
        ];
        for (value, expected) in cases {
            let (out, diags) = read_value(value, |r, n, p| r.string(n, p));
            match expected {
                Ok(want) => {
                    assert_eq!(diags, vec![], "{value}");
                    assert_eq!(out.as_deref(), Some(*want), "{value}");
                }
                Err(want) => {
                    assert_eq!(out, None, "{value}");
                    assert_eq!(diags.len(), 1, "{value}: {diags:?}");
                    assert_eq!(diags[0].span, at(1, 4));
                    assert!(diags[0].message.starts_with(want), "{value}: {diags:?}");
                }
            }
        }
        // Every missing variable is reported.
        let (_, diags) = read_value("${env:A1}-${env:A2}", |r, n, p| r.string(n, p));
        assert_eq!(
            messages(&diags),
            vec!["environment variable `A1` is not set", "environment variable `A2` is not set"]
        );
    }

    #[test]
    fn booleans() {
        let cases: &[(&str, Result<bool, &str>)] = &[
            ("true", Ok(true)),
            ("false", Ok(false)),
            ("yes", Err("`yes` is not accepted as a boolean here; write true or false")),
            ("True", Err("`True` is not accepted as a boolean here")),
            ("\"true\"", Err("expected a boolean, found the quoted string \"true\"; remove")),
            ("1", Err("expected a boolean (true or false), found an integer `1`")),
            ("[true]", Err("expected a boolean (true or false), found a list")),
        ];
        for (value, expected) in cases {
            let (out, diags) = read_value(value, |r, n, p| r.bool(n, p));
            match expected {
                Ok(want) => {
                    assert_eq!(diags, vec![], "{value}");
                    assert_eq!(out, Some(*want));
                }
                Err(want) => {
                    assert_eq!(out, None, "{value}");
                    assert_eq!(diags[0].span, at(1, 4));
                    assert!(diags[0].message.starts_with(want), "{value}: {diags:?}");
                }
            }
        }
    }

    #[test]
    fn unsigned_integers() {
        let cases: &[(&str, Result<u64, &str>)] = &[
            ("0", Ok(0)),
            ("7", Ok(7)),
            ("8080", Ok(8080)),
            ("18446744073709551615", Ok(u64::MAX)),
            ("18446744073709551616", Err("`18446744073709551616` is too large")),
            ("99999999999999999999999", Err("`99999999999999999999999` is too large")),
            ("00", Err("leading zeros are not allowed")),
            ("0123", Err("leading zeros are not allowed (YAML 1.1 reads `0123` as octal); write 123")),
            ("-1", Err("`-1` is negative")),
            ("+5", Err("remove the `+` sign: write 5")),
            ("1_000", Err("underscores are not allowed in numbers; write 1000")),
            ("0x10", Err("`0x10` is a hexadecimal integer; only plain decimal digits")),
            ("0o10", Err("`0o10` is an octal integer")),
            ("1.5", Err("expected a whole number, found `1.5`")),
            ("1e3", Err("expected a whole number, found `1e3`")),
            ("\"42\"", Err("expected an integer, found the quoted string \"42\"; remove the quotes")),
            ("ten", Err("expected a non-negative integer, found a string `ten`")),
            ("", Err("expected a non-negative integer, found an empty value")),
            ("{}", Err("expected a non-negative integer, found a mapping")),
        ];
        for (value, expected) in cases {
            let (out, diags) = read_value(value, |r, n, p| r.u64(n, p));
            match expected {
                Ok(want) => {
                    assert_eq!(diags, vec![], "{value}");
                    assert_eq!(out, Some(*want));
                }
                Err(want) => {
                    assert_eq!(out, None, "{value}");
                    assert_eq!(diags.len(), 1, "{value}: {diags:?}");
                    assert!(diags[0].message.starts_with(want), "{value}: {diags:?}");
                }
            }
        }
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Result<Duration, &str>)] = &[
            ("0s", Ok(Duration::ZERO)),
            ("500ms", Ok(Duration::from_millis(500))),
            ("30s", Ok(Duration::from_secs(30))),
            ("\"30s\"", Ok(Duration::from_secs(30))),
            ("5m", Ok(Duration::from_secs(300))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("1d", Ok(Duration::from_secs(86_400))),
            ("30", Err("`30` has no unit; durations need one (ms, s, m, h, d): write 30s")),
            ("0", Err("`0` has no unit; durations need one (ms, s, m, h, d): write 0s")),
            ("30 s", Err("remove the space in `30 s`: write 30s")),
            ("-1s", Err("`-1s`: durations must not be negative")),
            ("1.5s", Err("`1.5s`: fractional durations are not supported")),
            ("10x", Err("unknown duration unit `x` in `10x`; expected one of: ms, s, m, h, d")),
            ("10S", Err("unknown duration unit `S`")),
            ("1h30m", Err("`1h30m`: combined units are not supported")),
            ("s", Err("invalid duration `s`")),
            ("99999999999999999999s", Err("duration `99999999999999999999s` is too large")),
            ("999999999999999999d", Err("duration `999999999999999999d` is too large")),
            ("", Err("expected a duration such as 30s, found an empty value")),
            ("[1s]", Err("expected a duration such as 30s, found a list")),
        ];
        for (value, expected) in cases {
            let (out, diags) = read_value(value, |r, n, p| r.duration(n, p));
            match expected {
                Ok(want) => {
                    assert_eq!(diags, vec![], "{value}");
                    assert_eq!(out, Some(*want));
                }
                Err(want) => {
                    assert_eq!(out, None, "{value}");
                    assert_eq!(diags.len(), 1, "{value}: {diags:?}");
                    // An empty value is reported at its key.
                    let span = if value.is_empty() { at(1, 1) } else { at(1, 4) };
                    assert_eq!(diags[0].span, span, "{value}");
                    assert!(diags[0].message.starts_with(want), "{value}: {diags:?}");
                }
            }
        }
    }

    #[test]
    fn string_lists() {
        let (out, diags) = read_value("[a, \"b\"]", |r, n, p| r.string_list(n, p));
        assert_eq!(diags, vec![]);
        assert_eq!(out, Some(vec!["a".to_string(), "b".to_string()]));

        let (out, diags) = read_value("\n  - a\n  - b", |r, n, p| r.string_list(n, p));
        assert_eq!(diags, vec![]);
        assert_eq!(out, Some(vec!["a".to_string(), "b".to_string()]));

        let (out, diags) = read_value("[]", |r, n, p| r.string_list(n, p));
        assert_eq!(out, None);
        assert_eq!(diags, vec![Diagnostic { span: at(1, 4), path: "v".into(), message: "must not be empty".into() }]);

        let (out, diags) = read_value("\n  - ok\n  - off\n  - [x]", |r, n, p| r.string_list(n, p));
        assert_eq!(out, None);
        let got: Vec<(Span, &str)> = diags.iter().map(|d| (d.span, d.path.as_str())).collect();
        assert_eq!(got, vec![(at(3, 5), "v[1]"), (at(4, 5), "v[2]")]);

        let (out, diags) = read_value("admins", |r, n, p| r.string_list(n, p));
        assert_eq!(out, None);
        assert_eq!(messages(&diags), vec!["expected a list of strings, found a string `admins`"]);
    }

    // ----- whole documents -----------------------------------------------------------

    #[test]
    fn all_errors_of_a_document_are_reported_in_line_order() {
        let src = "\
listen: 8080
upstream:
  url: http://backend
  timeout: 30
routes:
  - path: /api
    require:
      groups_any: []
  - path: /admin
    methods: [GET, on]
    requre: {}
tls: yes
";
        let root = parse_ok(src);
        let env = no_env;
        let mut r = Reader::new(&env);
        // Read out of file order on purpose: diagnostics come back sorted.
        if let Some(map) = r.map(&root, "", &["listen", "upstream", "routes", "tls"]) {
            if let Some(tls) = map.get("tls") {
                r.bool(tls, "tls");
            }
            if let Some(routes) = map.get("routes").and_then(|n| r.seq(n, "routes")) {
                for (i, route) in routes.iter().enumerate() {
                    let path = index_path("routes", i);
                    let Some(route) = r.map(route, &path, &["path", "methods", "require"]) else {
                        continue;
                    };
                    if let Some(methods) = route.get("methods") {
                        r.string_list(methods, &field_path(&path, "methods"));
                    }
                    if let Some(require) = route.get("require") {
                        let rpath = field_path(&path, "require");
                        if let Some(req) = r.map(require, &rpath, &["groups_any"])
                            && let Some(g) = req.get("groups_any")
                        {
                            r.string_list(g, &field_path(&rpath, "groups_any"));
                        }
                    }
                }
            }
            if let Some(up) = map.get("upstream")
                && let Some(up) = r.map(up, "upstream", &["url", "timeout"])
                && let Some(t) = up.get("timeout")
            {
                r.duration(t, "upstream.timeout");
            }
            if let Some(listen) = map.get("listen") {
                r.string(listen, "listen");
            }
        }
        assert!(r.has_errors());
        let rendered: Vec<String> = r.diagnostics().iter().map(|d| render("portcullis.yaml", d)).collect();
        assert_eq!(
            rendered,
            vec![
                "portcullis.yaml:1:9: listen: `8080` is an integer in YAML; quote it (\"8080\") \
                 if you mean the string",
                "portcullis.yaml:4:12: upstream.timeout: `30` has no unit; durations need one \
                 (ms, s, m, h, d): write 30s",
                "portcullis.yaml:8:19: routes[0].require.groups_any: must not be empty",
                "portcullis.yaml:10:20: routes[1].methods[1]: `on` is a boolean in YAML 1.1; \
                 quote it (\"on\") if you mean the string",
                "portcullis.yaml:11:5: routes[1]: unknown key `requre`; did you mean `require`? \
                 expected one of: methods, path, require",
                "portcullis.yaml:12:6: tls: `yes` is not accepted as a boolean here; write true \
                 or false",
            ]
        );
    }

    #[test]
    fn paths_and_rendering() {
        assert_eq!(field_path("", "listen"), "listen");
        assert_eq!(field_path("routes[2]", "require"), "routes[2].require");
        assert_eq!(field_path("claims", "X-User-Email"), "claims.X-User-Email");
        assert_eq!(field_path("claims", "a.b"), "claims[\"a.b\"]");
        assert_eq!(index_path("routes", 2), "routes[2]");
        let d = Diagnostic {
            span: at(12, 7),
            path: "routes[2].require.groups_any".into(),
            message: "must not be empty".into(),
        };
        assert_eq!(
            render("portcullis.yaml", &d),
            "portcullis.yaml:12:7: routes[2].require.groups_any: must not be empty"
        );
        let root = Diagnostic { path: String::new(), ..d.clone() };
        assert_eq!(render("c.yaml", &root), "c.yaml:12:7: must not be empty");
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("timeout", "timout"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("ü", "u"), 1);
    }
}
