//! Money arithmetic that never panics: amounts are bounded where they are read, and every sum is checked.
//!
//! `rust_decimal`'s `+`, `+=` and `sum()` panic when a result leaves the decimal range (about ±7.9e28), so
//! money is never added with them: [`add_to`] and [`sum`] return an [`Overflow`] instead. Amounts read from
//! billing files and Cost Explorer are also bounded by [`MAX_AMOUNT`] (see [`bounded`]), which keeps any
//! realistic sum of them far inside the range.

use rust_decimal::Decimal;

/// The largest magnitude of one amount read from a billing file or Cost Explorer: 1e15 (a quadrillion),
/// far above any real charge. A larger amount is a malformed value.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xA4C6_8000, 0x3_8D7E, 0, false, 0);

/// Checked sums, shared with the rules engine (a pure crate): one `Overflow` type for every sum of money.
pub use rules::money::{add_to, sum, Overflow};

/// An amount whose magnitude exceeds [`MAX_AMOUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("amount {amount} is outside the accepted range of ±{MAX_AMOUNT}")]
pub struct OutOfRange {
    pub amount: Decimal,
}

/// `amount` when its magnitude is at most [`MAX_AMOUNT`]; otherwise an error naming it.
pub fn bounded(amount: Decimal) -> Result<Decimal, OutOfRange> {
    if amount.abs() <= MAX_AMOUNT {
        Ok(amount)
    } else {
        Err(OutOfRange { amount })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_one_quadrillion() {
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000_000i64));
    }

    #[test]
    fn sums_near_the_decimal_range_never_panic() {
        let mut s = Decimal::MAX - Decimal::ONE;
        add_to(&mut s, Decimal::ONE).unwrap();
        assert_eq!(s, Decimal::MAX);
        assert_eq!(add_to(&mut s, Decimal::ONE), Err(Overflow { sum: Decimal::MAX, amount: Decimal::ONE }));
        assert_eq!(s, Decimal::MAX, "an overflowing add leaves the sum as it was");
        assert!(sum([Decimal::MAX, Decimal::MAX]).is_err());
        assert!(sum([Decimal::MIN, -Decimal::ONE]).is_err());
        assert_eq!(sum([Decimal::MAX, Decimal::MIN]), Ok(Decimal::ZERO));
        assert_eq!(sum([]), Ok(Decimal::ZERO));
        let e = sum([Decimal::MAX, Decimal::MAX]).unwrap_err();
        assert!(e.to_string().starts_with("money sum overflows the decimal range: 7922"), "{e}");
    }

    #[test]
    fn amounts_beyond_one_quadrillion_are_rejected() {
        let check = |text: &str, ok: bool| {
            let d = Decimal::from_scientific(text).or_else(|_| text.parse()).unwrap();
            assert_eq!(bounded(d).is_ok(), ok, "{text}");
        };
        check("1e15", true);
        check("-1e15", true);
        check("999999999999999.999999", true);
        check("0", true);
        check("1000000000000000.01", false);
        check("-1000000000000000.01", false);
        check("5e28", false);
        assert_eq!(
            bounded(Decimal::from_scientific("5e28").unwrap()).unwrap_err().to_string(),
            "amount 50000000000000000000000000000 is outside the accepted range of ±1000000000000000"
        );
    }
}
