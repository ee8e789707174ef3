//! Opt-out keywords: which inbound texts are STOP, STOPALL, START or HELP, and what to answer.
//!
//! A keyword is the whole message, not a word in it: "Stop." and " stop! " are STOP, while
//! "please don't stop" and "STOP STOP" are not. Before comparing, leading and trailing whitespace
//! and punctuation are trimmed, inner whitespace runs become one space, and case is ignored
//! (Unicode-aware: "arrêt" matches a configured "ARRÊT", "straße" matches "STRASSE"; full-width
//! "ｓｔｏｐ" matches STOP). Emoji are not punctuation, so "STOP 🛑" is not a keyword.
//!
//! Texts are compared as they arrive: a configured "ARRÊT" does not match the decomposed form
//! ("e" followed by a combining circumflex). Phones send the composed form in practice.

use std::collections::HashMap;

/// The action an inbound keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// Opt out of the line the text was sent to (or of every line of the app, see
    /// [`KeywordConfig::stop_all_scope_app`]).
    Stop,
    /// Opt out of every line of the app that owns the line.
    StopAll,
    /// Opt back in.
    Start,
    /// Ask for help; answered, nothing else changes.
    Help,
}

impl Keyword {
    /// A stable lower-case name for logs, metrics labels and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Stop => "stop",
            Keyword::StopAll => "stop_all",
            Keyword::Start => "start",
            Keyword::Help => "help",
        }
    }
}

/// Which lines an opt-out or opt-in keyword applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutScope {
    /// Only the line the text was sent to.
    Line,
    /// Every line of the app that owns that line.
    App,
}

/// The `[opt_out]` config: keyword lists and the automatic replies.
///
/// Every field is optional; a list given in the config replaces the default list, so a config that
/// adds Spanish repeats the English words:
///
/// ```toml
/// [opt_out]
/// stop = ["STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE", "ALTO", "PARAR", "CANCELAR"]
/// start = ["START", "UNSTOP", "YES", "COMENZAR"]
/// help = ["HELP", "INFO", "AYUDA"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeywordConfig {
    /// Words that opt the sender out of the line (default: the CTIA list).
    pub stop: Vec<String>,
    /// Words that opt the sender out of every line of the app (default: STOPALL).
    pub stop_all: Vec<String>,
    /// Words that opt the sender back in.
    pub start: Vec<String>,
    /// Words that ask for help.
    pub help: Vec<String>,
    /// Sent once after an opt-out, even though the number is now opted out.
    pub stop_reply: String,
    /// Sent after an opt-in.
    pub start_reply: String,
    /// Sent for HELP when the line has no help text of its own.
    pub help_reply: String,
    /// When true, STOP (and so START) applies to every line of the app, like STOPALL.
    pub stop_all_scope_app: bool,
}

/// The opt-out confirmation practices send (CoAction's wording).
pub const DEFAULT_STOP_REPLY: &str = "You have successfully been unsubscribed. You will not receive \
     any more messages from this number. Reply START to resubscribe or Opt Back In.";
/// The opt-in confirmation.
pub const DEFAULT_START_REPLY: &str = "You have successfully been re-subscribed to messages from \
     this number. Reply HELP for help. Reply STOP to unsubscribe.";
/// The HELP answer for lines without help text of their own.
pub const DEFAULT_HELP_REPLY: &str = "Reply STOP to unsubscribe. Msg&Data Rates May Apply.";

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| (*w).to_owned()).collect()
}

impl Default for KeywordConfig {
    /// The CTIA keywords and replies, English only.
    fn default() -> Self {
        KeywordConfig {
            stop: words(&[
                "STOP",
                "UNSUBSCRIBE",
                "CANCEL",
                "END",
                "QUIT",
                "OPTOUT",
                "REVOKE",
            ]),
            stop_all: words(&["STOPALL"]),
            start: words(&["START", "UNSTOP", "YES"]),
            help: words(&["HELP", "INFO"]),
            stop_reply: DEFAULT_STOP_REPLY.to_owned(),
            start_reply: DEFAULT_START_REPLY.to_owned(),
            help_reply: DEFAULT_HELP_REPLY.to_owned(),
            stop_all_scope_app: false,
        }
    }
}

impl KeywordConfig {
    /// The defaults plus the Spanish words: ALTO, PARAR, CANCELAR (stop), COMENZAR (start),
    /// AYUDA (help). The replies stay as configured; put both languages in them if wanted.
    pub fn with_spanish(mut self) -> Self {
        self.stop.extend(words(&["ALTO", "PARAR", "CANCELAR"]));
        self.start.extend(words(&["COMENZAR"]));
        self.help.extend(words(&["AYUDA"]));
        self
    }
}

/// Compiled keywords: a lookup from the normalised word to its action, plus the replies.
#[derive(Debug, Clone)]
pub struct Keywords {
    by_word: HashMap<String, Keyword>,
    /// Longest normalised keyword in chars; longer texts are rejected before building a string.
    max_chars: usize,
    stop_reply: String,
    start_reply: String,
    help_reply: String,
    stop_all_scope_app: bool,
}

impl Keywords {
    /// Compiles the config. Refuses a word listed under two actions (after normalising, so
    /// "Stop" under stop and "STOP." under start clash), a word that is only punctuation, an empty
    /// `stop` list and empty replies. Every problem is reported, joined by "; ".
    pub fn new(cfg: &KeywordConfig) -> Result<Self, String> {
        let mut errors = Vec::new();
        let mut by_word: HashMap<String, (Keyword, &'static str)> = HashMap::new();
        let lists: [(&'static str, Keyword, &[String]); 4] = [
            ("stop", Keyword::Stop, &cfg.stop),
            ("stop_all", Keyword::StopAll, &cfg.stop_all),
            ("start", Keyword::Start, &cfg.start),
            ("help", Keyword::Help, &cfg.help),
        ];
        if cfg.stop.is_empty() {
            errors
                .push("stop: at least one keyword is required (carriers require STOP)".to_owned());
        }
        for (list_name, action, list) in lists {
            for word in list {
                let Some(norm) = normalise(word, usize::MAX) else {
                    continue;
                };
                if norm.is_empty() {
                    errors.push(format!("{list_name}: {word:?} has no letters or digits"));
                    continue;
                }
                match by_word.get(&norm) {
                    Some((other, other_list)) if *other != action => errors.push(format!(
                        "{word:?} is listed under both {other_list} and {list_name}"
                    )),
                    Some(_) => {} // repeated in the same list: harmless
                    None => {
                        by_word.insert(norm, (action, list_name));
                    }
                }
            }
        }
        for (name, reply) in [
            ("stop_reply", &cfg.stop_reply),
            ("start_reply", &cfg.start_reply),
            ("help_reply", &cfg.help_reply),
        ] {
            if reply.trim().is_empty() {
                errors.push(format!("{name} is empty"));
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let max_chars = by_word.keys().map(|w| w.chars().count()).max().unwrap_or(0);
        Ok(Keywords {
            by_word: by_word.into_iter().map(|(w, (k, _))| (w, k)).collect(),
            max_chars,
            stop_reply: cfg.stop_reply.clone(),
            start_reply: cfg.start_reply.clone(),
            help_reply: cfg.help_reply.clone(),
            stop_all_scope_app: cfg.stop_all_scope_app,
        })
    }

    /// The keyword this whole inbound text is, if any.
    pub fn classify(&self, text: &str) -> Option<Keyword> {
        let norm = normalise(text, self.max_chars)?;
        self.by_word.get(&norm).copied()
    }

    /// The automatic reply to a keyword. `line_help` is the line's own help text, which wins over
    /// the configured `help_reply` when present and not blank.
    pub fn reply_for<'a>(&'a self, kw: Keyword, line_help: Option<&'a str>) -> &'a str {
        match kw {
            Keyword::Stop | Keyword::StopAll => &self.stop_reply,
            Keyword::Start => &self.start_reply,
            Keyword::Help => line_help
                .filter(|h| !h.trim().is_empty())
                .unwrap_or(&self.help_reply),
        }
    }

    /// Which lines an opt-out or opt-in applies to; `None` for HELP, which changes nothing.
    ///
    /// STOPALL covers the app's lines. STOP and START cover the line they were sent to, or the
    /// app's lines when `stop_all_scope_app` is set (START then undoes what STOP did). After
    /// STOPALL, START on one line opts back in to that line only.
    pub fn scope(&self, kw: Keyword) -> Option<OptOutScope> {
        let stop_scope = if self.stop_all_scope_app {
            OptOutScope::App
        } else {
            OptOutScope::Line
        };
        match kw {
            Keyword::Stop | Keyword::Start => Some(stop_scope),
            Keyword::StopAll => Some(OptOutScope::App),
            Keyword::Help => None,
        }
    }
}

/// The comparison form of a text: trimmed of whitespace and punctuation at both ends, inner
/// whitespace runs collapsed to one space, upper-cased. `None` once it exceeds `max_chars`, so a
/// long message costs one scan and no allocation beyond the bound.
fn normalise(text: &str, max_chars: usize) -> Option<String> {
    let trimmed = text.trim_matches(is_trimmable);
    let mut out = String::with_capacity(trimmed.len().min(max_chars.saturating_mul(4)));
    let mut chars = 0usize;
    let mut in_space = false;
    for c in trimmed.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
                chars += 1;
                in_space = true;
            }
        } else {
            // Upper case rather than lower: it folds more (ß -> SS, final sigma -> Σ).
            for u in fold_full_width(c).to_uppercase() {
                out.push(u);
                chars += 1;
            }
            in_space = false;
        }
        if chars > max_chars {
            return None;
        }
    }
    Some(out)
}

/// Full-width ASCII letters and digits (typed on CJK keyboards) as their ASCII forms.
fn fold_full_width(c: char) -> char {
    match c {
        '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => {
            char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c)
        }
        _ => c,
    }
}

/// Whitespace, or punctuation: ASCII punctuation and symbols, and the punctuation of the scripts
/// patients text in (Latin-1, General Punctuation with its quotes and dashes, Greek, Armenian,
/// Arabic, Devanagari, CJK and full-width forms). Std has no general-category table, hence the
/// list.
pub(crate) fn is_trimmable(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(
            c,
            '\u{00A1}' // ¡
                | '\u{00A7}' // §
                | '\u{00AB}' // «
                | '\u{00AD}' // soft hyphen
                | '\u{00B6}' // ¶
                | '\u{00B7}' // ·
                | '\u{00BB}' // »
                | '\u{00BF}' // ¿
                | '\u{037E}' // Greek question mark
                | '\u{0387}' // Greek ano teleia
                | '\u{055A}'..='\u{055F}' // Armenian
                | '\u{0589}'
                | '\u{060C}' // Arabic comma
                | '\u{061B}' // Arabic semicolon
                | '\u{061F}' // Arabic question mark
                | '\u{066A}'..='\u{066D}'
                | '\u{06D4}'
                | '\u{0964}'..='\u{0965}' // Devanagari danda
                | '\u{2000}'..='\u{206F}' // General Punctuation, incl. ‘’“” … and zero-width chars
                | '\u{2E00}'..='\u{2E2E}' // Supplemental Punctuation (2E2F is a letter)
                | '\u{2E30}'..='\u{2E7F}'
                | '\u{3001}'..='\u{3003}' // 、。〃
                | '\u{3008}'..='\u{3011}' // CJK brackets
                | '\u{3014}'..='\u{301F}'
                | '\u{3030}'
                | '\u{303D}'
                | '\u{FE10}'..='\u{FE19}' // vertical forms
                | '\u{FE30}'..='\u{FE6B}' // CJK compatibility and small forms
                | '\u{FEFF}' // byte order mark
                | '\u{FF01}'..='\u{FF0F}' // full-width ! " # ... /
                | '\u{FF1A}'..='\u{FF20}'
                | '\u{FF3B}'..='\u{FF40}'
                | '\u{FF5B}'..='\u{FF65}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn defaults() -> Keywords {
        Keywords::new(&KeywordConfig::default()).expect("defaults compile")
    }

    #[test]
    fn default_words_should_classify_as_their_action() {
        let kw = defaults();
        let table = [
            ("STOP", Keyword::Stop),
            ("stop", Keyword::Stop),
            ("Stop.", Keyword::Stop),
            (" stop! ", Keyword::Stop),
            ("\"STOP\"", Keyword::Stop),
            ("“Stop”", Keyword::Stop),
            ("¡stop!", Keyword::Stop),
            ("stop…", Keyword::Stop),
            ("\u{200B}STOP\r\n", Keyword::Stop),
            ("(stop)", Keyword::Stop),
            ("Unsubscribe", Keyword::Stop),
            ("cancel", Keyword::Stop),
            ("End", Keyword::Stop),
            ("quit!!", Keyword::Stop),
            ("OptOut", Keyword::Stop),
            ("revoke", Keyword::Stop),
            ("STOPALL", Keyword::StopAll),
            ("stopall.", Keyword::StopAll),
            ("START", Keyword::Start),
            ("unstop", Keyword::Start),
            ("Yes!", Keyword::Start),
            ("help?", Keyword::Help),
            ("¿Info?", Keyword::Help),
        ];
        for (text, want) in table {
            assert_eq!(kw.classify(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn texts_that_only_mention_a_keyword_should_not_classify() {
        let kw = defaults();
        let table = [
            "",
            "   ",
            "!!!",
            "please don't stop",
            "stop it",
            "STOP STOP",
            "stop.stop",
            "st op",
            "STOPP",
            "S.T.O.P",
            "opt-out",
            "STOP 🛑",
            "Yes, see you Tuesday",
            "helpful",
            "I want to unsubscribe",
            "STOP ALL",
        ];
        for text in table {
            assert_eq!(kw.classify(text), None, "{text:?}");
        }
    }

    #[test]
    fn full_width_keyword_should_match_its_ascii_form() {
        // CJK keyboards type full-width Latin letters.
        assert_eq!(defaults().classify("ｓｔｏｐ！"), Some(Keyword::Stop));
        assert_eq!(defaults().classify("ＳＴＯＰ　ＡＬＬ"), None);
    }

    #[test]
    fn spanish_words_should_classify_when_configured() {
        let kw = Keywords::new(&KeywordConfig::default().with_spanish()).unwrap();
        let table = [
            ("ALTO", Keyword::Stop),
            ("parar.", Keyword::Stop),
            ("¡Cancelar!", Keyword::Stop),
            ("comenzar", Keyword::Start),
            ("¿Ayuda?", Keyword::Help),
            ("stop", Keyword::Stop),
        ];
        for (text, want) in table {
            assert_eq!(kw.classify(text), Some(want), "{text:?}");
        }
        assert_eq!(defaults().classify("alto"), None);
    }

    #[test]
    fn accented_keyword_should_match_any_case() {
        let cfg = KeywordConfig {
            stop: vec!["STOP".into(), "Arrêt".into(), "STRASSE".into()],
            ..KeywordConfig::default()
        };
        let kw = Keywords::new(&cfg).unwrap();
        assert_eq!(kw.classify("ARRÊT!"), Some(Keyword::Stop));
        assert_eq!(kw.classify("arrêt"), Some(Keyword::Stop));
        assert_eq!(kw.classify("straße"), Some(Keyword::Stop));
        assert_eq!(kw.classify("arret"), None);
    }

    #[test]
    fn multi_word_keyword_should_match_with_any_inner_whitespace() {
        let cfg = KeywordConfig {
            stop_all: vec!["STOPALL".into(), "stop  all".into()],
            ..KeywordConfig::default()
        };
        let kw = Keywords::new(&cfg).unwrap();
        assert_eq!(kw.classify("Stop All"), Some(Keyword::StopAll));
        assert_eq!(kw.classify(" stop \t all. "), Some(Keyword::StopAll));
        assert_eq!(kw.classify("stop, all"), None);
    }

    #[test]
    fn word_under_two_actions_should_be_refused() {
        let cfg = KeywordConfig {
            start: vec!["START".into(), "stop.".into()],
            ..KeywordConfig::default()
        };
        let err = Keywords::new(&cfg).unwrap_err();
        assert_eq!(err, "\"stop.\" is listed under both stop and start");
    }

    #[test]
    fn spanish_word_clashing_with_english_list_should_be_refused() {
        let mut cfg = KeywordConfig::default().with_spanish();
        cfg.help.push("Alto".into());
        let err = Keywords::new(&cfg).unwrap_err();
        assert!(
            err.contains("\"Alto\" is listed under both stop and help"),
            "{err}"
        );
    }

    #[test]
    fn repeated_word_in_one_list_should_be_accepted() {
        let cfg = KeywordConfig {
            help: vec!["HELP".into(), "help".into()],
            ..KeywordConfig::default()
        };
        assert!(Keywords::new(&cfg).is_ok());
    }

    #[test]
    fn empty_word_stop_list_and_reply_should_be_refused() {
        let cfg = KeywordConfig {
            stop: vec![],
            help: vec!["?!".into()],
            help_reply: "  ".into(),
            ..KeywordConfig::default()
        };
        let err = Keywords::new(&cfg).unwrap_err();
        assert_eq!(
            err,
            "stop: at least one keyword is required (carriers require STOP); \
             help: \"?!\" has no letters or digits; help_reply is empty"
        );
    }

    #[test]
    fn reply_for_should_prefer_line_help_text() {
        let kw = defaults();
        assert_eq!(kw.reply_for(Keyword::Stop, None), DEFAULT_STOP_REPLY);
        assert_eq!(kw.reply_for(Keyword::StopAll, None), DEFAULT_STOP_REPLY);
        assert_eq!(kw.reply_for(Keyword::Start, Some("x")), DEFAULT_START_REPLY);
        assert_eq!(kw.reply_for(Keyword::Help, None), DEFAULT_HELP_REPLY);
        assert_eq!(
            kw.reply_for(Keyword::Help, Some("Acme Dental: call 212-555-0100.")),
            "Acme Dental: call 212-555-0100."
        );
        assert_eq!(kw.reply_for(Keyword::Help, Some(" ")), DEFAULT_HELP_REPLY);
    }

    #[test]
    fn scope_should_follow_stop_all_scope_app() {
        let kw = defaults();
        assert_eq!(kw.scope(Keyword::Stop), Some(OptOutScope::Line));
        assert_eq!(kw.scope(Keyword::Start), Some(OptOutScope::Line));
        assert_eq!(kw.scope(Keyword::StopAll), Some(OptOutScope::App));
        assert_eq!(kw.scope(Keyword::Help), None);
        let wide = Keywords::new(&KeywordConfig {
            stop_all_scope_app: true,
            ..KeywordConfig::default()
        })
        .unwrap();
        assert_eq!(wide.scope(Keyword::Stop), Some(OptOutScope::App));
        assert_eq!(wide.scope(Keyword::Start), Some(OptOutScope::App));
    }

    #[test]
    fn config_should_deserialize_with_defaults_for_missing_fields() {
        let cfg: KeywordConfig = toml::from_str(
            r#"
            help = ["HELP", "INFO", "AYUDA"]
            stop_all_scope_app = true
            "#,
        )
        .unwrap();
        assert_eq!(cfg.stop, KeywordConfig::default().stop);
        assert_eq!(cfg.help, ["HELP", "INFO", "AYUDA"]);
        assert!(cfg.stop_all_scope_app);
        let err = toml::from_str::<KeywordConfig>("stops = [\"STOP\"]").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn long_text_should_be_rejected_without_matching() {
        let long = format!("STOP {}", "x".repeat(10_000));
        assert_eq!(defaults().classify(&long), None);
    }

    fn any_keyword() -> impl Strategy<Value = (String, Keyword)> {
        let cfg = KeywordConfig::default().with_spanish();
        let mut all = Vec::new();
        for (list, k) in [
            (cfg.stop, Keyword::Stop),
            (cfg.stop_all, Keyword::StopAll),
            (cfg.start, Keyword::Start),
            (cfg.help, Keyword::Help),
        ] {
            all.extend(list.into_iter().map(|w| (w, k)));
        }
        proptest::sample::select(all)
    }

    fn padding() -> impl Strategy<Value = String> {
        let pad = proptest::sample::select(vec![
            ' ', '\t', '\n', '\r', '\u{A0}', '\u{3000}', '.', '!', '?', ',', '"', '\'', '(', ')',
            '*', '-', '~', '¡', '¿', '«', '»', '“', '”', '‘', '’', '…', '—', '。', '！',
            '\u{200B}',
        ]);
        proptest::collection::vec(pad, 0..6).prop_map(|v| v.into_iter().collect())
    }

    /// Each letter upper- or lower-cased by the matching bool.
    fn recase(word: &str, upper: &[bool]) -> String {
        word.chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| {
                if *up {
                    c.to_uppercase().collect::<String>()
                } else {
                    c.to_lowercase().collect::<String>()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn keyword_wrapped_in_padding_and_any_case_should_match(
            (word, want) in any_keyword(),
            before in padding(),
            after in padding(),
            upper in proptest::collection::vec(any::<bool>(), 1..8),
        ) {
            let kw = Keywords::new(&KeywordConfig::default().with_spanish()).unwrap();
            let text = format!("{before}{}{after}", recase(&word, &upper));
            prop_assert_eq!(kw.classify(&text), Some(want), "{:?}", text);
        }

        #[test]
        fn keyword_with_any_other_word_should_not_match(
            (word, _) in any_keyword(),
            before in padding(),
            after in padding(),
            other in "\\PC{1,12}",
            other_first in any::<bool>(),
        ) {
            prop_assume!(other.chars().any(|c| !is_trimmable(c)));
            let kw = Keywords::new(&KeywordConfig::default().with_spanish()).unwrap();
            // A space keeps `other` a separate word, so it cannot complete the keyword into a
            // longer one ("UN" + "STOP").
            let text = if other_first {
                format!("{before}{other} {word}{after}")
            } else {
                format!("{before}{word} {other}{after}")
            };
            prop_assert_eq!(kw.classify(&text), None, "{:?}", text);
        }

        #[test]
        fn keyword_with_one_extra_letter_should_not_match(
            (word, _) in any_keyword(),
            extra in proptest::char::range('A', 'Z'),
            at_end in any::<bool>(),
        ) {
            let kw = Keywords::new(&KeywordConfig::default().with_spanish()).unwrap();
            let text = if at_end { format!("{word}{extra}") } else { format!("{extra}{word}") };
            prop_assert_eq!(kw.classify(&text), None, "{:?}", text);
        }
    }
}
