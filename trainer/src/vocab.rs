//! The character vocabulary, with the lesson's tokenizer semantics:
//! Keras `Tokenizer(char_level=True, lower=False)`.
//!
//! Id 0 is padding (never a character), ids `1..` are the characters in
//! descending frequency, ties in order of first appearance (Keras counts into
//! an ordered dict and sorts it stably), and `<eos>` is the last id. The
//! vocabulary size counts padding and `<eos>`: `symbols + 2`.

use std::collections::HashMap;

use charlm_runtime::format::MAX_VOCAB;

use crate::error::CliError;

/// Characters and their ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    /// The character of id `i + 1` is `symbols[i]`.
    symbols: Vec<char>,
    /// Fast path for ASCII: id of each byte (0 = absent).
    ascii: [u16; 128],
    /// The other characters.
    other: HashMap<char, u16>,
}

impl Vocab {
    /// Counts the characters of `texts` in order, as `Tokenizer.fit_on_texts` does.
    pub fn fit<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, CliError> {
        let mut order: Vec<char> = Vec::new();
        let mut counts: HashMap<char, (u64, usize)> = HashMap::new();
        for text in texts {
            for c in text.chars() {
                let next = order.len();
                let e = counts.entry(c).or_insert_with(|| (0, next));
                if e.1 == next {
                    order.push(c);
                }
                e.0 += 1;
            }
        }
        let mut symbols = order;
        // Stable sort by descending count: ties keep first-appearance order.
        symbols.sort_by_key(|c| std::cmp::Reverse(counts[c].0));
        if symbols.is_empty() {
            return Err(CliError::invalid("the training data has no characters"));
        }
        if symbols.len() + 2 > MAX_VOCAB {
            return Err(CliError::invalid(format!(
                "the training data has {} distinct characters; the model format allows at most {} \
                 (padding and <eos> take two ids)",
                symbols.len(),
                MAX_VOCAB - 2
            )));
        }
        Ok(Self::from_symbols(symbols))
    }

    /// A vocabulary with these symbols for ids `1..` (distinct, checked by the caller).
    pub fn from_symbols(symbols: Vec<char>) -> Self {
        let mut ascii = [0u16; 128];
        let mut other = HashMap::new();
        for (i, &c) in symbols.iter().enumerate() {
            let id = i as u16 + 1;
            if (c as u32) < 128 {
                ascii[c as usize] = id;
            } else {
                other.insert(c, id);
            }
        }
        Vocab {
            symbols,
            ascii,
            other,
        }
    }

    /// Number of ids: padding, symbols, `<eos>`.
    pub fn size(&self) -> usize {
        self.symbols.len() + 2
    }

    /// The `<eos>` id (the last one).
    pub fn eos(&self) -> u16 {
        self.symbols.len() as u16 + 1
    }

    /// The symbols of ids `1..eos`, in id order.
    pub fn symbols(&self) -> &[char] {
        &self.symbols
    }

    /// The symbols as one string (the `.clm` vocabulary record).
    pub fn symbols_string(&self) -> String {
        self.symbols.iter().collect()
    }

    /// Id of `c`, if known.
    #[inline]
    pub fn id(&self, c: char) -> Option<u16> {
        if (c as u32) < 128 {
            Some(self.ascii[c as usize]).filter(|&id| id != 0)
        } else {
            self.other.get(&c).copied()
        }
    }

    /// Ids of the known characters of `text`, and how many were dropped.
    pub fn encode(&self, text: &str) -> (Vec<u16>, usize) {
        let mut dropped = 0;
        let ids = text
            .chars()
            .filter_map(|c| {
                let id = self.id(c);
                dropped += id.is_none() as usize;
                id
            })
            .collect();
        (ids, dropped)
    }

    /// Text of symbol ids (padding and `<eos>` are skipped).
    pub fn decode(&self, ids: &[u16]) -> String {
        ids.iter()
            .filter_map(|&id| self.symbols.get((id as usize).checked_sub(1)?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_order_with_ties_by_first_appearance() {
        // counts: l 3, o 2, a 1 ... ties among the ones in order of first sight.
        let v = Vocab::fit(["hello", "world"]).unwrap();
        // h1 e1 l3 o2 w1 r1 d1 -> l, o, then h e w r d (first appearance)
        assert_eq!(v.symbols_string(), "lohewrd");
        assert_eq!(v.id('l'), Some(1));
        assert_eq!(v.id('d'), Some(7));
        assert_eq!(v.eos(), 8);
        assert_eq!(v.size(), 9);
        assert_eq!(v.id('z'), None);
        assert_eq!(v.encode("hold!"), (vec![3, 2, 1, 7], 1));
        assert_eq!(v.decode(&[3, 4, 1, 1, 2, 0, 8]), "hello");
    }

    #[test]
    fn case_is_kept_and_non_ascii_counts_like_ascii() {
        let v = Vocab::fit(["Ääa", "ää€A"]).unwrap();
        // ä 3, Ä 1, a 1, € 1, A 1
        assert_eq!(v.symbols_string(), "äÄa€A");
        assert_eq!(v.id('€'), Some(4));
        assert_eq!(v.encode("A€ä"), (vec![5, 4, 1], 0));
    }

    #[test]
    fn matches_keras_on_the_lessons_example() {
        // Keras: Tokenizer(char_level=True, lower=False).fit_on_texts(["abcab", "cbx"])
        // word_counts = {a: 2, b: 3, c: 2, x: 1} -> b, a, c, x
        let v = Vocab::fit(["abcab", "cbx"]).unwrap();
        assert_eq!(v.symbols_string(), "bacx");
    }

    #[test]
    fn too_many_symbols_is_an_error() {
        let text: String = (0..MAX_VOCAB as u32)
            .filter_map(|i| char::from_u32(0x4e00 + i))
            .collect();
        let err = Vocab::fit([text.as_str()]).unwrap_err().to_string();
        assert!(err.contains("distinct characters"), "{err}");
        assert!(Vocab::fit([""]).is_err());
    }
}
