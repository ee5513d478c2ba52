//! A writer (and, for tests, a reader) of the `newc` cpio format the Linux kernel
//! unpacks as an initramfs. The format is small enough that our own ~100 lines beat
//! a dependency: a 110-byte ASCII header per entry, name and data each padded to 4.

use std::io::{self, Write};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

pub const MODE_DIR: u32 = 0o040000;
pub const MODE_FILE: u32 = 0o100000;

/// One archive being written. Entries keep the order they are added in; parents
/// must be added before their children (the kernel creates them in that order).
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter { out, written: 0, next_ino: 1 }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, MODE_DIR | (perm & 0o7777), 2, &[])
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, MODE_FILE | (perm & 0o7777), 1, data)
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, data: &[u8]) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad cpio entry name {path:?}")));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{path} is over 4 GiB")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(ino, mode, nlink, size, name)?;
        self.write_padded(data)
    }

    fn header(&mut self, ino: u32, mode: u32, nlink: u32, size: u32, name: &str) -> io::Result<()> {
        let namesize = name.len() as u32 + 1;
        // Fields: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check.
        // mtime stays 0 so the same inputs give the same bytes (and the same cache key).
        let header = format!(
            "{MAGIC}{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 0, 0, 0, 0, 0, 0
        );
        self.out.write_all(header.as_bytes())?;
        self.written += header.len() as u64;
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        self.write_padded(&name_bytes)
    }

    fn write_padded(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        let pad = (4 - (self.written % 4)) % 4;
        self.out.write_all(&[0u8; 3][..pad as usize])?;
        self.written += pad;
        Ok(())
    }

    /// Writes the trailer entry and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(0, 0, 1, 0, TRAILER)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One entry read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// Reads a `newc` archive back (the tests check what the writer made).
pub fn read_archive(mut bytes: &[u8]) -> Result<Vec<CpioEntry>, String> {
    fn hex(field: &[u8], what: &str) -> Result<u32, String> {
        let s = std::str::from_utf8(field).map_err(|_| format!("{what}: not ASCII"))?;
        u32::from_str_radix(s, 16).map_err(|_| format!("{what}: {s:?} is not hex"))
    }
    let total = bytes.len();
    let mut entries = Vec::new();
    loop {
        let offset = total - bytes.len();
        if bytes.len() < 110 {
            return Err(format!("truncated header at byte {offset}"));
        }
        if &bytes[..6] != MAGIC.as_bytes() {
            return Err(format!("bad magic at byte {offset}"));
        }
        let field = |i: usize| &bytes[6 + i * 8..6 + (i + 1) * 8];
        let mode = hex(field(1), "mode")?;
        let size = hex(field(6), "filesize")? as usize;
        let namesize = hex(field(11), "namesize")? as usize;
        let pad4 = |n: usize| (4 - (n % 4)) % 4;
        let name_end = 110 + namesize;
        let data_start = name_end + pad4(offset + name_end);
        let data_end = data_start + size;
        if bytes.len() < data_end || namesize == 0 {
            return Err(format!("truncated entry at byte {offset}"));
        }
        let name = String::from_utf8_lossy(&bytes[110..name_end - 1]).into_owned();
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(CpioEntry { name, mode, data: bytes[data_start..data_end].to_vec() });
        let next = data_end + pad4(offset + data_end);
        bytes = &bytes[next.min(bytes.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/etc", 0o755).unwrap();
        w.file("/etc/a", 0o644, b"x").unwrap();
        w.file("init", 0o755, &[7u8; 1001]).unwrap();
        w.file("/empty", 0o600, b"").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = read_archive(&bytes).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["etc", "etc/a", "init", "empty"]);
        assert_eq!(entries[0].mode, MODE_DIR | 0o755);
        assert_eq!(entries[1].data, b"x");
        assert_eq!(entries[2].data, vec![7u8; 1001]);
        assert_eq!(entries[2].mode, MODE_FILE | 0o755);
        assert!(entries[3].data.is_empty());
    }

    #[test]
    fn deterministic() {
        let make = || {
            let mut w = CpioWriter::new(Vec::new());
            w.file("init", 0o755, b"abc").unwrap();
            w.finish().unwrap()
        };
        assert_eq!(make(), make());
    }

    #[test]
    fn header_layout_matches_newc() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("ab", 0o644, b"hello").unwrap();
        let bytes = w.finish().unwrap();
        // 110-byte header + "ab\0" = 113, padded to 116; data 5 bytes padded to 8.
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[110..113], b"ab\0");
        assert_eq!(&bytes[116..121], b"hello");
        assert_eq!(&bytes[124..130], b"070701");
    }

    #[test]
    fn rejects_bad_names_and_archives() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("/", 0o644, b"").is_err());
        assert!(read_archive(b"070701").is_err());
        assert!(read_archive(&[b'x'; 200]).unwrap_err().contains("bad magic"));
    }
}
