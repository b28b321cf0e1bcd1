//! The floor plan of issue #11, enforced on the workspace's own sources. The tests read every crate's `src/` from
//! disk and parse it with `syn`, so comments and strings never count and `use` trees with nested braces resolve
//! exactly. Code under `#[cfg(test)]` is skipped. Each test fails with every offender, by file, module and line:
//!
//! - no module of a crate depends on another that depends back on it, directly or around a circle;
//! - no source file is over 700 lines before its trailing test modules, unless ARCHITECTURE.md lists it with a reason;
//! - in `crates/xregion`, only the target lifecycle (`target`) and `lab_cmd` name `xregion_lab`;
//! - `now_ms` is defined once;
//! - no code in `crates/xregion` picks behaviour by comparing a check's id or suite with a string: the check
//!   catalogue is the dispatch.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proc_macro2::{Ident, Spacing, Span, TokenStream, TokenTree};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Attribute, Expr, Item, Meta, Pat, Token, UseTree};

/// Lines a source file may hold before its trailing test modules; past it, a file holds more than one concept.
const FILE_LINES_MAX: usize = 700;
/// The heading of ARCHITECTURE.md's section that lists the files allowed over `FILE_LINES_MAX`, each with a reason.
const LONG_FILES_HEADING: &str = "## Files over 700 lines";
/// The files of crates/xregion that may name `xregion_lab`: the target lifecycle (a file, or a directory when it ends
/// in `/`) and `xregion lab …`. Checks reach a deployment through the probe contract only.
const LAB_IMPORTERS: [&str; 3] =
    ["crates/xregion/src/target.rs", "crates/xregion/src/target/", "crates/xregion/src/lab_cmd.rs"];
/// How many `use` bindings deep a name is followed, so that a binding circle cannot loop forever.
const ALIAS_DEPTH_MAX: usize = 8;

/// Goal: no two modules of a crate depend on each other, even around a circle. Method: a module graph per crate
/// target from syn's paths and `use` trees (a module's references to itself and its ancestors are no edges), and
/// Tarjan's strongly connected components of more than one module.
#[test]
fn no_module_import_circles() {
    let mut offenders = scan_errors();
    for scan in workspace() {
        for circle in scan.circles() {
            offenders.push(circle.describe(&scan.label));
        }
    }
    assert!(
        offenders.is_empty(),
        "{} module circles; break each by moving what both sides need into a module that neither imports from, or by \
         passing it in:\n{}",
        offenders.len(),
        offenders.join("\n")
    );
}

/// Goal: every source file is short enough to hold one concept. Method: count each crates/*/src file's lines up to
/// its trailing `#[cfg(test)]` modules, and compare with ARCHITECTURE.md's list of exceptions both ways (a listed
/// file that is no longer long is a stale exception).
#[test]
fn no_file_over_700_lines() {
    let root = workspace_root();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let listed = listed_long_files(&architecture);
    let test_only: Vec<&String> = workspace().iter().flat_map(|s| &s.test_only).collect();
    let mut offenders = scan_errors();
    let mut seen = BTreeSet::new();
    for file in source_files(&root) {
        // A file that only a `#[cfg(test)] mod x;` reaches is a trailing test module moved out of its parent.
        if test_only.iter().any(|t| file == **t || (t.ends_with('/') && file.starts_with(t.as_str()))) {
            continue;
        }
        let text = std::fs::read_to_string(root.join(&file)).expect("read a source file");
        let lines = match lines_before_tests(&text) {
            Ok(lines) => lines,
            Err(e) => {
                offenders.push(format!("{file}:{}: does not parse: {e}", e.span().start().line));
                continue;
            }
        };
        let is_listed = listed.contains(&file);
        if lines > FILE_LINES_MAX && !is_listed {
            offenders.push(format!(
                "{file}: {lines} lines before its tests (limit {FILE_LINES_MAX}): split it, or list it under \
                 `{LONG_FILES_HEADING}` in ARCHITECTURE.md with a reason"
            ));
        } else if lines <= FILE_LINES_MAX && is_listed {
            offenders.push(format!(
                "{file}: listed under `{LONG_FILES_HEADING}` in ARCHITECTURE.md but has {lines} lines before its \
                 tests (limit {FILE_LINES_MAX}): remove the stale exception"
            ));
        }
        seen.insert(file);
    }
    for file in listed.difference(&seen) {
        offenders.push(format!(
            "{file}: listed under `{LONG_FILES_HEADING}` in ARCHITECTURE.md but is no source file: remove the stale \
             exception"
        ));
    }
    assert!(offenders.is_empty(), "{} files over {FILE_LINES_MAX} lines:\n{}", offenders.len(), offenders.join("\n"));
}

/// Goal: checks see a deployment only through the probe contract. Method: every path segment and `use` leaf
/// `xregion_lab` in crates/xregion/src (syn, so not comments or docs) must be in the target lifecycle or `lab_cmd`.
#[test]
fn only_the_target_lifecycle_and_lab_cmd_import_xregion_lab() {
    let mut offenders = scan_errors();
    for scan in workspace().iter().filter(|s| s.package == "xregion") {
        let mut lines = BTreeSet::new();
        for r in &scan.refs {
            let allowed = LAB_IMPORTERS
                .iter()
                .any(|a| if a.ends_with('/') { r.site.file.starts_with(a) } else { r.site.file == *a });
            if r.segments.iter().any(|s| s == "xregion_lab") && !allowed && lines.insert((&r.site.file, r.site.line)) {
                offenders.push(format!("{}: {}", r.site, scan.quote(&r.site)));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "{} places outside the target lifecycle (crates/xregion/src/target) and lab_cmd name xregion_lab:\n{}",
        offenders.len(),
        offenders.join("\n")
    );
}

/// Goal: one clock helper, not a copy per module. Method: count `fn now_ms` items and methods (syn, outside
/// `#[cfg(test)]`): exactly one in crates/xregion, at most one in each other crate.
#[test]
fn now_ms_is_defined_once() {
    let mut offenders = scan_errors();
    let mut by_package: BTreeMap<&str, Vec<&Site>> = BTreeMap::new();
    for scan in workspace() {
        let sites = by_package.entry(&scan.package).or_default();
        sites.extend(scan.fns.iter().filter(|(name, _)| name == "now_ms").map(|(_, site)| site));
    }
    for (package, sites) in &by_package {
        let allowed = if *package == "xregion" { 1..=1 } else { 0..=1 };
        if !allowed.contains(&sites.len()) {
            let list: Vec<String> = sites.iter().map(|s| format!("  {s}")).collect();
            offenders.push(format!(
                "crate {package}: {} definitions of fn now_ms, wanted {}:\n{}",
                sites.len(),
                if *package == "xregion" { "exactly one" } else { "at most one" },
                list.join("\n")
            ));
        }
    }
    assert!(offenders.is_empty(), "now_ms is defined more than once:\n{}", offenders.join("\n"));
}

/// Goal: behaviour is chosen by the check catalogue, never by a check's id or suite spelled as a string. Method:
/// syn finds, in crates/xregion/src outside `#[cfg(test)]`, `==`/`!=`, method calls, `match` and `matches!` that
/// put a string literal against `….id`, `id`, `.id()`, `.suite()` or `.suite`.
#[test]
fn no_id_dispatch() {
    let mut offenders = scan_errors();
    for scan in workspace().iter().filter(|s| s.package == "xregion") {
        // A line with two comparisons is one offender: the line is what gets rewritten.
        let mut lines = BTreeSet::new();
        for site in scan.id_dispatch.iter().filter(|s| lines.insert((&s.file, s.line))) {
            offenders.push(format!("{site}: {}", scan.quote(site)));
        }
    }
    assert!(
        offenders.is_empty(),
        "{} lines compare a check id or suite with a string literal (give the check catalogue's entry what it needs \
         instead):\n{}",
        offenders.len(),
        offenders.join("\n")
    );
}

/// Goal: the graph finds a circle whose one side is a nested braces `use` tree, with a witness per step. Method:
/// three small inline files.
#[test]
fn helper_finds_a_circle_through_a_braced_use_tree() {
    let scan = scan_sources(&[
        ("src/lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("src/a.rs", "use crate::{b::{self, Thing}, c::Other};\npub struct A;\n"),
        ("src/b.rs", "pub struct Thing;\npub fn make() -> super::a::A {\n    super::a::A\n}\n"),
        ("src/c.rs", "pub struct Other;\n"),
    ]);
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let circles = scan.circles();
    assert_eq!(circles.len(), 1, "{:?}", circles.iter().map(|c| c.describe("demo")).collect::<Vec<_>>());
    assert_eq!(circles[0].describe("demo"), "crate demo: a -> b -> a\n    a -> b: src/a.rs:1\n    b -> a: src/b.rs:2");
}

/// Goal: a module's references to itself and its ancestors are no edges, and a parent's to its child is one.
/// Method: the dependencies of a three-level inline crate.
#[test]
fn helper_counts_children_but_not_ancestors() {
    let scan = scan_sources(&[
        ("src/lib.rs", "pub mod node;\npub struct Root;\n"),
        ("src/node/mod.rs", "pub mod store;\npub struct Node;\npub fn open() -> store::Store {\n    todo!()\n}\n"),
        (
            "src/node/store.rs",
            "use super::Node;\nuse crate::Root;\npub struct Store(pub Node, pub crate::Root, pub self::Inner);\n\
             pub struct Inner;\nmod deep {\n    use super::super::Node;\n    pub(super) struct D(Node);\n}\n",
        ),
    ]);
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let deps: Vec<(String, String)> =
        scan.dependencies().into_keys().map(|(from, to)| (module_name(&from), module_name(&to))).collect();
    assert_eq!(deps, [("node".to_string(), "node::store".to_string())]);
    assert!(scan.circles().is_empty());
}

/// Goal: `use` trees flatten exactly through nested braces, `self`, renames and globs. Method: one `use` item.
#[test]
fn helper_flattens_nested_use_trees() {
    let item: syn::ItemUse = syn::parse_str("use crate::{a::{b, c as d}, e::*, f::{self}};").unwrap();
    let mut leaves = Vec::new();
    flatten_use(&item.tree, &mut Vec::new(), &mut leaves);
    let got: Vec<(String, Option<String>)> = leaves.into_iter().map(|l| (l.segments.join("::"), l.binding)).collect();
    let want = [("crate::a::b", Some("b")), ("crate::a::c", Some("d")), ("crate::e", None), ("crate::f", Some("f"))];
    assert_eq!(got, want.map(|(p, b)| (p.to_string(), b.map(str::to_string))));
}

/// Goal: code under `#[cfg(test)]` makes no edge, defines no `now_ms` and loads no file. Method: a circle that
/// exists only through a test module, a test-only `now_ms` and a test-only `mod more;` without a file.
#[test]
fn helper_skips_cfg_test_code() {
    let scan = scan_sources(&[
        ("src/lib.rs", "mod a;\nmod b;\n"),
        (
            "src/a.rs",
            "pub struct A;\n#[cfg(test)]\nmod tests {\n    use crate::b::B;\n}\n#[cfg(all(test, unix))]\n\
             fn now_ms() -> u64 {\n    crate::b::now_ms()\n}\n#[cfg(test)]\nmod more;\n",
        ),
        ("src/b.rs", "pub struct B(pub crate::a::A);\npub fn now_ms() -> u64 {\n    0\n}\n"),
    ]);
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    assert!(scan.circles().is_empty());
    let fns: Vec<String> = scan.fns.iter().map(|(name, site)| format!("{name} {}:{}", site.file, site.line)).collect();
    assert_eq!(fns, ["now_ms src/b.rs:2"]);
    assert!(!scan.modules.contains_key(&vec!["a".to_string(), "tests".to_string()]));
    assert!(scan.test_only.contains(&"src/a/more.rs".to_string()));
}

/// Goal: paths inside macro bodies count, also where syn cannot parse the body (`select!`). Method: a circle
/// made only inside macros.
#[test]
fn helper_reads_paths_inside_macros() {
    let scan = scan_sources(&[
        ("src/lib.rs", "mod a;\nmod b;\n"),
        (
            "src/a.rs",
            "pub const NAME: &str = \"a\";\npub async fn run() {\n    tokio::select! {\n        \
             r = crate::b::go() => r,\n    }\n}\n",
        ),
        ("src/b.rs", "pub async fn go() {}\npub fn show() {\n    println!(\"{}\", crate::a::NAME);\n}\n"),
    ]);
    let circles = scan.circles();
    assert_eq!(circles.len(), 1);
    assert_eq!(circles[0].describe("demo"), "crate demo: a -> b -> a\n    a -> b: src/a.rs:4\n    b -> a: src/b.rs:3");
}

/// Goal: the id-dispatch finder flags literal comparisons of ids and suites, and no comparison between two values.
/// Method: one function with four dispatches and three harmless comparisons.
#[test]
fn helper_flags_id_dispatch_only() {
    let source = "pub fn pick(def: &Def, other: &str) -> u8 {
    if def.id.starts_with(\"security.\") {
        return 1;
    }
    if def.suite() == \"performance\" || def.id == other || other == def.suite() {
        return 2;
    }
    if matches!(def.id, \"a\" | \"b\") || def.name == \"x\" {
        return 3;
    }
    match def.id {
        \"c\" => 4,
        _ => 5,
    }
}
";
    let scan = scan_sources(&[("src/lib.rs", source)]);
    let lines: Vec<usize> = scan.id_dispatch.iter().map(|s| s.line).collect();
    assert_eq!(lines, [2, 5, 8, 11]);
}

/// Goal: only a trailing run of `#[cfg(test)]` modules is left out of a file's length. Method: two small sources.
#[test]
fn helper_counts_lines_before_trailing_tests() {
    let trailing = "fn a() {}\n\nfn b() {}\n/// Tests.\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n\
                    #[cfg(test)]\nmod more_tests;\n// A closing note.\n";
    assert_eq!(lines_before_tests(trailing).unwrap(), 3);
    let inside = "fn a() {}\n#[cfg(test)]\nmod tests {}\nfn b() {}\n";
    assert_eq!(lines_before_tests(inside).unwrap(), 4);
}

/// Goal: exceptions come only from bullets of the `## Files over 700 lines` section. Method: a small document with
/// a code block and a second section.
#[test]
fn helper_reads_long_file_exceptions_from_their_section_only() {
    let md = "# A\n- `crates/a/src/v.rs`: before\n## Files over 700 lines\n- `crates/a/src/x.rs`: generated tables\n\
              * `crates/a/src/y.rs`: reason\n```\n# not a heading\n```\n- `crates/a/src/z.rs`: still here\n\
              ## Other\n- `crates/a/src/w.rs`: elsewhere\n";
    let got: Vec<String> = listed_long_files(md).into_iter().collect();
    assert_eq!(got, ["crates/a/src/x.rs", "crates/a/src/y.rs", "crates/a/src/z.rs"]);
}

/// Goal: Tarjan's components and the closed walk are right on a graph with two circles and a tail. Method: raw
/// edges 0→1→2→0 (with a chord 0→2), 3⇄4, 5→0.
#[test]
fn helper_finds_components_and_walks_them() {
    let edges = vec![vec![1, 2], vec![2], vec![0], vec![4], vec![3], vec![0]];
    let mut components = strongly_connected(&edges);
    components.sort();
    assert_eq!(components, [vec![0, 1, 2], vec![3, 4], vec![5]]);
    assert_eq!(closed_walk(&edges, &[0, 1, 2]), [0, 1, 2, 0]);
    assert_eq!(closed_walk(&edges, &[3, 4]), [3, 4, 3]);
}

// ---------------------------------------------------------------------------------------------------------------
// The scan: one pass over a crate target's files, following its `mod` declarations from the root file.

/// Where something was written.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Site {
    /// The file, relative to the workspace root, with `/` separators.
    file: String,
    /// The module it is in, from the crate root (empty for the root itself).
    module: Vec<String>,
    /// The line, counted from 1.
    line: usize,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (module {})", self.file, self.line, module_name(&self.module))
    }
}

/// A path as written: `crate::a::B`, `super::x`, `probe::Client`, or one leaf of a `use` tree.
struct Ref {
    /// Where it was written.
    site: Site,
    /// Its segments, generics left out.
    segments: Vec<String>,
    /// A `use` path may end at a module; a path in code ends at an item, so its last segment is never a module.
    in_use: bool,
}

/// What one pass over a crate target's sources finds outside `#[cfg(test)]` code.
#[derive(Default)]
struct CrateScan {
    /// The package directory's name, plus the root file for a binary: `xregion (src/main.rs)`.
    label: String,
    /// The package directory's name, e.g. `xregion-load`.
    package: String,
    /// Every module, from the crate root (`[]`), and the file that holds it (inline modules included).
    modules: BTreeMap<Vec<String>, String>,
    /// Every path written, with its site.
    refs: Vec<Ref>,
    /// The names that `use` items bind, per module: (module, name) to the path as written.
    aliases: BTreeMap<(Vec<String>, String), Vec<String>>,
    /// Every `fn` item and method: its name and site.
    fns: Vec<(String, Site)>,
    /// Comparisons of a check's id or suite with a string literal.
    id_dispatch: Vec<Site>,
    /// Files, or directories ending in `/`, that only `#[cfg(test)] mod x;` declarations reach.
    test_only: Vec<String>,
    /// Every file read, for quoting an offending line.
    texts: BTreeMap<String, String>,
    /// Declared modules without a file, and files that do not parse.
    errors: Vec<String>,
}

/// An out-of-line module (`mod x;`) waiting to be read.
struct Pending {
    /// Its path from the crate root.
    module: Vec<String>,
    /// The files that may hold it, in rustc's order.
    candidates: Vec<String>,
    /// The directory of its own `mod y;` files.
    child_dir: String,
    /// Where it was declared; `None` for the crate root.
    declared: Option<Site>,
}

/// Scans the crate target rooted at `root` (a path like `crates/x/src/lib.rs`), reading files through `read`.
fn scan_crate(package: &str, label: String, root: &str, read: &dyn Fn(&str) -> Option<String>) -> CrateScan {
    let mut scan = CrateScan { label, package: package.to_string(), ..CrateScan::default() };
    let mut queue = vec![Pending {
        module: Vec::new(),
        candidates: vec![root.to_string()],
        child_dir: parent_dir(root).to_string(),
        declared: None,
    }];
    while let Some(pending) = queue.pop() {
        let Some((file, text)) = pending.candidates.iter().find_map(|c| read(c).map(|text| (c.clone(), text))) else {
            let at = pending.declared.map_or_else(|| "crate root".to_string(), |s| s.to_string());
            scan.errors.push(format!("{at}: module has no file (looked for {})", pending.candidates.join(", ")));
            continue;
        };
        match syn::parse_file(&text) {
            Ok(ast) => {
                scan.modules.insert(pending.module.clone(), file.clone());
                let mut scanner = Scan {
                    out: &mut scan,
                    queue: &mut queue,
                    file: file.clone(),
                    module: pending.module,
                    child_dir: pending.child_dir,
                    inline_depth: 0,
                };
                scanner.visit_file(&ast);
            }
            Err(e) => scan.errors.push(format!("{file}:{}: does not parse: {e}", e.span().start().line)),
        }
        scan.texts.insert(file, text);
    }
    scan
}

/// One file's visitor: records into its crate's scan, keeping track of the module it is in.
struct Scan<'a> {
    /// The crate's findings.
    out: &'a mut CrateScan,
    /// Out-of-line modules declared so far, to read next.
    queue: &'a mut Vec<Pending>,
    /// The file being read.
    file: String,
    /// The module being read (inline modules push onto it).
    module: Vec<String>,
    /// The directory of the current module's `mod y;` files.
    child_dir: String,
    /// How many inline modules deep the visitor is, which decides what `#[path]` is relative to.
    inline_depth: usize,
}

impl Scan<'_> {
    fn site(&self, line: usize) -> Site {
        Site { file: self.file.clone(), module: self.module.clone(), line }
    }

    fn push_ref(&mut self, segments: Vec<String>, in_use: bool, line: usize) {
        if !segments.is_empty() {
            self.out.refs.push(Ref { site: self.site(line), segments, in_use });
        }
    }

    fn flag_id_dispatch(&mut self, span: Span) {
        self.out.id_dispatch.push(self.site(span.start().line));
    }

    /// Flags a `match` (or `matches!`) on a check's id or suite with a string literal among its patterns.
    fn check_match<'p>(&mut self, scrutinee: &Expr, mut patterns: impl Iterator<Item = &'p Pat>, span: Span) {
        if reads_check_id(scrutinee) && patterns.any(pat_has_str_literal) {
            self.flag_id_dispatch(span);
        }
    }

    /// The files that may hold out-of-line module `m`, and the directory of its own module files.
    fn module_files(&self, m: &syn::ItemMod) -> (Vec<String>, String) {
        let child_dir = format!("{}/{}", self.child_dir, m.ident);
        match path_attr(&m.attrs) {
            // rustc reads `#[path]` from the file's directory at file level, and from the inline modules' inside them.
            Some(path) => {
                let base = if self.inline_depth == 0 { parent_dir(&self.file) } else { &self.child_dir };
                let file = format!("{base}/{path}");
                let dir = file.strip_suffix("/mod.rs").or(file.strip_suffix(".rs")).unwrap_or(&file).to_string();
                (vec![file], dir)
            }
            None => (vec![format!("{child_dir}.rs"), format!("{child_dir}/mod.rs")], child_dir),
        }
    }
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_file(&mut self, f: &'ast syn::File) {
        if !is_cfg_test(&f.attrs) {
            visit::visit_file(self, f);
        }
    }

    fn visit_item(&mut self, item: &'ast Item) {
        if !is_cfg_test(item_attrs(item)) {
            visit::visit_item(self, item);
        } else if let Item::Mod(m) = item
            && m.content.is_none()
        {
            let (candidates, child_dir) = self.module_files(m);
            self.out.test_only.extend(candidates);
            self.out.test_only.push(format!("{child_dir}/"));
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs: &[Attribute] = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_cfg_test(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast syn::TraitItem) {
        let attrs: &[Attribute] = match item {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_cfg_test(attrs) {
            visit::visit_trait_item(self, item);
        }
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if !is_cfg_test(&local.attrs) {
            visit::visit_local(self, local);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let Some((_, items)) = &m.content else {
            let (candidates, child_dir) = self.module_files(m);
            let mut module = self.module.clone();
            module.push(m.ident.to_string());
            let declared = Some(self.site(m.ident.span().start().line));
            self.queue.push(Pending { module, candidates, child_dir, declared });
            return;
        };
        // An inline module is a module of its own, in its parent's file.
        let inner_dir = format!("{}/{}", self.child_dir, m.ident);
        let outer_dir = std::mem::replace(&mut self.child_dir, inner_dir);
        self.module.push(m.ident.to_string());
        self.out.modules.insert(self.module.clone(), self.file.clone());
        self.inline_depth += 1;
        for item in items {
            self.visit_item(item);
        }
        self.inline_depth -= 1;
        self.module.pop();
        self.child_dir = outer_dir;
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        flatten_use(&u.tree, &mut Vec::new(), &mut leaves);
        for leaf in leaves {
            if let Some(name) = leaf.binding.filter(|n| n != "_") {
                self.out.aliases.insert((self.module.clone(), name), leaf.segments.clone());
            }
            self.push_ref(leaf.segments, true, leaf.line);
        }
    }

    fn visit_item_extern_crate(&mut self, e: &'ast syn::ItemExternCrate) {
        self.push_ref(vec![e.ident.to_string()], true, e.ident.span().start().line);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if let Some(first) = p.segments.first() {
            let segments = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.push_ref(segments, false, first.ident.span().start().line);
        }
        visit::visit_path(self, p);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.out.fns.push((f.sig.ident.to_string(), self.site(f.sig.ident.span().start().line)));
        visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.out.fns.push((f.sig.ident.to_string(), self.site(f.sig.ident.span().start().line)));
        visit::visit_impl_item_fn(self, f);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        visit::visit_macro(self, m);
        // A macro body is tokens to syn: read it as `matches!`, as comma-separated expressions (`format!`,
        // `assert!`, `vec!`), or else token by token for paths (`select!`, `json!`).
        if m.path.is_ident("matches")
            && let Ok((scrutinee, pat, guard)) = m.parse_body_with(parse_matches)
        {
            self.visit_expr(&scrutinee);
            self.visit_pat(&pat);
            if let Some(guard) = &guard {
                self.visit_expr(guard);
            }
            self.check_match(&scrutinee, std::iter::once(&pat), scrutinee.span());
        } else if let Ok(args) = m.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for arg in &args {
                self.visit_expr(arg);
            }
        } else {
            let mut paths = Vec::new();
            token_paths(m.tokens.clone(), &mut paths);
            for (segments, line) in paths {
                self.push_ref(segments, false, line);
            }
        }
    }

    fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
        let equality = matches!(b.op, syn::BinOp::Eq(_) | syn::BinOp::Ne(_));
        let literal_against_id = (reads_check_id(&b.left) && is_str_literal(&b.right))
            || (is_str_literal(&b.left) && reads_check_id(&b.right));
        if equality && literal_against_id {
            self.flag_id_dispatch(b.op.span());
        }
        visit::visit_expr_binary(self, b);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        if reads_check_id(&m.receiver) && m.args.iter().any(is_str_literal) {
            self.flag_id_dispatch(m.method.span());
        }
        visit::visit_expr_method_call(self, m);
    }

    fn visit_expr_match(&mut self, m: &'ast syn::ExprMatch) {
        self.check_match(&m.expr, m.arms.iter().map(|a| &a.pat), m.match_token.span);
        visit::visit_expr_match(self, m);
    }
}

/// Parses the body of `matches!(expression, pattern if guard)`.
fn parse_matches(input: syn::parse::ParseStream) -> syn::Result<(Expr, Pat, Option<Expr>)> {
    let scrutinee: Expr = input.parse()?;
    input.parse::<Token![,]>()?;
    let pat = Pat::parse_multi_with_leading_vert(input)?;
    let guard = if input.parse::<Option<Token![if]>>()?.is_some() { Some(input.parse::<Expr>()?) } else { None };
    input.parse::<Option<Token![,]>>()?;
    Ok((scrutinee, pat, guard))
}

/// Whether `e` reads a check's id or suite: `def.id`, `id`, `c.id()`, `def.suite()`, `r.suite`, also through `&`,
/// `*`, parentheses, `.as_str()` and tuples.
fn reads_check_id(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => reads_check_id(&p.expr),
        Expr::Reference(r) => reads_check_id(&r.expr),
        Expr::Unary(u) => matches!(u.op, syn::UnOp::Deref(_)) && reads_check_id(&u.expr),
        Expr::Tuple(t) => t.elems.iter().any(reads_check_id),
        Expr::Field(f) => matches!(&f.member, syn::Member::Named(n) if n == "id" || n == "suite"),
        Expr::Path(p) => p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "id"),
        Expr::MethodCall(m) if m.args.is_empty() => {
            m.method == "id"
                || m.method == "suite"
                || (["as_str", "as_ref", "to_string", "deref", "borrow"].iter().any(|n| m.method == n)
                    && reads_check_id(&m.receiver))
        }
        _ => false,
    }
}

fn is_str_literal(e: &Expr) -> bool {
    match e {
        Expr::Lit(l) => matches!(l.lit, syn::Lit::Str(_)),
        Expr::Reference(r) => is_str_literal(&r.expr),
        Expr::Paren(p) => is_str_literal(&p.expr),
        _ => false,
    }
}

fn pat_has_str_literal(p: &Pat) -> bool {
    match p {
        Pat::Lit(l) => matches!(l.lit, syn::Lit::Str(_)),
        Pat::Or(o) => o.cases.iter().any(pat_has_str_literal),
        Pat::Paren(p) => pat_has_str_literal(&p.pat),
        Pat::Reference(r) => pat_has_str_literal(&r.pat),
        Pat::Tuple(t) => t.elems.iter().any(pat_has_str_literal),
        Pat::Ident(i) => i.subpat.as_ref().is_some_and(|(_, p)| pat_has_str_literal(p)),
        _ => false,
    }
}

/// One leaf of a `use` tree: its full path, the name it binds (none for a glob) and its line.
struct UseLeaf {
    segments: Vec<String>,
    binding: Option<String>,
    line: usize,
}

/// Flattens a `use` tree into its leaves: `crate::{a::{b, c}, d}` gives `crate::a::b`, `crate::a::c`, `crate::d`.
fn flatten_use(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => out.push(use_leaf(prefix, &n.ident, &n.ident)),
        UseTree::Rename(r) => out.push(use_leaf(prefix, &r.ident, &r.rename)),
        UseTree::Glob(g) => {
            out.push(UseLeaf { segments: prefix.clone(), binding: None, line: g.star_token.spans[0].start().line });
        }
        UseTree::Group(g) => {
            for item in &g.items {
                flatten_use(item, prefix, out);
            }
        }
    }
}

/// The leaf `prefix::name`, bound as `binding`; `self` names the prefix itself (`use a::{self}` binds `a`).
fn use_leaf(prefix: &[String], name: &Ident, binding: &Ident) -> UseLeaf {
    let mut segments = prefix.to_vec();
    if name != "self" {
        segments.push(name.to_string());
    }
    let binding = if binding == "self" { prefix.last().cloned() } else { Some(binding.to_string()) };
    UseLeaf { segments, binding, line: name.span().start().line }
}

/// Paths of two or more segments (`a::b::c`) in a macro body that syn cannot parse, with their lines.
fn token_paths(tokens: TokenStream, out: &mut Vec<(Vec<String>, usize)>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let is_separator = |i: usize| {
        matches!((trees.get(i), trees.get(i + 1)), (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
    };
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Group(g) => token_paths(g.stream(), out),
            TokenTree::Ident(first) => {
                let mut segments = vec![first.to_string()];
                while is_separator(i + 1)
                    && let Some(TokenTree::Ident(next)) = trees.get(i + 3)
                {
                    segments.push(next.to_string());
                    i += 3;
                }
                if segments.len() > 1 {
                    out.push((segments, first.span().start().line));
                }
            }
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
        i += 1;
    }
}

/// Whether attributes hold `#[cfg(test)]` or `#[cfg(all(test, …))]`: code that only the tests compile.
fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg") && a.parse_args::<Meta>().is_ok_and(|m| meta_needs_test(&m)))
}

fn meta_needs_test(meta: &Meta) -> bool {
    match meta {
        Meta::Path(p) => p.is_ident("test"),
        Meta::List(list) if list.path.is_ident("all") => list
            .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .is_ok_and(|metas| metas.iter().any(meta_needs_test)),
        _ => false,
    }
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The value of a `#[path = "…"]` attribute.
fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find(|a| a.path().is_ident("path")).and_then(|a| match &a.meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

fn parent_dir(file: &str) -> &str {
    file.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn module_name(path: &[String]) -> String {
    if path.is_empty() { "crate".to_string() } else { path.join("::") }
}

// ---------------------------------------------------------------------------------------------------------------
// The module graph.

/// A circle of module dependencies: one strongly connected component of more than one module.
struct Circle {
    /// A closed walk through every module of the component (the first module again at the end).
    walk: Vec<Vec<String>>,
    /// Every dependency between two modules of the component, with the first place that makes it.
    edges: BTreeMap<(Vec<String>, Vec<String>), Site>,
}

impl Circle {
    /// `crate x: a -> b -> a`, then each step of the walk with its witness, then the component's other edges.
    fn describe(&self, label: &str) -> String {
        let names: Vec<String> = self.walk.iter().map(|m| module_name(m)).collect();
        let mut text = format!("crate {label}: {}", names.join(" -> "));
        let mut steps = BTreeSet::new();
        for pair in self.walk.windows(2) {
            let key = (pair[0].clone(), pair[1].clone());
            let site = &self.edges[&key];
            text +=
                &format!("\n    {} -> {}: {}:{}", module_name(&pair[0]), module_name(&pair[1]), site.file, site.line);
            steps.insert(key);
        }
        for ((from, to), site) in self.edges.iter().filter(|(key, _)| !steps.contains(*key)) {
            text += &format!("\n    also {} -> {}: {}:{}", module_name(from), module_name(to), site.file, site.line);
        }
        text
    }
}

impl CrateScan {
    /// What a written path names, from the crate root, or `None` when it starts outside the crate.
    fn resolve(&self, module: &[String], segments: &[String], depth: usize) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        let mut path = match first.as_str() {
            "crate" => Vec::new(),
            "self" => module.to_vec(),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let kept = module.len().checked_sub(ups)?;
                return Some(module[..kept].iter().chain(&segments[ups..]).cloned().collect());
            }
            _ => {
                let mut child = module.to_vec();
                child.push(first.clone());
                if self.modules.contains_key(&child) {
                    child
                } else if depth < ALIAS_DEPTH_MAX
                    && let Some(target) = self.aliases.get(&(module.to_vec(), first.clone()))
                {
                    self.resolve(module, target, depth + 1)?
                } else {
                    return None;
                }
            }
        };
        path.extend(rest.iter().cloned());
        Some(path)
    }

    /// The module a written path depends on: the longest prefix of what it names that is a module.
    fn target(&self, r: &Ref) -> Option<Vec<String>> {
        let mut path = self.resolve(&r.site.module, &r.segments, 0)?;
        if !r.in_use {
            path.pop();
        }
        while !self.modules.contains_key(&path) {
            path.pop()?;
        }
        Some(path)
    }

    /// Module dependencies (from, to), each with the first place that makes it. A module's references to itself
    /// and to its ancestors are none: a child may use what its parent gives it.
    fn dependencies(&self) -> BTreeMap<(Vec<String>, Vec<String>), Site> {
        let mut deps = BTreeMap::new();
        for r in &self.refs {
            let Some(to) = self.target(r) else { continue };
            if !r.site.module.starts_with(&to) {
                deps.entry((r.site.module.clone(), to)).or_insert_with(|| r.site.clone());
            }
        }
        deps
    }

    fn circles(&self) -> Vec<Circle> {
        let deps = self.dependencies();
        let nodes: Vec<&Vec<String>> = self.modules.keys().collect();
        let index: BTreeMap<&Vec<String>, usize> = nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        let mut edges = vec![Vec::new(); nodes.len()];
        for (from, to) in deps.keys() {
            edges[index[from]].push(index[to]);
        }
        let mut circles: Vec<Circle> = strongly_connected(&edges)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| Circle {
                walk: closed_walk(&edges, &component).into_iter().map(|i| nodes[i].clone()).collect(),
                edges: deps
                    .iter()
                    .filter(|((from, to), _)| component.contains(&index[from]) && component.contains(&index[to]))
                    .map(|(key, site)| (key.clone(), site.clone()))
                    .collect(),
            })
            .collect();
        circles.sort_by(|a, b| a.walk.cmp(&b.walk));
        circles
    }

    /// The text of the line a site names, trimmed.
    fn quote(&self, site: &Site) -> &str {
        self.texts.get(&site.file).and_then(|t| t.lines().nth(site.line - 1)).map_or("", str::trim)
    }
}

/// The strongly connected components of a graph over nodes `0..edges.len()` (Tarjan), each sorted.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct Tarjan<'a> {
        edges: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        components: Vec<Vec<usize>>,
    }
    fn connect(t: &mut Tarjan<'_>, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on_stack[v] = true;
        let edges = t.edges;
        for &w in &edges[v] {
            match t.index[w] {
                None => {
                    connect(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(w_index) if t.on_stack[w] => t.low[v] = t.low[v].min(w_index),
                Some(_) => {}
            }
        }
        if t.index[v] == Some(t.low[v]) {
            let mut component = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            component.sort_unstable();
            t.components.push(component);
        }
    }
    let n = edges.len();
    let mut t = Tarjan {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            connect(&mut t, v);
        }
    }
    t.components
}

/// A closed walk from a strongly connected component's first node through all its nodes, each hop the shortest
/// path inside the component to the nearest node not yet walked, and at last back to the start.
fn closed_walk(edges: &[Vec<usize>], component: &[usize]) -> Vec<usize> {
    let inside: BTreeSet<usize> = component.iter().copied().collect();
    let start = component[0];
    let mut walk = vec![start];
    let mut unseen = inside.clone();
    unseen.remove(&start);
    loop {
        let here = *walk.last().expect("a walk starts with its start");
        let returning = unseen.is_empty();
        let mut came_from = BTreeMap::from([(here, here)]);
        let mut queue = VecDeque::from([here]);
        let mut goal = None;
        'search: while let Some(v) = queue.pop_front() {
            for &w in &edges[v] {
                if !inside.contains(&w) || came_from.contains_key(&w) {
                    continue;
                }
                came_from.insert(w, v);
                if (returning && w == start) || unseen.contains(&w) {
                    goal = Some(w);
                    break 'search;
                }
                queue.push_back(w);
            }
        }
        let goal = goal.expect("every node of a strongly connected component reaches every other");
        let mut hops = vec![goal];
        while came_from[hops.last().expect("hops start with the goal")] != here {
            hops.push(came_from[hops.last().expect("hops start with the goal")]);
        }
        for hop in hops.into_iter().rev() {
            unseen.remove(&hop);
            walk.push(hop);
        }
        if returning {
            return walk;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The workspace on disk.

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("find the workspace root")
}

/// Every crate target of the workspace (lib.rs, main.rs, bin/*.rs of each crates/* package), scanned once.
fn workspace() -> &'static [CrateScan] {
    static SCANS: OnceLock<Vec<CrateScan>> = OnceLock::new();
    SCANS.get_or_init(|| {
        let root = workspace_root();
        let read = |rel: &str| std::fs::read_to_string(root.join(rel)).ok();
        let mut scans = Vec::new();
        for package in dir_names(&root.join("crates")) {
            let src = format!("crates/{package}/src");
            if root.join(&src).join("lib.rs").is_file() {
                scans.push(scan_crate(&package, package.clone(), &format!("{src}/lib.rs"), &read));
            }
            if root.join(&src).join("main.rs").is_file() {
                scans.push(scan_crate(&package, format!("{package} (src/main.rs)"), &format!("{src}/main.rs"), &read));
            }
            for bin in dir_names(&root.join(&src).join("bin")).iter().filter(|b| b.ends_with(".rs")) {
                let label = format!("{package} (src/bin/{bin})");
                scans.push(scan_crate(&package, label, &format!("{src}/bin/{bin}"), &read));
            }
        }
        scans
    })
}

/// Files the scan could not read or parse: each makes every test here fail, since a finding could hide there.
fn scan_errors() -> Vec<String> {
    workspace().iter().flat_map(|s| s.errors.iter().cloned()).collect()
}

/// The names in a directory, sorted; none when it does not exist.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Every `.rs` file under crates/*/src, relative to the workspace root, sorted.
fn source_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
        for name in dir_names(&root.join(rel)) {
            let child = format!("{rel}/{name}");
            if root.join(&child).is_dir() {
                walk(root, &child, out);
            } else if name.ends_with(".rs") {
                out.push(child);
            }
        }
    }
    let mut files = Vec::new();
    for package in dir_names(&root.join("crates")) {
        walk(root, &format!("crates/{package}/src"), &mut files);
    }
    files
}

/// A file's lines before its trailing run of `#[cfg(test)]` modules (inline or `mod tests;`), which are tests.
fn lines_before_tests(text: &str) -> syn::Result<usize> {
    let ast = syn::parse_file(text)?;
    let mut tests_start = None;
    for item in ast.items.iter().rev() {
        match item {
            Item::Mod(m) if is_cfg_test(&m.attrs) => {
                let first_attr = m.attrs.first().map(|a| a.pound_token.span);
                tests_start = Some(first_attr.unwrap_or_else(|| m.span()).start().line);
            }
            _ => break,
        }
    }
    Ok(tests_start.map_or_else(|| text.lines().count(), |line| line - 1))
}

/// The files ARCHITECTURE.md allows over `FILE_LINES_MAX`: the paths in backticks that start the bullets of its
/// `## Files over 700 lines` section.
fn listed_long_files(architecture: &str) -> BTreeSet<String> {
    let mut listed = BTreeSet::new();
    let (mut in_section, mut in_code) = (false, false);
    for line in architecture.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            in_section = line.trim_end() == LONG_FILES_HEADING;
        } else if in_section
            && !in_code
            && let Some(rest) = line.strip_prefix("- `").or_else(|| line.strip_prefix("* `"))
            && let Some((path, _)) = rest.split_once('`')
        {
            listed.insert(path.to_string());
        }
    }
    listed
}

/// Scans a crate made of in-memory files, rooted at `src/lib.rs`.
fn scan_sources(files: &[(&str, &str)]) -> CrateScan {
    let files: BTreeMap<&str, &str> = files.iter().copied().collect();
    scan_crate("demo", "demo".to_string(), "src/lib.rs", &|path| files.get(path).map(|t| t.to_string()))
}
