//! Streaming scans: key ranges, the bytes iterators every store layer returns, and the merges
//! that put a cache or a transaction buffer over the store below it, or segments side by side.
//!
//! Nothing here collects a scan: each layer wraps the iterator of the layer below (RocksDB
//! iterators at the bottom), so a scan of any size holds one entry per layer at a time.

use std::cmp::Ordering;
use std::iter::Peekable;
use std::ops::Bound;

use crate::error::Result;

/// The entries of a bytes scan, in key order: `(key, value)`.
pub(crate) type BytesIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// One batch of a scan read out of a store: the raw entries back to back in one buffer, so a
/// batch costs two allocations however many entries it holds, and none when the buffer is
/// reused.
#[derive(Debug, Default)]
pub(crate) struct RawEntries {
    bytes: Vec<u8>,
    /// Per entry: where its key starts, where it ends (its value starts), where its value ends.
    spans: Vec<(usize, usize, usize)>,
}

impl RawEntries {
    /// Appends an entry.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.spans.push((start, key_end, self.bytes.len()));
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// The bytes the buffers hold room for.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity() + self.spans.capacity() * std::mem::size_of::<(usize, usize, usize)>()
    }

    /// Appends at most `limit` entries of `scan`.
    pub(crate) fn extend_from(&mut self, scan: BytesIter<'_>, limit: usize) -> Result<()> {
        for entry in scan.take(limit) {
            let (key, value) = entry?;
            self.push(&key, &value);
        }
        Ok(())
    }

    /// Forgets the entries, keeping the buffers.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    /// The entries, in the order pushed.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.iter().map(|&(start, key_end, end)| (&self.bytes[start..key_end], &self.bytes[key_end..end]))
    }
}

/// A range of keys in byte order: `from` inclusive, `until` exclusive; `None` is open. A
/// `reverse` range is scanned from its end down.
///
/// Inclusive upper bounds and exclusive lower bounds become this form through the immediate
/// successor of a key in byte order, the key followed by a zero byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub(crate) from: Option<Vec<u8>>,
    pub(crate) until: Option<Vec<u8>>,
    pub(crate) reverse: bool,
}

/// The first key after `key` in byte order.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl KeyRange {
    /// Every key.
    pub(crate) fn all() -> Self {
        KeyRange::default()
    }

    /// No key.
    pub(crate) fn empty() -> Self {
        KeyRange { from: Some(Vec::new()), until: Some(Vec::new()), reverse: false }
    }

    /// `from <= key <= to`.
    pub(crate) fn inclusive(from: Option<&[u8]>, to: Option<&[u8]>) -> Self {
        KeyRange { from: from.map(<[u8]>::to_vec), until: to.map(successor), reverse: false }
    }

    /// Keys that start with `prefix`.
    pub(crate) fn prefix(prefix: &[u8]) -> Self {
        // The first key after every key with this prefix: the prefix with its last byte below
        // 0xff incremented (none if it is all 0xff).
        let mut until = prefix.to_vec();
        while until.last() == Some(&0xff) {
            until.pop();
        }
        if let Some(last) = until.last_mut() {
            *last += 1;
        }
        KeyRange { from: Some(prefix.to_vec()), until: (!until.is_empty()).then_some(until), reverse: false }
    }

    /// The same keys, scanned from the last down.
    pub(crate) fn reversed(mut self) -> Self {
        self.reverse = !self.reverse;
        self
    }

    /// The part of this range after `key` in byte order.
    pub(crate) fn after(&self, key: &[u8]) -> Self {
        KeyRange { from: Some(successor(key)), until: self.until.clone(), reverse: self.reverse }
    }

    /// The part of this range a scan has not reached yet once it returned `key`: after it for
    /// a forward scan, before it for a reverse one.
    pub(crate) fn past(&self, key: &[u8]) -> Self {
        if self.reverse {
            KeyRange { from: self.from.clone(), until: Some(key.to_vec()), reverse: true }
        } else {
            self.after(key)
        }
    }

    /// Whether no key can fall in the range.
    pub(crate) fn is_empty(&self) -> bool {
        matches!((&self.from, &self.until), (Some(f), Some(u)) if f >= u)
    }

    /// Whether `key` falls in the range.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.from.as_deref().is_none_or(|f| key >= f) && self.until.as_deref().is_none_or(|u| key < u)
    }

    /// The range as bounds for `BTreeMap::range` (check [`is_empty`](Self::is_empty) first: an
    /// inverted range panics there).
    pub(crate) fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            self.from.as_deref().map_or(Bound::Unbounded, Bound::Included),
            self.until.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
        )
    }
}

/// A double-ended iterator in the direction of `range`.
pub(crate) fn directed<'a, I>(iter: I, range: &KeyRange) -> Box<dyn Iterator<Item = I::Item> + 'a>
where
    I: DoubleEndedIterator + 'a,
{
    if range.reverse {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    }
}

/// Entries of `base` with `overlay` written over them: on equal keys the overlay wins, and an
/// overlay entry without a value (a pending delete) hides the base entry. Both run in the
/// direction of `range`.
pub(crate) fn overlay<'a, O>(base: BytesIter<'a>, overlay: O, range: &KeyRange) -> BytesIter<'a>
where
    O: Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a,
{
    Box::new(Overlay { base: base.peekable(), overlay: overlay.peekable(), reverse: range.reverse })
}

struct Overlay<'a, O: Iterator> {
    base: Peekable<BytesIter<'a>>,
    overlay: Peekable<O>,
    reverse: bool,
}

impl<'a, O> Iterator for Overlay<'a, O>
where
    O: Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
{
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(Ok((base_key, _))), Some((overlay_key, _))) => {
                    let order = base_key.as_slice().cmp(overlay_key);
                    if self.reverse {
                        order.reverse()
                    } else {
                        order
                    }
                }
            };
            if order == Ordering::Less {
                return self.base.next();
            }
            if order == Ordering::Equal {
                self.base.next();
            }
            let (key, value) = self.overlay.next().expect("peeked");
            if let Some(value) = value {
                return Some(Ok((key.to_vec(), value.to_vec())));
            }
        }
    }
}

/// The entries of several scans with disjoint keys (the segments of one store), merged in key
/// order (descending for a reverse `range`).
pub(crate) fn merge_disjoint<'a>(scans: Vec<BytesIter<'a>>, range: &KeyRange) -> BytesIter<'a> {
    match scans.len() {
        0 => Box::new(std::iter::empty()),
        1 => scans.into_iter().next().expect("one scan"),
        _ => {
            let mut scans = scans;
            let heads = scans.iter_mut().map(Iterator::next).collect();
            Box::new(MergeDisjoint { scans, heads, reverse: range.reverse })
        }
    }
}

struct MergeDisjoint<'a> {
    scans: Vec<BytesIter<'a>>,
    reverse: bool,
    /// The next entry of each scan (`None`: the scan ended).
    heads: Vec<Option<<BytesIter<'a> as Iterator>::Item>>,
}

impl Iterator for MergeDisjoint<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        // Few segments are live at once: a linear pick of the first head (or of an error)
        // is enough.
        let mut pick: Option<usize> = None;
        for (i, head) in self.heads.iter().enumerate() {
            match head {
                None => {}
                Some(Err(_)) => {
                    pick = Some(i);
                    break;
                }
                Some(Ok((key, _))) => {
                    let first = pick.is_none_or(|p| {
                        matches!(&self.heads[p], Some(Ok((best, _))) if if self.reverse { key > best } else { key < best })
                    });
                    if first {
                        pick = Some(i);
                    }
                }
            }
        }
        let i = pick?;
        let next = self.scans[i].next();
        std::mem::replace(&mut self.heads[i], next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(entries: &[(&str, &str)]) -> BytesIter<'static> {
        let owned: Vec<_> = entries.iter().map(|(k, v)| Ok((k.as_bytes().to_vec(), v.as_bytes().to_vec()))).collect();
        Box::new(owned.into_iter())
    }

    fn keys(iter: BytesIter<'_>) -> Vec<String> {
        iter.map(|e| String::from_utf8(e.unwrap().0).unwrap()).collect()
    }

    #[test]
    fn ranges_in_half_open_form() {
        let r = KeyRange::inclusive(Some(b"b"), Some(b"d"));
        assert!(r.contains(b"b") && r.contains(b"d") && !r.contains(b"d\0") && !r.contains(b"a"));
        assert!(!r.after(b"d").contains(b"d") && r.after(b"c").contains(b"d"));
        assert!(r.after(b"d").is_empty() || !r.after(b"d").contains(b"d"));
        let p = KeyRange::prefix(b"a\xff");
        assert!(p.contains(b"a\xff") && p.contains(b"a\xff\xff") && !p.contains(b"b"));
        assert_eq!(KeyRange::prefix(b"\xff").until, None);
        assert!(KeyRange::inclusive(Some(b"b"), Some(b"a")).is_empty());
    }

    #[test]
    fn overlay_wins_and_hides() {
        let base = scan(&[("a", "1"), ("b", "1"), ("d", "1")]);
        let pending: Vec<(&[u8], Option<&[u8]>)> =
            vec![(b"a", None), (b"b", Some(b"2")), (b"c", Some(b"2")), (b"e", None)];
        let merged: Vec<_> = overlay(base, pending.clone().into_iter(), &KeyRange::all()).map(Result::unwrap).collect();
        assert_eq!(
            merged,
            vec![(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"2".to_vec()), (b"d".to_vec(), b"1".to_vec())]
        );
        let base = scan(&[("d", "1"), ("b", "1"), ("a", "1")]);
        let reverse = KeyRange::all().reversed();
        let merged = overlay(base, directed(pending.into_iter(), &reverse), &reverse);
        assert_eq!(keys(merged), vec!["d", "c", "b"]);
    }

    #[test]
    fn continuations_cover_the_rest_of_a_scan() {
        let r = KeyRange::inclusive(Some(b"b"), Some(b"f"));
        assert!(r.past(b"c").contains(b"d") && !r.past(b"c").contains(b"c"));
        let back = r.clone().reversed().past(b"d");
        assert!(back.reverse && back.contains(b"c") && back.contains(b"b") && !back.contains(b"d"));
    }

    #[test]
    fn disjoint_scans_merge_in_key_order() {
        let merged = merge_disjoint(
            vec![scan(&[("a", ""), ("d", "")]), scan(&[]), scan(&[("b", ""), ("c", ""), ("e", "")])],
            &KeyRange::all(),
        );
        assert_eq!(keys(merged), vec!["a", "b", "c", "d", "e"]);
        let reverse = KeyRange::all().reversed();
        let merged = merge_disjoint(vec![scan(&[("d", ""), ("a", "")]), scan(&[("e", ""), ("c", ""), ("b", "")])], &reverse);
        assert_eq!(keys(merged), vec!["e", "d", "c", "b", "a"]);
    }
}
