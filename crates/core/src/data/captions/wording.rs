//! Captions from templates and synonyms, and which wordings and (class, colour) pairs are
//! kept out of training.
//!
//! A wording is a (template, item synonym, colour synonym) triple. Training draws from
//! templates 0-5 and the first two synonyms of each item and colour; the held-out wordings
//! use templates 6-7, the third item synonym and the third colour synonym, all three at once
//! (so every word that names the item or colour is new to the model, if not to the text
//! encoder). The held-out pairs are (class c, colour (3c + 1) mod 8): one or two classes per
//! colour, each class keeping seven colours in training.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::palette::COLOURS;

/// Which captions a dataset gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptionSet {
    /// Fashion-MNIST items: "a red sneaker".
    Fashion,
    /// MNIST digits: "a handwritten seven in blue".
    Mnist,
}

/// `{a}` is "a" or "an" for the word after it, `{colour}` and `{item}` the synonyms.
const TEMPLATES: [&str; 8] = [
    "{a} {colour} {item}",
    "{a} {item} in {colour}",
    "{colour} {item}",
    "a photo of {a} {colour} {item}",
    "{a} {item}, coloured {colour}",
    "{a} {colour}-coloured {item}",
    // Held out of training.
    "a picture of {a} {item} in {colour}",
    "{a} {item} that is {colour}",
];

/// Templates used in training; the rest are held out.
const TRAIN_TEMPLATES: usize = 6;

/// Synonyms of each item or colour used in training; the last one is held out.
const TRAIN_SYNONYMS: usize = 2;

const FASHION_ITEMS: [[&str; 3]; 10] = [
    ["t-shirt", "tee", "top"],
    ["pair of trousers", "pair of pants", "pair of slacks"],
    ["pullover", "sweater", "jumper"],
    ["dress", "frock", "gown"],
    ["coat", "jacket", "overcoat"],
    ["sandal", "pair of sandals", "flip-flop"],
    ["shirt", "button-up shirt", "blouse"],
    ["sneaker", "running shoe", "pair of trainers"],
    ["bag", "handbag", "purse"],
    ["ankle boot", "boot", "pair of booties"],
];

const DIGITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Which wordings to draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordingSplit {
    /// The templates and synonyms training sees.
    Train,
    /// The held-out templates with the held-out synonyms.
    HeldOut,
}

/// A (template, item synonym, colour synonym) choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wording {
    pub template: usize,
    pub item: usize,
    pub colour: usize,
}

impl Wording {
    /// A random wording of `split`.
    pub fn draw(split: WordingSplit, rng: &mut impl Rng) -> Self {
        match split {
            WordingSplit::Train => Self {
                template: rng.random_range(0..TRAIN_TEMPLATES),
                item: rng.random_range(0..TRAIN_SYNONYMS),
                colour: rng.random_range(0..TRAIN_SYNONYMS),
            },
            WordingSplit::HeldOut => Self {
                template: rng.random_range(TRAIN_TEMPLATES..TEMPLATES.len()),
                item: TRAIN_SYNONYMS,
                colour: TRAIN_SYNONYMS,
            },
        }
    }

    /// Whether training ever sees this wording.
    pub fn in_training(&self) -> bool {
        self.template < TRAIN_TEMPLATES
            && self.item < TRAIN_SYNONYMS
            && self.colour < TRAIN_SYNONYMS
    }
}

impl CaptionSet {
    /// The caption set of a dataset name or folder (`mnist`, `/data/fashion-mnist`), if it
    /// has one.
    pub fn for_dataset(name: &str) -> Option<Self> {
        let base = std::path::Path::new(name.trim_end_matches('/'))
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(name);
        match base {
            "fashion-mnist" => Some(Self::Fashion),
            "mnist" => Some(Self::Mnist),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fashion => "fashion",
            Self::Mnist => "mnist",
        }
    }

    /// Number of classes the captions name.
    pub fn classes(self) -> usize {
        10
    }

    /// The three names of `class` (the last held out of training).
    pub fn item(self, class: usize, synonym: usize) -> String {
        match self {
            Self::Fashion => FASHION_ITEMS[class][synonym].to_string(),
            Self::Mnist => match synonym {
                0 => format!("digit {class}"),
                1 => format!("handwritten {}", DIGITS[class]),
                _ => format!("number {}", DIGITS[class]),
            },
        }
    }
}

/// Whether (class, colour) is kept out of training.
pub fn is_held_out_pair(class: usize, colour: usize) -> bool {
    colour == (3 * class + 1) % COLOURS.len()
}

/// The caption of an image of `class` tinted `colour`, in `wording`.
pub fn caption(set: CaptionSet, class: usize, colour: usize, wording: Wording) -> String {
    let item = set.item(class, wording.item);
    let colour = COLOURS[colour].synonyms[wording.colour];
    let template = TEMPLATES[wording.template];
    // The article agrees with the word that follows "{a} ".
    let next = template
        .split_once("{a} ")
        .map(|(_, rest)| rest.split([' ', ',', '-']).next().unwrap_or(""))
        .unwrap_or("");
    let next_word = match next {
        "{colour}" => colour.split(' ').next().unwrap_or(""),
        "{item}" => item.split(' ').next().unwrap_or(""),
        _ => "",
    };
    template
        .replace("{a}", article(next_word))
        .replace("{colour}", colour)
        .replace("{item}", &item)
}

fn article(word: &str) -> &'static str {
    let vowel = word
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU8".contains(c));
    if vowel { "an" } else { "a" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn captions_read_as_english() {
        let w = |template, item, colour| Wording {
            template,
            item,
            colour,
        };
        assert_eq!(
            caption(CaptionSet::Fashion, 7, 0, w(0, 0, 0)),
            "a red sneaker"
        );
        assert_eq!(
            caption(CaptionSet::Fashion, 9, 1, w(1, 0, 0)),
            "an ankle boot in orange"
        );
        assert_eq!(
            caption(CaptionSet::Fashion, 0, 1, w(0, 0, 0)),
            "an orange t-shirt"
        );
        assert_eq!(
            caption(CaptionSet::Fashion, 7, 0, w(6, 2, 2)),
            "a picture of a pair of trainers in crimson"
        );
        assert_eq!(
            caption(CaptionSet::Mnist, 7, 5, w(5, 1, 0)),
            "a blue-coloured handwritten seven"
        );
        assert_eq!(
            caption(CaptionSet::Mnist, 8, 3, w(7, 0, 1)),
            "a digit 8 that is lime"
        );
        assert_eq!(
            caption(CaptionSet::Mnist, 3, 3, w(2, 2, 2)),
            "emerald number three"
        );
    }

    #[test]
    fn held_out_wordings_and_pairs_are_disjoint_from_training() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            assert!(Wording::draw(WordingSplit::Train, &mut rng).in_training());
            assert!(!Wording::draw(WordingSplit::HeldOut, &mut rng).in_training());
        }
        for class in 0..10 {
            let held = (0..8).filter(|&k| is_held_out_pair(class, k)).count();
            assert_eq!(held, 1, "class {class} keeps seven colours");
        }
        for colour in 0..8 {
            let held = (0..10).filter(|&c| is_held_out_pair(c, colour)).count();
            assert!((1..=2).contains(&held), "colour {colour}");
        }
    }
}
