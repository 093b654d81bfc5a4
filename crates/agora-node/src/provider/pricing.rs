//! Ask pricing: a fixed price, or `auto` — near the class's last clearing price, never below a
//! floor.

use agora_core::Amount;
use agora_core::tx::PricePolicy;

/// Parses `fixed:<price>`, `auto` or `auto:<floor>` (prices in base units per device-second).
pub fn parse(spec: &str) -> Result<PricePolicy, String> {
    let bad = || format!("price must be fixed:<amount>, auto or auto:<floor>, got {spec:?}");
    match spec.split_once(':') {
        Some(("fixed", p)) => p.parse::<Amount>().map(PricePolicy::Fixed).map_err(|_| bad()),
        Some(("auto", f)) => f.parse::<Amount>().map(PricePolicy::Auto).map_err(|_| bad()),
        None if spec == "auto" => Ok(PricePolicy::Auto(Amount(1))),
        _ => Err(bad()),
    }
}

/// The price to ask now: the fixed price, or for `auto` the last clearing price of the class
/// shaded down by 5% (to stay competitive), never below the floor.
pub fn ask_price(policy: &PricePolicy, last_clearing: Option<Amount>) -> Amount {
    match policy {
        PricePolicy::Fixed(p) => *p,
        PricePolicy::Auto(floor) => last_clearing.map_or(*floor, |p| p.bps(9_500)).max(*floor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prices() {
        assert_eq!(parse("fixed:5").unwrap(), PricePolicy::Fixed(Amount(5)));
        assert_eq!(parse("auto:3").unwrap(), PricePolicy::Auto(Amount(3)));
        assert_eq!(parse("auto").unwrap(), PricePolicy::Auto(Amount(1)));
        assert!(parse("cheap").unwrap_err().contains("fixed:<amount>"));
        assert_eq!(ask_price(&PricePolicy::Fixed(Amount(5)), Some(Amount(100))), Amount(5));
        assert_eq!(ask_price(&PricePolicy::Auto(Amount(3)), None), Amount(3));
        assert_eq!(ask_price(&PricePolicy::Auto(Amount(3)), Some(Amount(100))), Amount(95));
        assert_eq!(ask_price(&PricePolicy::Auto(Amount(3)), Some(Amount(2))), Amount(3));
    }
}
