//! Adding money without panicking: `rust_decimal`'s `+`, `+=` and `sum()` panic when a result leaves the
//! decimal range (about ±7.9e28), so the engine adds costs with [`add_to`] and [`sum`], which return an
//! [`Overflow`] instead. The collector re-exports these for its own sums (and bounds every amount it reads far
//! below that range); here they guard the engine against whatever its inputs hold.

use rust_decimal::Decimal;

/// A sum of money left the decimal range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("money sum overflows the decimal range: {sum} + {amount}")]
pub struct Overflow {
    pub sum: Decimal,
    pub amount: Decimal,
}

/// Adds `amount` to `sum`; on overflow `sum` is left as it was.
pub fn add_to(sum: &mut Decimal, amount: Decimal) -> Result<(), Overflow> {
    *sum = sum.checked_add(amount).ok_or(Overflow { sum: *sum, amount })?;
    Ok(())
}

/// The sum of `amounts`.
pub fn sum(amounts: impl IntoIterator<Item = Decimal>) -> Result<Decimal, Overflow> {
    let mut total = Decimal::ZERO;
    for a in amounts {
        add_to(&mut total, a)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_near_the_decimal_range_never_panic() {
        let mut s = Decimal::MAX - Decimal::ONE;
        add_to(&mut s, Decimal::ONE).unwrap();
        assert_eq!(s, Decimal::MAX);
        assert_eq!(add_to(&mut s, Decimal::ONE), Err(Overflow { sum: Decimal::MAX, amount: Decimal::ONE }));
        assert_eq!(s, Decimal::MAX);
        assert!(sum([Decimal::MAX, Decimal::MAX]).is_err());
        assert!(sum([Decimal::MIN, Decimal::NEGATIVE_ONE]).is_err());
        assert_eq!(sum([Decimal::MAX, Decimal::MIN, Decimal::ONE]), Ok(Decimal::ONE));
    }
}
