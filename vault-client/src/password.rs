//! The vault password: a secret type, and the strength rule applied before registering.

use zeroize::Zeroizing;

/// The vault password. Zeroized on drop; no Debug, Display or Clone.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Takes the password (its memory is zeroized when the `Password` is dropped).
    pub fn new(password: String) -> Password {
        Password(Zeroizing::new(password))
    }

    /// The password itself; never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// From this many characters a password may be of one character class (a passphrase).
const PASSPHRASE_CHARS: usize = 16;

/// Refuses a weak vault password, saying why. The vault allows only a few guesses, so a
/// password need not resist an offline attack: it must not be among the first guesses an
/// attacker makes. Refused: fewer than 8 characters; one character repeated; a run along the
/// alphabet, the digits or a keyboard row (`abcdefgh`, `12345678`, `qwertyui`); a common
/// password, also with digits or symbols appended (`password123!`); a password under 16
/// characters of a single class (only lowercase letters, or only digits, ...).
pub fn check_password_strength(password: &str) -> Result<(), String> {
    let chars: Vec<char> = password.chars().collect();
    if chars.len() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password has {} characters; use at least {MIN_PASSWORD_CHARS}",
            chars.len()
        ));
    }
    if chars.iter().all(|c| *c == chars[0]) {
        return Err("the password repeats a single character".into());
    }
    let lower = password.to_lowercase();
    if is_run(&lower) {
        return Err("the password is a run of neighbouring keys or letters or digits".into());
    }
    let stem = lower.trim_end_matches(|c: char| !c.is_alphabetic());
    if COMMON.contains(&lower.as_str()) || COMMON.contains(&stem) {
        return Err("the password is among the most common ones; choose another".into());
    }
    if chars.len() < PASSPHRASE_CHARS && classes(&chars) < 2 {
        return Err(format!(
            "the password uses only one kind of character; mix letters with digits, capitals \
             or symbols, or use {PASSPHRASE_CHARS} characters or more"
        ));
    }
    Ok(())
}

/// How many of lowercase, uppercase, digits and other characters occur.
fn classes(chars: &[char]) -> usize {
    let has = |f: fn(&char) -> bool| usize::from(chars.iter().any(f));
    has(|c| c.is_lowercase())
        + has(|c| c.is_uppercase())
        + has(|c| c.is_numeric())
        + has(|c| !c.is_alphanumeric())
}

/// Whether `text` lies along one of the sequences people type (or its reverse).
fn is_run(text: &str) -> bool {
    const SEQUENCES: &[&str] = &[
        "abcdefghijklmnopqrstuvwxyz",
        "01234567890",
        "qwertyuiop",
        "asdfghjkl",
        "zxcvbnm",
        "qwertzuiop",
        "azertyuiop",
        "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    ];
    let reversed: String = text.chars().rev().collect();
    SEQUENCES.iter().any(|s| {
        let twice = s.repeat(2);
        twice.contains(text) || twice.contains(&reversed)
    })
}

/// Passwords attackers try first (lowercase; a password is also checked with trailing digits
/// and symbols removed).
const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "iloveyou",
    "princess",
    "sunshine",
    "football",
    "baseball",
    "superman",
    "trustno",
    "letmein",
    "welcome",
    "monkey",
    "dragon",
    "master",
    "shadow",
    "michael",
    "jennifer",
    "jordan",
    "hunter",
    "ranger",
    "buster",
    "soccer",
    "harley",
    "batman",
    "andrew",
    "tigger",
    "charlie",
    "robert",
    "thomas",
    "hockey",
    "daniel",
    "starwars",
    "george",
    "computer",
    "michelle",
    "jessica",
    "pepper",
    "zxcvbnm",
    "freedom",
    "whatever",
    "nicole",
    "ginger",
    "summer",
    "ashley",
    "flower",
    "internet",
    "samsung",
    "google",
    "whatsapp",
    "facebook",
    "instagram",
    "backup",
    "sealback",
    "secret",
    "changeme",
    "default",
    "administrator",
    "admin",
    "login",
    "qwerty",
    "abc",
    "iloveu",
    "loveme",
    "lovely",
    "family",
    "chocolate",
    "butterfly",
    "liverpool",
    "chelsea",
    "arsenal",
    "banana",
    "cookie",
    "purple",
    "orange",
    "matrix",
    "mustang",
    "access",
    "killer",
    "pokemon",
    "naruto",
    "password1",
    "qwertyuiop",
    "asdfghjkl",
    "123qwe",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "qwe123",
    "aa123456",
    "abc123",
    "123abc",
    "passwort",
    "motdepasse",
    "contrasena",
    "senha",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        for weak in [
            "short1!",
            "aaaaaaaaaaaa",
            "12345678",
            "87654321",
            "abcdefgh",
            "qwertyuiop",
            "Password123!",
            "sunshine99",
            "onlylowercase",
            "2718281828459",
        ] {
            let reason = check_password_strength(weak).expect_err(weak);
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn reasonable_passwords_pass() {
        for good in [
            "Tr0ub4dor&3",
            "correct horse battery staple",
            "blue-kettle-42",
            "mylongpassphraseisfine",
        ] {
            assert_eq!(check_password_strength(good), Ok(()), "{good}");
        }
    }
}
