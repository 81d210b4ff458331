//! `supermin inspect`: what an appliance holds and why. The appliance is resolved exactly as
//! `--build` resolves it, then every entry of the manifest is put in one group — the
//! package that lists it, a base image, the hostfiles, or "other" (directories made for
//! parents, `/packagelist`) — so the groups add up to the whole tree. The report is printed
//! as a table, as JSON ([`Report`] is the schema) or drawn as bars ([`svg`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use indicatif::HumanBytes;
use serde::Serialize;

use crate::build;
use crate::error::{IoContext, Result};
use crate::host;
use crate::inputs::Inputs;
use crate::manifest::{Content, Ino, Manifest, Node};
use crate::mount::Source;
use crate::packager::{PackageManager, Reached};
use crate::resolve::{Excludes, Resolved};
use crate::util::newfile;

pub mod svg;

pub struct Options {
    pub source: Source,
    pub json: bool,
    pub svg: Option<PathBuf>,
    /// How many of the largest files to list.
    pub top: usize,
}

/// Entries (paths, as a chroot build has them) and bytes (regular files, each inode once).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub entries: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.entries += other.entries;
        self.bytes += other.bytes;
    }
}

/// The report; `inspect --json` prints it as it is.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The supermin appliances resolved (a mounted view's own inputs).
    pub inputs: Vec<PathBuf>,
    /// The whole appliance: every group below adds up to this.
    pub total: Counts,
    /// The dependency closure, in name order.
    pub packages: Vec<PackageReport>,
    pub base_images: Vec<ImageReport>,
    pub hostfiles: PatternsReport,
    /// What excludefiles removed from the packages (not in `total`).
    pub excluded: PatternsReport,
    /// Directories made for the parents of listed paths, `/packagelist`.
    pub other: Counts,
    /// The largest regular files, largest first.
    pub largest: Vec<FileReport>,
}

#[derive(Debug, Serialize)]
pub struct PackageReport {
    /// The bare name, as in `packages`.
    pub name: String,
    /// With version and architecture, as `/packagelist` has it.
    pub package: String,
    /// The package whose dependency pulled it in; `null` when named in `packages`.
    pub pulled_in_by: Option<String>,
    /// The original supermin's closure has it too (false: it resolves a dependency the
    /// original loses, e.g. a later alternative or a virtual package).
    pub in_original_closure: bool,
    /// Its entries in the appliance (a path listed by several packages counts for the first).
    #[serde(flatten)]
    pub counts: Counts,
    /// Its files that excludefiles removed.
    pub excluded: Counts,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub path: PathBuf,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Serialize)]
pub struct PatternsReport {
    pub patterns: Vec<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub bytes: u64,
    /// The group it is counted in: a package name, `base:PATH`, `hostfiles` or `other`.
    pub owner: String,
}

/// Which group an entry is counted in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Group {
    Package(usize),
    Image(usize),
    Hostfiles,
    Other,
}

pub fn inspect(opts: &Options) -> Result<()> {
    let src = &opts.source;
    let pm = src.driver.open(&src.root)?;
    let inputs = Inputs::read(&src.inputs, None)?;
    let resolved = build::resolve_read(pm.as_ref(), &inputs, &src.root, src.settings)?;
    let report = Report::new(pm.as_ref(), src, &inputs, &resolved, opts.top)?;
    if let Some(path) = &opts.svg {
        // Replaced, never written through a symlink someone planted at the name.
        newfile::replace(path, svg::render(&report).as_bytes(), 0o666).at(path, "cannot write")?;
    }
    if opts.json {
        let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::from);
        println!("{}", text.at(Path::new("standard output"), "cannot write JSON")?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

impl Report {
    fn new(pm: &dyn PackageManager, src: &Source, inputs: &Inputs, r: &Resolved, top: usize) -> Result<Report> {
        let owners = Owners::new(&src.root, inputs, r);
        let mut report = Report {
            inputs: src.inputs.clone(),
            total: Counts::default(),
            packages: r.closure.iter().map(|c| PackageReport::new(pm, c)).collect(),
            base_images: r
                .manifest
                .images
                .iter()
                .map(|i| ImageReport { path: i.path.clone(), counts: Counts::default() })
                .collect(),
            hostfiles: PatternsReport { patterns: inputs.hostfiles.clone(), counts: Counts::default() },
            excluded: PatternsReport { patterns: inputs.excludes.clone(), counts: Counts::default() },
            other: Counts::default(),
            largest: Vec::new(),
        };
        for (i, excluded) in owners.excluded.iter().enumerate() {
            report.packages[i].excluded = *excluded;
            report.excluded.counts += *excluded;
        }
        report.count(&r.manifest, &owners, top);
        report.packages.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.package.cmp(&b.package)));
        Ok(report)
    }

    /// Count every entry of the tree in its group, and keep the `top` largest files.
    fn count(&mut self, manifest: &Manifest, owners: &Owners, top: usize) {
        let mut seen: HashSet<Ino> = HashSet::new();
        let mut files: Vec<(u64, String, Group)> = Vec::new();
        manifest.walk(|path, ino| {
            if ino == crate::manifest::ROOT {
                return;
            }
            let path = String::from_utf8_lossy(path).into_owned();
            let inode = manifest.inode(ino);
            let group = owners.group(ino, &inode.node);
            let bytes = match inode.node {
                Node::File(_) if seen.insert(ino) => inode.meta.size,
                _ => 0,
            };
            let entry = Counts { entries: 1, bytes };
            *self.counts_mut(group) += entry;
            self.total += entry;
            if bytes > 0 {
                files.push((bytes, path, group));
            }
        });
        files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        files.truncate(top);
        self.largest =
            files.into_iter().map(|(bytes, path, g)| FileReport { path, bytes, owner: self.label(g) }).collect();
    }

    fn counts_mut(&mut self, group: Group) -> &mut Counts {
        match group {
            Group::Package(i) => &mut self.packages[i].counts,
            Group::Image(i) => &mut self.base_images[i].counts,
            Group::Hostfiles => &mut self.hostfiles.counts,
            Group::Other => &mut self.other,
        }
    }

    fn label(&self, group: Group) -> String {
        match group {
            Group::Package(i) => self.packages[i].name.clone(),
            Group::Image(i) => format!("base:{}", self.base_images[i].path.display()),
            Group::Hostfiles => "hostfiles".into(),
            Group::Other => "other".into(),
        }
    }

    /// The human-readable report: packages largest first, then the other groups and files.
    pub fn table(&self) -> String {
        let mut by_size: Vec<&PackageReport> = self.packages.iter().collect();
        by_size.sort_by(|a, b| b.counts.bytes.cmp(&a.counts.bytes).then_with(|| a.name.cmp(&b.name)));
        let mut rows: Vec<(String, Counts, String)> =
            by_size.iter().map(|p| (p.package.clone(), p.counts, p.why())).collect();
        rows.push((String::new(), Counts::default(), String::new()));
        for image in &self.base_images {
            rows.push((format!("base image {}", image.path.display()), image.counts, String::new()));
        }
        let patterns = |p: &PatternsReport| format!("{} patterns", p.patterns.len());
        rows.push((format!("hostfiles ({})", patterns(&self.hostfiles)), self.hostfiles.counts, String::new()));
        rows.push(("other".into(), self.other, "parent directories, /packagelist".into()));
        let removed = format!("excludefiles removed ({})", patterns(&self.excluded));
        rows.push((removed, self.excluded.counts, "not in the appliance".into()));

        // As wide as the package names; longer labels (base image paths) overflow.
        let width = by_size.iter().map(|p| p.package.chars().count()).max().unwrap_or(0).max(24);
        let mut out = format!(
            "{} packages, {} entries, {} in regular files\n\n{:<width$} {:>8} {:>11}  WHY\n",
            self.packages.len(),
            self.total.entries,
            HumanBytes(self.total.bytes),
            "PACKAGE",
            "ENTRIES",
            "BYTES",
        );
        for (name, counts, why) in rows {
            if name.is_empty() {
                out.push('\n');
                continue;
            }
            let bytes = HumanBytes(counts.bytes).to_string();
            out += format!("{name:<width$} {:>8} {bytes:>11}  {why}", counts.entries).trim_end();
            out.push('\n');
        }
        out += &format!("\nthe {} largest files:\n", self.largest.len());
        for f in &self.largest {
            out += &format!("{:>11}  {}  ({})\n", HumanBytes(f.bytes).to_string(), f.path, f.owner);
        }
        out
    }
}

impl PackageReport {
    fn new(pm: &dyn PackageManager, reached: &Reached) -> PackageReport {
        PackageReport {
            name: pm.package_name(reached.pkg).to_string(),
            package: pm.pretty_name(reached.pkg),
            pulled_in_by: reached.via.map(|v| pm.package_name(v).to_string()),
            in_original_closure: reached.original,
            counts: Counts::default(),
            excluded: Counts::default(),
        }
    }

    /// Why the package is in, in words.
    pub fn why(&self) -> String {
        let why = match &self.pulled_in_by {
            None => "named in packages".to_string(),
            Some(p) => format!("dependency of {p}"),
        };
        if self.in_original_closure {
            why
        } else {
            format!("{why} (the original supermin leaves it out)")
        }
    }
}

/// Which package lists each entry, and what excludefiles took from each. Entries are
/// matched by inode, because a listed path may reach its entry through a symlink (`/bin/sed`
/// is `/usr/bin/sed` in a merged-/usr tree).
struct Owners {
    /// Inode → index into the closure (the first package to list it).
    by_ino: HashMap<Ino, usize>,
    hostfiles: HashSet<Ino>,
    excluded: Vec<Counts>,
}

impl Owners {
    fn new(root: &Path, inputs: &Inputs, r: &Resolved) -> Owners {
        let excludes = Excludes::new(&inputs.excludes);
        let lookup = |path: &str| r.manifest.lookup(path.as_bytes(), false);
        let hostfiles = r.hostfiles.iter().filter_map(|p| lookup(p)).collect();
        let mut owners = Owners { by_ino: HashMap::new(), hostfiles, excluded: Vec::new() };
        for (i, files) in r.files_by_package.iter().enumerate() {
            let mut excluded = Counts::default();
            for file in files {
                if excludes.matches(&file.path) {
                    excluded.entries += 1;
                    let meta = host::lstat(root, file.source_path()).ok();
                    excluded.bytes += meta.filter(std::fs::Metadata::is_file).map_or(0, |m| m.len());
                } else if let Some(ino) = lookup(&file.path) {
                    owners.by_ino.entry(ino).or_insert(i);
                }
            }
            owners.excluded.push(excluded);
        }
        owners
    }

    fn group(&self, ino: Ino, node: &Node) -> Group {
        match node {
            Node::File(Content::Tar { image, .. }) => Group::Image(*image as usize),
            Node::File(Content::Inline(_)) => Group::Other,
            _ => match self.by_ino.get(&ino) {
                Some(&i) => Group::Package(i),
                None if self.hostfiles.contains(&ino) => Group::Hostfiles,
                None => Group::Other,
            },
        }
    }
}
