//! Reading training text: AG News CSV (as the lesson uses it), one sample per
//! line, or running text; and the deterministic held-out split.

use std::path::{Path, PathBuf};

use crate::error::CliError;

/// Tiny Shakespeare (public domain), bundled so `charlm train` needs no download.
pub const BUNDLED: &[u8] = include_bytes!("../corpora/tinyshakespeare.txt");
/// Name of the bundled corpus in messages and model metadata.
pub const BUNDLED_NAME: &str = "tinyshakespeare.txt (bundled)";

/// Which column(s) of an AG News CSV (`class,title,description`) make a sample.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
pub enum Field {
    /// The headline (the lesson's choice).
    Title,
    /// The description.
    Description,
    /// Title, a space, description (the lesson's `extract_text`).
    #[value(name = "title+description")]
    TitleDescription,
}

impl Field {
    fn columns(self) -> &'static [usize] {
        match self {
            Field::Title => &[1],
            Field::Description => &[2],
            Field::TitleDescription => &[1, 2],
        }
    }

    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Description => "description",
            Field::TitleDescription => "title+description",
        }
    }
}

/// How a corpus is cut into training sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    /// One continuous text, cut into windows with state carried between them.
    Running,
    /// Independent samples (lines, CSV rows), each ending in `<eos>`.
    Samples,
}

/// Where the text comes from and how to read it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// `None`: the bundled corpus.
    pub path: Option<PathBuf>,
    /// CSV column(s); `Some` means the file is read as AG News CSV.
    pub field: Option<Field>,
    /// Samples are lines (`Samples` without a field) or the text runs on.
    pub layout: Layout,
}

/// A corpus read into memory.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// For messages and model metadata.
    pub name: String,
    /// CRC-32 of the file's bytes, to recognise it when a run resumes.
    pub crc: u32,
    /// `Running`: exactly one text. `Samples`: the non-empty samples in file order.
    pub texts: Vec<String>,
    /// The line of the file where each text starts (from 1), for messages.
    pub lines: Vec<usize>,
    /// The layout the texts follow.
    pub layout: Layout,
    /// What the file does that its format does not allow but that could
    /// be read anyway, for notes (CSV fields with text after their closing
    /// quote, a header row left out).
    pub notes: Vec<String>,
}

impl Spec {
    /// The corpus's name in messages and model metadata: the file's name
    /// (and the CSV field), or the bundled text's.
    pub fn name(&self) -> String {
        match &self.path {
            None => BUNDLED_NAME.to_string(),
            Some(p) => {
                // A pipe (`<(zcat news.csv.gz)` is /dev/fd/63) is named by
                // its whole path: "63" alone says nothing.
                let whole = p.starts_with("/dev") || p.starts_with("/proc");
                let file_name = match p.file_name() {
                    Some(f) if !whole => f.to_string_lossy().into(),
                    _ => p.display().to_string(),
                };
                match self.field {
                    Some(f) => format!("{file_name}:{}", f.name()),
                    None => file_name,
                }
            }
        }
    }

    /// Reads and parses the corpus.
    pub fn load(&self) -> Result<Corpus, CliError> {
        self.load_as("corpus")
    }

    /// [`load`](Spec::load), naming the file `what` ("held-out file") where
    /// it has no text.
    fn load_as(&self, what: &str) -> Result<Corpus, CliError> {
        let name = self.name();
        let (bytes, path) = match &self.path {
            None => (BUNDLED.to_vec(), PathBuf::from(BUNDLED_NAME)),
            Some(p) => {
                let p = from_here(p);
                (read_text(&p)?, p)
            }
        };
        let crc = charlm_runtime::format::crc32(&bytes);
        let text = utf8(&path, bytes)?;
        let mut notes = Vec::new();
        // The lesson's data without --field: every column, commas and
        // quotes would be read as text.
        if self.field.is_none()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            notes.push(format!(
                "{}: read as plain text; to read one column of an AG News CSV, give --field title (or description, title+description)",
                path.display()
            ));
        }
        if self.field.is_some() {
            let quirk = check_quotes(&text).map_err(|why| {
                CliError::invalid(format!("{}: CSV error: {why}", path.display()))
            })?;
            notes.extend(quirk.map(|q| format!("{}: {q}", path.display())));
        }
        let (texts, lines) = match (self.field, self.layout) {
            (Some(field), _) => csv_samples(&path, &text, field, &mut notes)?,
            (None, Layout::Samples) => text
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .zip(1..)
                .filter(|(l, _)| !l.is_empty())
                .map(|(l, n)| (String::from(l), n))
                .unzip(),
            (None, Layout::Running) => {
                if text.is_empty() {
                    (vec![], vec![])
                } else {
                    (vec![text], vec![1])
                }
            }
        };
        if texts.is_empty() {
            return Err(CliError::invalid(format!(
                "{}: the {what} is empty",
                path.display()
            )));
        }
        Ok(Corpus {
            name,
            crc,
            texts,
            lines,
            layout: if self.field.is_some() {
                Layout::Samples
            } else {
                self.layout
            },
            notes,
        })
    }
}

/// `path` (which a run stores absolute, to resume from any folder) as
/// messages show it: relative to the current folder where it lies under it
/// (so a path given relative reads as given, `../data/news.csv` and not
/// `/home/me/run/../data/news.csv`), else absolute. It names the same file.
pub fn from_here(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|here| path.strip_prefix(here).ok())
        .filter(|rest| !rest.as_os_str().is_empty())
        .map_or_else(|| path.to_path_buf(), Path::to_path_buf)
}

/// Checks UTF-8, naming the file and the first bad byte. A UTF-8
/// byte-order mark is dropped (it is no character of the text); UTF-16,
/// with a byte-order mark or without (NUL bytes between ASCII letters), is
/// named as such, and a NUL character is refused: none belongs in a text
/// to train on, and it would become the most frequent symbol.
pub fn utf8(path: &Path, mut bytes: Vec<u8>) -> Result<String, CliError> {
    let bom = check_text(path, &bytes, true)?;
    bytes.drain(..bom);
    String::from_utf8(bytes).map_err(|e| {
        CliError::invalid(format!(
            "{}: invalid UTF-8 at byte offset {}",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads a corpus file, judging its first 64 KiB as text before reading
/// the rest: a binary file, or a device that never ends (`/dev/zero`,
/// `/dev/urandom`), is refused at once, not after it has filled memory.
pub fn read_text(path: &Path) -> Result<Vec<u8>, CliError> {
    let head = |b: &[u8]| check_text(path, b, false).map(|_| true);
    crate::error::read_file_at_most(path, u64::MAX, "a corpus", Some(&head))
}

/// [`utf8`]'s checks on `bytes`, the whole file or (`whole` false) its
/// beginning, where all but the UTF-8 check apply. Returns the length of
/// the UTF-8 byte-order mark (0 or 3).
fn check_text(path: &Path, bytes: &[u8], whole: bool) -> Result<usize, CliError> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(CliError::invalid(format!(
            "{}: UTF-16 text (it starts with a UTF-16 byte-order mark); charlm reads UTF-8: convert it first (iconv -f UTF-16 -t UTF-8)",
            path.display()
        )));
    }
    let bom = if bytes.starts_with(&[0xef, 0xbb, 0xbf]) {
        3
    } else {
        0
    };
    let bytes = &bytes[bom..];
    // Files that are no text at all, named by what they are.
    let what = if bytes.starts_with(&[0x1f, 0x8b]) {
        Some("gzip-compressed: decompress it first (gunzip, or --corpus <(zcat FILE))")
    } else if bytes.starts_with(b"PK\x03\x04") {
        Some("a zip archive: unzip it first")
    } else if bytes.starts_with(&charlm_runtime::format::MAGIC) {
        Some("a charlm model or checkpoint, not a text")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(CliError::invalid(format!("{}: {what}", path.display())));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(CliError::invalid(format!(
            "{}: a NUL byte at offset {at}: not UTF-8 text (UTF-16 without a byte-order mark? convert it with iconv -f UTF-16LE -t UTF-8)",
            path.display()
        )));
    }
    // UTF-8 itself is judged on the whole file only (a NUL byte further on
    // is named first, as it always was).
    match std::str::from_utf8(bytes) {
        Err(e) if whole => Err(CliError::invalid(format!(
            "{}: invalid UTF-8 at byte offset {}",
            path.display(),
            e.valid_up_to()
        ))),
        _ => Ok(bom),
    }
}

/// Checks a CSV file's quoting against RFC 4180. A quoted field that
/// never ends is an error (the CSV reader would run it to the end of the
/// file). Text after a closing quote (`"ab"cd`, where a quote inside a
/// quoted field should be written twice) is read as the CSV reader reads
/// it, joined (`abcd`), and described for a note: how many fields, and the
/// first one's line.
fn check_quotes(text: &str) -> Result<Option<String>, String> {
    #[derive(PartialEq)]
    enum At {
        FieldStart,
        Unquoted,
        Quoted,
        AfterQuote,
        /// After a closing quote, text before the field's end.
        Joined,
    }
    let (mut at, mut line, mut opened) = (At::FieldStart, 1, 1);
    let (mut joined, mut first) = (0usize, 0usize);
    for b in text.bytes() {
        at = match (at, b) {
            (At::Quoted, b'"') => At::AfterQuote,
            (At::Quoted, _) => At::Quoted,
            (At::AfterQuote, b'"') => At::Quoted,
            (At::FieldStart, b'"') => {
                opened = line;
                At::Quoted
            }
            (_, b',' | b'\n' | b'\r') => At::FieldStart,
            // A field that ran over a line break and is followed by text:
            // its quote was never closed, and the next row's opening quote
            // closed it (`"3","never closed,d` then `"4","title"...`).
            (At::AfterQuote, _) if line != opened => {
                return Err(format!(
                    "a quoted field that opens on line {opened} seems never closed: it runs on to line {line}, where text follows the quote that ends it"
                ));
            }
            (At::AfterQuote, _) => {
                joined += 1;
                if joined == 1 {
                    first = line;
                }
                At::Joined
            }
            (At::Joined, _) => At::Joined,
            (_, _) => At::Unquoted,
        };
        if b == b'\n' {
            line += 1;
        }
    }
    if at == At::Quoted {
        return Err(format!(
            "a quoted field is never closed (it opens on line {opened})"
        ));
    }
    Ok((joined > 0).then(|| {
        let what = if joined == 1 {
            "1 field has text after its closing quote (on line".to_string()
        } else {
            format!("{joined} fields have text after their closing quote (the first on line")
        };
        format!(
            "{what} {first}); read joined, as CSV readers do (a quote inside a quoted field is written twice)"
        )
    }))
}

/// AG News rows `class,title,description` (RFC 4180 quoting; backslash
/// sequences such as `\$` or `#39;` are kept as they are). A first row
/// whose class is not a number is a header (Kaggle's copy starts with
/// `Class Index,Title,Description`): left out, with a note.
fn csv_samples(
    path: &Path,
    text: &str,
    field: Field,
    notes: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<usize>), CliError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let (mut out, mut lines) = (Vec::new(), Vec::new());
    // Rows with more than three columns (an unquoted comma splits a field):
    // how many, and the first.
    let (mut wide, mut first_wide) = (0u64, 0);
    for (row, rec) in reader.records().enumerate() {
        let rec =
            rec.map_err(|e| CliError::invalid(format!("{}: CSV error: {e}", path.display())))?;
        let class = rec.get(0).unwrap_or_default().trim();
        // A first row that names its columns is a header; one that lacks
        // the field's column is no AG News row at all (plain text given
        // with --field), and is reported below as such.
        let has_field = field.columns().iter().all(|&c| c < rec.len());
        if row == 0 && class.parse::<f64>().is_err() && has_field {
            notes.push(format!(
                "{}: row 1 (\"{class}\", ...) is a header, not a sample: left out",
                path.display()
            ));
            continue;
        }
        if rec.len() > 3 {
            wide += 1;
            if wide == 1 {
                first_wide = row + 1;
            }
        }
        let mut parts = Vec::with_capacity(2);
        for &col in field.columns() {
            let value = rec.get(col).ok_or_else(|| {
                CliError::invalid(format!(
                    "{}: row {} has {}, no {} (AG News CSV is class,title,description)",
                    path.display(),
                    row + 1,
                    crate::out::count(rec.len() as u64, "column", "columns"),
                    if col == 1 { "title" } else { "description" }
                ))
            })?;
            parts.push(value);
        }
        let sample = parts.join(" ");
        if !sample.is_empty() {
            out.push(sample);
            lines.push(rec.position().map_or(0, |p| p.line() as usize));
        }
    }
    if wide > 0 {
        notes.push(format!(
            "{}: {} more than 3 columns (the first: row {first_wide}); an unquoted comma may have split a field: the title is read from column 2, the description from column 3",
            path.display(),
            crate::out::count(wide, "row has", "rows have")
        ));
    }
    Ok((out, lines))
}

/// Training and held-out text.
#[derive(Clone, Debug)]
pub struct Split {
    /// Training texts (one for running text).
    pub train: Vec<String>,
    /// The line where each training text starts in its file (from 1).
    pub train_lines: Vec<usize>,
    /// Held-out texts (possibly none).
    pub val: Vec<String>,
    /// CRC-32 of the `--val` file they came from, if they came from one.
    pub val_crc: Option<u32>,
}

impl Spec {
    /// `corpus` (this spec's) split as a run splits it: the held-out texts
    /// from the `val` file, read as this spec reads its corpus, else the
    /// fraction `frac` of the corpus; with the notes on the `val` file.
    pub fn split(
        &self,
        corpus: Corpus,
        val: Option<&Path>,
        frac: f64,
    ) -> Result<(Split, Vec<String>), CliError> {
        Ok(match val {
            Some(path) => {
                let val = Spec {
                    path: Some(path.to_path_buf()),
                    ..self.clone()
                }
                .load_as("held-out file")?;
                let split = Split {
                    train: corpus.texts,
                    train_lines: corpus.lines,
                    val: val.texts,
                    val_crc: Some(val.crc),
                };
                (split, val.notes)
            }
            None => (corpus.split(frac), Vec::new()),
        })
    }
}

impl Corpus {
    /// Holds out a fraction `frac` (0 to 0.5): the last part of running text,
    /// or every `1/frac`-th sample (spread evenly, the same every time).
    pub fn split(self, frac: f64) -> Split {
        match self.layout {
            Layout::Running => {
                let text = self.texts.into_iter().next().unwrap_or_default();
                let n = text.chars().count();
                let keep = n - (n as f64 * frac).round() as usize;
                let cut = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
                let val = text[cut..].to_string();
                let mut train = text;
                train.truncate(cut);
                Split {
                    train: vec![train],
                    train_lines: vec![1],
                    val: if val.is_empty() { vec![] } else { vec![val] },
                    val_crc: None,
                }
            }
            Layout::Samples => {
                let (mut train, mut train_lines, mut val) = (Vec::new(), Vec::new(), Vec::new());
                for (i, (s, line)) in self.texts.into_iter().zip(self.lines).enumerate() {
                    // Sample i is held out when the running count of held-out
                    // samples, floor((i + 1) * frac), steps up at i.
                    let held = ((i + 1) as f64 * frac).floor() > (i as f64 * frac).floor();
                    if held {
                        val.push(s)
                    } else {
                        train.push(s);
                        train_lines.push(line);
                    }
                }
                Split {
                    train,
                    train_lines,
                    val,
                    val_crc: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    /// The titles of a CSV file with `bytes`.
    fn titles(bytes: &[u8]) -> Corpus {
        let f = file(bytes);
        Spec {
            path: Some(f.path().into()),
            field: Some(Field::Title),
            layout: Layout::Samples,
        }
        .load()
        .unwrap()
    }

    #[test]
    fn ag_news_csv_fields() {
        let f = file(b"\"3\",\"Wall St. Bears Claw Back\",\"Reuters - Short-sellers, \\$5 #39;s\"\n\"4\",\"Title, with \"\"quotes\"\"\",\"d\"\n");
        let spec = |field| Spec {
            path: Some(f.path().into()),
            field: Some(field),
            layout: Layout::Samples,
        };
        let c = spec(Field::Title).load().unwrap();
        assert_eq!(
            c.texts,
            ["Wall St. Bears Claw Back", "Title, with \"quotes\""]
        );
        assert_eq!(c.layout, Layout::Samples);
        let c = spec(Field::TitleDescription).load().unwrap();
        assert_eq!(
            c.texts[0],
            "Wall St. Bears Claw Back Reuters - Short-sellers, \\$5 #39;s"
        );
    }

    #[test]
    fn a_file_is_named_by_its_name_and_a_pipe_by_its_path() {
        let spec = |path: &str, field| Spec {
            path: Some(path.into()),
            field,
            layout: Layout::Samples,
        };
        assert_eq!(
            spec("data/train.csv", Some(Field::Title)).name(),
            "train.csv:title"
        );
        assert_eq!(spec("/dev/fd/63", None).name(), "/dev/fd/63");
        assert_eq!(spec("/proc/self/fd/0", None).name(), "/proc/self/fd/0");
    }

    #[test]
    fn csv_without_the_field_is_an_error() {
        let f = file(b"1,only a title\n");
        let spec = Spec {
            path: Some(f.path().into()),
            field: Some(Field::Description),
            layout: Layout::Samples,
        };
        let err = spec.load().unwrap_err().to_string();
        assert!(err.contains("no description"), "{err}");
        // Plain text given with --field: its first line is no header (it
        // lacks the field's column) but the first row that is not AG News.
        for text in [
            &b"just one line of plain text\n"[..],
            b"two lines\nof plain text\n",
        ] {
            let f = file(text);
            let spec = Spec {
                path: Some(f.path().into()),
                field: Some(Field::Title),
                layout: Layout::Samples,
            };
            let err = spec.load().unwrap_err().to_string();
            assert!(err.contains("row 1 has 1 column, no title"), "{err}");
        }
    }

    #[test]
    fn unterminated_quotes_are_an_error() {
        let f = file(b"1,\"unterminated quote,desc\n2,a,b\n");
        let spec = Spec {
            path: Some(f.path().into()),
            field: Some(Field::Title),
            layout: Layout::Samples,
        };
        let err = spec.load().unwrap_err().to_string();
        assert!(err.contains("never closed (it opens on line 1)"), "{err}");
    }

    #[test]
    fn text_after_a_closing_quote_is_counted_and_doubled_quotes_are_text() {
        assert_eq!(
            check_quotes("1,\"a\"\"b\",\"c\"\r\n2,x,\"multi\nline\"\n"),
            Ok(None)
        );
        let quirk = check_quotes("1,\"ok\",d\n3,\"ab\"cd,\"e\"f\n")
            .unwrap()
            .unwrap();
        assert!(
            quirk.starts_with("2 fields have") && quirk.contains("first on line 2"),
            "{quirk}"
        );
        // and the reader joins them
        let c = titles(b"1,\"ab\"cd,desc\n");
        assert_eq!(c.texts, ["abcd"]);
        assert!(c.notes[0].contains("1 field has text after its closing quote (on line 1)"));
        let err = check_quotes("1,a,b\n2,\"open,d\n3,x,y\n").unwrap_err();
        assert!(err.contains("never closed (it opens on line 2)"), "{err}");
        // Not closed mid-file: the next row's opening quote ends the field,
        // and text follows it.
        let err = check_quotes("\"1\",\"a\",\"b\"\n\"3\",\"never closed,d\n\"4\",\"t\",\"d\"\n")
            .unwrap_err();
        assert!(
            err.contains("opens on line 2 seems never closed: it runs on to line 3"),
            "{err}"
        );
    }

    #[test]
    fn compressed_files_and_models_are_named_as_such() {
        for (bytes, what) in [
            (&b"\x1f\x8b\x08\x00rest"[..], "gzip-compressed"),
            (b"PK\x03\x04rest", "a zip archive"),
            (b"CHLMCKPT\x00\x01", "a charlm model or checkpoint"),
        ] {
            let err = utf8(Path::new("f"), bytes.to_vec())
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{err}");
        }
    }

    #[test]
    fn a_header_row_is_left_out_with_a_note() {
        let c = titles(b"Class Index,Title,Description\n\"3\",\"Wall St.\",\"d\"\n4,Second,d\n");
        assert_eq!(c.texts, ["Wall St.", "Second"]);
        assert_eq!(c.notes.len(), 1);
        assert!(
            c.notes[0]
                .ends_with("row 1 (\"Class Index\", ...) is a header, not a sample: left out")
        );
        // a first row with a class number is a sample
        let c = titles(b" 1 ,First,d\n");
        assert_eq!(
            (c.texts.as_slice(), c.notes.len()),
            (&["First".to_string()][..], 0)
        );
    }

    #[test]
    fn rows_with_more_than_three_columns_are_noted() {
        let c = titles(b"1,Oil, gold rise,d\n2,Two,d\n3,a,b,c,d\n");
        assert_eq!(c.texts, ["Oil", "Two", "a"]);
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(
            c.notes[0].contains(": 2 rows have more than 3 columns (the first: row 1);"),
            "{}",
            c.notes[0]
        );
        let c = titles(b"1,One,d\n2,Two,d,e\n");
        assert!(c.notes[0].contains(": 1 row has more than 3 columns (the first: row 2);"));
        assert!(titles(b"1,One,d\n2,Two,d\n").notes.is_empty());
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let f = file(b"abc\xffdef");
        let spec = Spec {
            path: Some(f.path().into()),
            field: None,
            layout: Layout::Running,
        };
        let err = spec.load().unwrap_err().to_string();
        assert!(err.contains("invalid UTF-8 at byte offset 3"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_is_dropped_and_utf16_and_nul_are_named() {
        let p = Path::new("c.txt");
        let text = utf8(p, b"\xef\xbb\xbfAb".to_vec()).unwrap();
        assert_eq!(text, "Ab");
        for (bytes, says) in [
            (&b"\xff\xfeA\x00b\x00"[..], "UTF-16 text"),
            (&b"\xfe\xff\x00A\x00b"[..], "UTF-16 text"),
            (&b"A\x00b\x00"[..], "a NUL byte at offset 1"),
        ] {
            let err = utf8(p, bytes.to_vec()).unwrap_err().to_string();
            assert!(err.starts_with("c.txt: ") && err.contains(says), "{err}");
        }
    }

    #[test]
    fn empty_corpus_is_an_error() {
        let f = file(b"\n\r\n");
        let spec = Spec {
            path: Some(f.path().into()),
            field: None,
            layout: Layout::Samples,
        };
        assert!(spec.load().unwrap_err().to_string().contains("empty"));
        let f = file(b"");
        let spec = Spec {
            path: Some(f.path().into()),
            field: None,
            layout: Layout::Running,
        };
        assert!(spec.load().unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn splits_are_deterministic() {
        let c = Corpus {
            name: "x".into(),
            crc: 0,
            texts: (0..100).map(|i| i.to_string()).collect(),
            lines: (1..=100).collect(),
            layout: Layout::Samples,
            notes: vec![],
        };
        let s = c.split(0.05);
        assert_eq!(s.val, ["19", "39", "59", "79", "99"]);
        assert_eq!(s.train.len(), 95);
        assert_eq!(s.train_lines[18..20], [19, 21]);
        let c = Corpus {
            name: "x".into(),
            crc: 0,
            texts: vec!["abcdéfghij".into()],
            lines: vec![1],
            layout: Layout::Running,
            notes: vec![],
        };
        let s = c.split(0.2);
        assert_eq!((s.train[0].as_str(), s.val[0].as_str()), ("abcdéfgh", "ij"));
    }

    #[test]
    fn bundled_corpus_loads() {
        let c = Spec {
            path: None,
            field: None,
            layout: Layout::Running,
        }
        .load()
        .unwrap();
        assert_eq!(c.texts.len(), 1);
        assert!(c.texts[0].starts_with("First Citizen:"));
    }
}
