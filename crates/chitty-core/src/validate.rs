//! What makes a participant name and a chat message acceptable.
//!
//! Lengths are counted in Unicode scalar values (Rust `char`s), never in bytes: "héllo" is five characters
//! long although it takes six bytes of UTF-8. Invalid UTF-8 never reaches this module, because a Rust
//! `String` cannot hold it; the service refuses it while decoding the request.
//!
//! Control characters (C0 `U+0000..=U+001F`, DEL `U+007F` and C1 `U+0080..=U+009F`, exactly the characters
//! for which [`char::is_control`] holds) are refused in messages and names alike. They include newlines,
//! tabs and the escape character that starts terminal escape sequences, which would otherwise let one
//! participant move the cursor or recolour everyone else's screen.
//!
//! Names also refuse format characters (Unicode category Cf): zero-width spaces and joiners, and the bidi
//! controls that reorder text. Two names are the same name when their [`name_key`]s are equal: compared
//! after NFKC normalisation, case folding, and the confusable-skeleton mapping of Unicode TR39, so "Alice",
//! "alice", "ＡＬＩＣＥ" and "аlice" (with a Cyrillic а) cannot be present at once.

use thiserror::Error;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The most characters a chat message may have.
pub const MAX_MESSAGE_CHARS: usize = 128;

/// The most characters a participant name may have.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a chat message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The message has no characters at all.
    #[error("message is empty")]
    Empty,
    /// The message has characters, but all of them are whitespace.
    #[error("message is only whitespace")]
    OnlyWhitespace,
    /// The message is longer than [`MAX_MESSAGE_CHARS`].
    #[error("message is {chars} characters long, over the limit of {MAX_MESSAGE_CHARS}")]
    TooLong {
        /// How many characters the message has.
        chars: usize,
    },
    /// The message contains a control character.
    #[error(
        "message contains the control character {} at position {position}; control characters are not allowed",
        code_point(*character)
    )]
    ControlCharacter {
        /// The offending character.
        character: char,
        /// Its position, counted in characters from 1.
        position: usize,
    },
}

/// Why a participant name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name has no characters.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_CHARS`].
    #[error("name is {chars} characters long, over the limit of {MAX_NAME_CHARS}")]
    TooLong {
        /// How many characters the name has.
        chars: usize,
    },
    /// The name starts or ends with whitespace.
    #[error("name starts or ends with whitespace")]
    SurroundingWhitespace,
    /// The name contains a character that does not print as itself: a control, a format character
    /// (zero-width or bidi), or whitespace other than the plain space.
    #[error(
        "name contains the unprintable character {} at position {position}; names may use printable characters and plain spaces",
        code_point(*character)
    )]
    Unprintable {
        /// The offending character.
        character: char,
        /// Its position, counted in characters from 1.
        position: usize,
    },
}

/// Checks a chat message: 1 to [`MAX_MESSAGE_CHARS`] characters, not only whitespace, no control characters.
pub fn check_message(text: &str) -> Result<(), MessageError> {
    if text.is_empty() {
        return Err(MessageError::Empty);
    }
    let chars = text.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(MessageError::TooLong { chars });
    }
    if let Some((index, character)) = text.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(MessageError::ControlCharacter {
            character,
            position: index + 1,
        });
    }
    if text.chars().all(char::is_whitespace) {
        return Err(MessageError::OnlyWhitespace);
    }
    Ok(())
}

/// Checks a participant name: 1 to [`MAX_NAME_CHARS`] characters, printable, with no leading or trailing
/// whitespace, no whitespace inside other than the plain space `U+0020`, and no format characters.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong { chars });
    }
    if let Some((index, character)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !is_printable_in_name(*c))
    {
        return Err(NameError::Unprintable {
            character,
            position: index + 1,
        });
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(NameError::SurroundingWhitespace);
    }
    Ok(())
}

fn is_printable_in_name(character: char) -> bool {
    !(character.is_control()
        || (character.is_whitespace() && character != ' ')
        || character.general_category() == GeneralCategory::Format)
}

/// The form in which two names are compared: NFKC-normalised, case-folded, then mapped to its TR39
/// confusable skeleton. Two names with the same key cannot both be present.
pub fn name_key(name: &str) -> String {
    let normalized: String = name.nfkc().collect();
    let folded = caseless::default_case_fold_str(&normalized);
    unicode_security::confusable_detection::skeleton(&folded).collect()
}

/// Formats a character as its code point, `U+001B`, so that an error message never contains the
/// character itself.
fn code_point(character: char) -> String {
    format!("U+{:04X}", u32::from(character))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_messages() {
        for text in [
            "hello",
            "  padded  ",
            "ünïcödé ✓",
            "a",
            "日本語のメッセージ",
            "🦀 crab",
        ] {
            assert_eq!(check_message(text), Ok(()), "text {text:?}");
        }
    }

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        let at_limit = "é".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(at_limit.len(), 2 * MAX_MESSAGE_CHARS);
        assert_eq!(check_message(&at_limit), Ok(()));
        let over = "é".repeat(MAX_MESSAGE_CHARS + 1);
        assert_eq!(
            check_message(&over),
            Err(MessageError::TooLong { chars: 129 })
        );
    }

    #[test]
    fn refuses_empty_and_blank_messages() {
        assert_eq!(check_message(""), Err(MessageError::Empty));
        assert_eq!(check_message("   "), Err(MessageError::OnlyWhitespace));
        assert_eq!(
            check_message("\u{3000}\u{2003}"),
            Err(MessageError::OnlyWhitespace)
        );
    }

    #[test]
    fn refuses_each_kind_of_control_character() {
        for (character, kind) in [
            ('\u{0}', "NUL"),
            ('\n', "newline"),
            ('\t', "tab"),
            ('\u{1b}', "escape"),
            ('\u{7f}', "DEL"),
            ('\u{85}', "C1 next line"),
            ('\u{9b}', "C1 control sequence introducer"),
        ] {
            let text = format!("ab{character}c");
            assert_eq!(
                check_message(&text),
                Err(MessageError::ControlCharacter {
                    character,
                    position: 3
                }),
                "{kind}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_problem_without_echoing_it() {
        let error = check_message("hi\u{1b}[2J").expect_err("escape must be refused");
        assert_eq!(
            error.to_string(),
            "message contains the control character U+001B at position 3; control characters are not allowed"
        );
        let error = check_message(&"x".repeat(130)).expect_err("too long");
        assert_eq!(
            error.to_string(),
            "message is 130 characters long, over the limit of 128"
        );
    }

    #[test]
    fn names() {
        assert_eq!(check_name("alice"), Ok(()));
        assert_eq!(check_name("Alice Smith"), Ok(()));
        assert_eq!(check_name("李雷"), Ok(()));
        assert_eq!(check_name(&"n".repeat(MAX_NAME_CHARS)), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(
            check_name(&"n".repeat(33)),
            Err(NameError::TooLong { chars: 33 })
        );
        assert_eq!(check_name(" alice"), Err(NameError::SurroundingWhitespace));
        assert_eq!(check_name("alice "), Err(NameError::SurroundingWhitespace));
        assert_eq!(
            check_name("al\tice"),
            Err(NameError::Unprintable {
                character: '\t',
                position: 3
            })
        );
        assert_eq!(
            check_name("a\u{2028}b"),
            Err(NameError::Unprintable {
                character: '\u{2028}',
                position: 2
            })
        );
    }

    #[test]
    fn zero_width_and_bidi_characters_are_refused_in_names() {
        for (name, character, position) in [
            ("ali\u{200b}ce", '\u{200b}', 4),
            ("a\u{200d}b", '\u{200d}', 2),
            ("\u{202e}ecila", '\u{202e}', 1),
            ("bob\u{2066}", '\u{2066}', 4),
            ("x\u{feff}", '\u{feff}', 2),
        ] {
            assert_eq!(
                check_name(name),
                Err(NameError::Unprintable {
                    character,
                    position
                }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_that_look_alike_share_a_key() {
        let alice = name_key("alice");
        for lookalike in [
            "Alice",
            "ALICE",
            "\u{430}lice",
            "ＡＬＩＣＥ",
            "\u{430}lic\u{435}",
        ] {
            assert_eq!(name_key(lookalike), alice, "{lookalike:?}");
        }
        assert_ne!(name_key("bob"), alice);
        assert_ne!(name_key("alice2"), alice);
    }

    proptest! {
        /// The key of a name does not depend on its case, and equal names have equal keys.
        #[test]
        fn name_keys_ignore_case(name in "[a-zA-Z0-9 ]{1,16}") {
            prop_assert_eq!(name_key(&name), name_key(&name.to_uppercase()));
            prop_assert_eq!(name_key(&name), name_key(&name.to_lowercase()));
        }

        /// Every string is either accepted or refused with exactly the reason its characters give.
        #[test]
        fn message_verdict_matches_its_definition(text in any::<String>()) {
            let chars: Vec<char> = text.chars().collect();
            let verdict = check_message(&text);
            if chars.is_empty() {
                prop_assert_eq!(verdict, Err(MessageError::Empty));
            } else if chars.len() > MAX_MESSAGE_CHARS {
                prop_assert_eq!(verdict, Err(MessageError::TooLong { chars: chars.len() }));
            } else if let Some(position) = chars.iter().position(|c| c.is_control()) {
                prop_assert_eq!(verdict, Err(MessageError::ControlCharacter { character: chars[position], position: position + 1 }));
            } else if chars.iter().all(|c| c.is_whitespace()) {
                prop_assert_eq!(verdict, Err(MessageError::OnlyWhitespace));
            } else {
                prop_assert_eq!(verdict, Ok(()));
            }
        }

        /// Accepted messages never contain anything that could drive a terminal.
        #[test]
        fn accepted_messages_have_no_control_characters(text in "\\PC{0,140}|[\\x00-\\x7f\\u{80}-\\u{9f}]{1,10}") {
            if check_message(&text).is_ok() {
                prop_assert!(!text.chars().any(char::is_control));
                prop_assert!((1..=MAX_MESSAGE_CHARS).contains(&text.chars().count()));
            }
        }

        /// Accepted names are trimmed, short and printable.
        #[test]
        fn accepted_names_are_well_formed(name in any::<String>()) {
            if check_name(&name).is_ok() {
                prop_assert_eq!(name.trim(), name.as_str());
                prop_assert!((1..=MAX_NAME_CHARS).contains(&name.chars().count()));
                prop_assert!(name.chars().all(is_printable_in_name));
            }
        }
    }
}
