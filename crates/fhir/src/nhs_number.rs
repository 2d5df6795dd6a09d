//! NHS number validation: ten digits with a Modulus 11 check digit.

/// True when `value` is ten ASCII digits whose last digit is the Modulus 11 check digit of the
/// first nine. A computed check digit of 10 means the number is invalid.
pub fn is_valid(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let digits: Vec<u32> = bytes.iter().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| d * w)
        .sum();
    let check = match 11 - (sum % 11) {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == digits[9]
}

/// Completes a nine-digit stem with its check digit, if it has one (used to make synthetic data).
pub fn with_check_digit(stem: &str) -> Option<String> {
    (0..=9)
        .map(|d| format!("{stem}{d}"))
        .find(|candidate| is_valid(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_valid_and_invalid_numbers() {
        assert!(is_valid("9990000018"));
        assert!(is_valid("9434765919"));
        assert!(!is_valid("9990000017"));
        assert!(!is_valid("999000001"));
        assert!(!is_valid("999000001a"));
        assert!(!is_valid("999 000 0018"));
    }

    #[test]
    fn check_digit_completion_agrees_with_validation() {
        assert_eq!(with_check_digit("999000001").as_deref(), Some("9990000018"));
    }
}
