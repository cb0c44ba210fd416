//! The line being typed, edited as in a shell.
//!
//! The cursor counts characters (Unicode scalar values), never bytes, so that "é", "日" and "🦀" are
//! each one step of the arrows and one press of Backspace, and the counter agrees with the service, which
//! also counts characters. Words, for Ctrl-W, are runs of non-whitespace, as in a shell.

/// The text being typed and the cursor in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputLine {
    /// What has been typed so far, to be sent on Enter.
    text: String,
    /// The cursor, in characters from the start: 0 is before the first, the length after the last.
    cursor: usize,
}

impl From<&str> for InputLine {
    /// A line holding `text`, with the cursor at its end.
    fn from(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            cursor: text.chars().count(),
        }
    }
}

impl InputLine {
    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text as it would be sent: as typed, except that a leading `//` stands for `/`.
    pub fn message(&self) -> &str {
        if self.text.starts_with("//") {
            &self.text[1..]
        } else {
            &self.text
        }
    }

    /// The cursor, in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Empties the line.
    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
    }

    /// Inserts `character` at the cursor and moves past it.
    pub fn insert(&mut self, character: char) {
        let at = self.byte_index(self.cursor);
        self.text.insert(at, character);
        self.cursor += 1;
    }

    /// Erases the character before the cursor.
    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.remove_chars(self.cursor, self.cursor + 1);
        }
    }

    /// Erases the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.len() {
            self.remove_chars(self.cursor, self.cursor + 1);
        }
    }

    /// Moves one character left.
    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Moves one character right.
    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.len());
    }

    /// Moves to the start.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves to the end.
    pub fn end(&mut self) {
        self.cursor = self.len();
    }

    /// Erases the word before the cursor and the whitespace between it and the cursor (Ctrl-W).
    pub fn delete_word_before(&mut self) {
        let before: Vec<char> = self.text.chars().take(self.cursor).collect();
        let mut start = before.len();
        while start > 0 && before[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !before[start - 1].is_whitespace() {
            start -= 1;
        }
        self.remove_chars(start, self.cursor);
        self.cursor = start;
    }

    /// Erases everything before the cursor (Ctrl-U).
    pub fn delete_to_start(&mut self) {
        self.remove_chars(0, self.cursor);
        self.cursor = 0;
    }

    /// Erases everything from the cursor on (Ctrl-K).
    pub fn delete_to_end(&mut self) {
        let at = self.byte_index(self.cursor);
        self.text.truncate(at);
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    /// The byte offset of character `index`, or the end.
    fn byte_index(&self, index: usize) -> usize {
        self.text
            .char_indices()
            .nth(index)
            .map_or(self.text.len(), |(at, _)| at)
    }

    /// Removes characters `from..to`.
    fn remove_chars(&mut self, from: usize, to: usize) {
        let (start, end) = (self.byte_index(from), self.byte_index(to));
        self.text.replace_range(start..end, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> InputLine {
        let mut line = InputLine::default();
        for character in text.chars() {
            line.insert(character);
        }
        line
    }

    #[test]
    fn multibyte_characters_are_single_steps() {
        let mut line = typed("héllo 日本 🦀");
        assert_eq!(line.cursor(), 10);
        line.backspace();
        assert_eq!(line.text(), "héllo 日本 ");
        line.left();
        line.left();
        line.backspace();
        assert_eq!(line.text(), "héllo 本 ");
        line.home();
        line.right();
        line.delete();
        assert_eq!(line.text(), "hllo 本 ");
        line.insert('é');
        assert_eq!((line.text(), line.cursor()), ("héllo 本 ", 2));
    }

    #[test]
    fn home_end_and_arrows_stay_within_the_line() {
        let mut line = typed("abc");
        line.right();
        assert_eq!(line.cursor(), 3);
        line.home();
        line.left();
        assert_eq!(line.cursor(), 0);
        line.insert('>');
        line.end();
        line.insert('<');
        assert_eq!(line.text(), ">abc<");
    }

    #[test]
    fn ctrl_w_erases_the_word_before_the_cursor_and_the_spaces_after_it() {
        let mut line = typed("say hello  wörld  ");
        line.delete_word_before();
        assert_eq!(line.text(), "say hello  ");
        line.delete_word_before();
        assert_eq!(line.text(), "say ");
        line.home();
        line.delete_word_before();
        assert_eq!((line.text(), line.cursor()), ("say ", 0));
        let mut middle = typed("one two three");
        for _ in 0..6 {
            middle.left();
        }
        middle.delete_word_before();
        assert_eq!((middle.text(), middle.cursor()), ("one  three", 4));
    }

    #[test]
    fn ctrl_u_and_ctrl_k_cut_around_the_cursor() {
        let mut line = typed("日本語テキスト");
        line.left();
        line.left();
        line.left();
        let mut other = line.clone();
        line.delete_to_start();
        assert_eq!((line.text(), line.cursor()), ("キスト", 0));
        other.delete_to_end();
        assert_eq!((other.text(), other.cursor()), ("日本語テ", 4));
    }

    #[test]
    fn the_message_is_as_typed_but_for_a_doubled_slash() {
        assert_eq!(typed(" hi  ").message(), " hi  ");
        assert_eq!(typed("//help").message(), "/help");
        assert_eq!(typed("/").message(), "/");
    }
}
