//! Kernel modules for the guest: find them in an unpacked kernel tree, read each
//! one's dependencies from its own `.modinfo` section, and order them so every
//! module comes after the ones it needs.
//!
//! A kernel package downloaded with `apt-get download` has no `modules.dep` (depmod
//! runs at install time, and we never install it), and `depmod` itself is not on
//! every machine; the `depends=` field in each module's ELF `.modinfo` section is
//! the same information, one level at a time.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// The modules the guest image needs (their dependencies are added).
pub const GUEST_MODULES: &[&str] = &["virtio_pci", "virtio_console", "virtio_net", "virtio_balloon"];

/// A module in load order, with its file (decompressed) contents.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub source: PathBuf,
    pub bytes: Vec<u8>,
}

/// Module names as the kernel compares them: `-` and `_` are the same.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name_of(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".ko").or_else(|| file.strip_suffix(".ko.xz")).or_else(|| file.strip_suffix(".ko.zst")).or_else(|| file.strip_suffix(".ko.gz"))?;
    Some(normalize(stem))
}

/// Indexes every module file below `modules_dir` (`.../lib/modules/<release>`).
pub fn index(modules_dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![modules_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(path);
            } else if let Some(name) = module_name_of(&path) {
                found.entry(name).or_insert(path);
            }
        }
    }
    Ok(found)
}

/// Names the kernel has built in (no file needed), from `modules.builtin`.
pub fn builtin(modules_dir: &Path) -> HashSet<String> {
    std::fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| module_name_of(Path::new(l.trim())))
        .collect()
}

/// Resolves `wanted` and all their dependencies into load order.
pub fn resolve(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>> {
    let files = index(modules_dir)?;
    let builtin = builtin(modules_dir);
    let mut order = Vec::new();
    let mut done = HashSet::new();
    let mut visiting = Vec::new();
    for name in wanted {
        visit(&normalize(name), &files, &builtin, &mut done, &mut visiting, &mut order)
            .with_context(|| format!("resolving kernel module {name} in {}", modules_dir.display()))?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    builtin: &HashSet<String>,
    done: &mut HashSet<String>,
    visiting: &mut Vec<String>,
    order: &mut Vec<Module>,
) -> Result<()> {
    if done.contains(name) {
        return Ok(());
    }
    if visiting.iter().any(|v| v == name) {
        bail!("dependency cycle: {} -> {name}", visiting.join(" -> "));
    }
    let Some(path) = files.get(name) else {
        if builtin.contains(name) {
            done.insert(name.to_string());
            return Ok(());
        }
        bail!("module {name} is neither a file under the modules directory nor listed in modules.builtin");
    };
    let bytes = read_module(path)?;
    let info = modinfo(&bytes).with_context(|| format!("reading .modinfo of {}", path.display()))?;
    visiting.push(name.to_string());
    for dep in info.iter().filter_map(|kv| kv.strip_prefix("depends=")).flat_map(|d| d.split(',')) {
        let dep = normalize(dep.trim());
        if !dep.is_empty() {
            visit(&dep, files, builtin, done, visiting, order)?;
        }
    }
    visiting.pop();
    done.insert(name.to_string());
    order.push(Module { name: name.to_string(), source: path.clone(), bytes });
    Ok(())
}

/// Reads a module file, decompressing `.xz`/`.zst`/`.gz` with the system's tools so
/// the guest can load it whether or not its kernel decompresses modules itself.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tool = match ext {
        "ko" => return std::fs::read(path).with_context(|| format!("reading {}", path.display())),
        "xz" => "xz",
        "zst" => "zstd",
        "gz" => "gzip",
        _ => bail!("{}: not a kernel module file", path.display()),
    };
    let out = std::process::Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("running `{tool} -dc` to unpack {} (install {tool})", path.display()))?;
    if !out.status.success() {
        bail!("`{tool} -dc {}` failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// The `key=value` strings of an ELF64 module's `.modinfo` section.
pub fn modinfo(elf: &[u8]) -> Result<Vec<String>> {
    let rd = |off: usize, n: usize| -> Result<u64> {
        let b = off.checked_add(n).and_then(|end| elf.get(off..end)).context("ELF file truncated")?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    };
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        bail!("not a little-endian ELF64 file");
    }
    let shoff = rd(0x28, 8)? as usize;
    let shentsize = rd(0x3a, 2)? as usize;
    let shnum = rd(0x3c, 2)? as usize;
    let shstrndx = rd(0x3e, 2)? as usize;
    let section = |i: usize| -> Result<(usize, usize, usize)> {
        let base = i.checked_mul(shentsize).and_then(|o| o.checked_add(shoff)).context("section header out of range")?;
        Ok((rd(base, 4)? as usize, rd(base + 0x18, 8)? as usize, rd(base + 0x20, 8)? as usize))
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let names = stroff.checked_add(strsize).and_then(|end| elf.get(stroff..end)).context("section names out of bounds")?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i)?;
        let name = names.get(name_off..).and_then(|s| s.split(|&b| b == 0).next()).unwrap_or(b"");
        if name == b".modinfo" {
            let data = off.checked_add(size).and_then(|end| elf.get(off..end)).context(".modinfo out of bounds")?;
            return Ok(data
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect());
        }
    }
    bail!("no .modinfo section")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a section-name table and a `.modinfo` section.
    fn fake_module(modinfo: &str) -> Vec<u8> {
        let shstr = b"\0.shstrtab\0.modinfo\0".to_vec();
        let info = modinfo.replace(';', "\0").into_bytes();
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let shstr_off = elf.len();
        elf.extend_from_slice(&shstr);
        let info_off = elf.len();
        elf.extend_from_slice(&info);
        while elf.len() % 8 != 0 {
            elf.push(0);
        }
        let shoff = elf.len();
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut s = vec![0u8; 64];
            s[..4].copy_from_slice(&name.to_le_bytes());
            s[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            s[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&s);
        };
        sh(0, 0, 0);
        sh(1, shstr_off, shstr.len());
        sh(11, info_off, info.len());
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_modinfo() {
        let elf = fake_module("license=GPL;depends=virtio,virtio_ring;name=virtio_pci;");
        let kv = modinfo(&elf).unwrap();
        assert!(kv.contains(&"depends=virtio,virtio_ring".to_string()));
        assert!(modinfo(b"not an elf").is_err());
        assert!(modinfo(&elf[..70]).is_err());
        let mut huge = elf.clone();
        huge[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(modinfo(&huge).is_err(), "offsets near usize::MAX must be an error, not a panic");
    }

    #[test]
    fn orders_dependencies_first_and_skips_builtins() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("kernel/drivers");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("a.ko"), fake_module("depends=b,virtio-ring;")).unwrap();
        std::fs::write(m.join("b.ko"), fake_module("depends=c;")).unwrap();
        std::fs::write(m.join("c.ko"), fake_module("depends=;")).unwrap();
        std::fs::write(dir.path().join("modules.builtin"), "kernel/drivers/virtio/virtio_ring.ko\n").unwrap();
        let order: Vec<_> = resolve(dir.path(), &["a", "c"]).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(order, ["c", "b", "a"]);
        let err = resolve(dir.path(), &["nope"]).unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn detects_cycles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.ko"), fake_module("depends=y;")).unwrap();
        std::fs::write(dir.path().join("y.ko"), fake_module("depends=x;")).unwrap();
        assert!(format!("{:#}", resolve(dir.path(), &["x"]).unwrap_err()).contains("cycle"));
    }
}
